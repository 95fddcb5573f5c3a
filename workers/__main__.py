"""`python -m workers`: run the worker (the WebSocket gateway and the background duties),
GATEWAY_CONCURRENCY processes on GATEWAY_PORT."""

from __future__ import annotations

import sys

from service.runtime.process import SMALL_STEPS_GC, WORKER, serve
from workers.app import create_gateway_app
from workers.gateway import HEARTBEAT

# honcho sends SIGKILL 5 s after SIGTERM: sockets get up to 3 s to close (Hub.close_all),
# then their handlers this long to finish.
SHUTDOWN_TIMEOUT = 1.0
# Connections accepted per turn of the event loop (service/runtime/accept.py): a reconnect
# storm is then admitted a few handshakes at a time, between the notices to open sockets.
ACCEPT_PER_TURN = 4

if __name__ == "__main__":
    sys.exit(
        serve(
            WORKER,
            create_gateway_app,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            accept_per_turn=ACCEPT_PER_TURN,
            gc_thresholds=SMALL_STEPS_GC,
            # aiohttp rounds timers longer than this up to whole seconds, which would make
            # every socket's 25 s heartbeat fire in once-a-second bursts that delay notices.
            timeout_ceil_threshold=HEARTBEAT + 5,
        )
    )
