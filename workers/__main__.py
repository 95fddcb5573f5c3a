"""`python -m workers`: read settings, set up logging, serve the gateway until signalled."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from service.devredis import embedded_redis_if_needed
from service.settings import LISTEN_BACKLOG, ConfigError, Settings
from workers.app import create_gateway_app
from workers.gateway import HEARTBEAT

# honcho sends SIGKILL 5 s after SIGTERM: sockets get up to 3 s to close (Hub.close_all),
# then their handlers this long to finish.
SHUTDOWN_TIMEOUT = 1.0


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"sessionwire worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.warn_about_defaults()
    log = logging.getLogger("workers")
    with embedded_redis_if_needed(settings):
        log.info("worker gateway on http://%s:%d/ws", settings.host, settings.gateway_port)
        web.run_app(
            create_gateway_app(settings),
            host=settings.host,
            port=settings.gateway_port,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            # aiohttp rounds timers longer than this up to whole seconds, which would make
            # every socket's 25 s heartbeat fire in once-a-second bursts that delay notices.
            timeout_ceil_threshold=HEARTBEAT + 5,
            backlog=LISTEN_BACKLOG,  # a worker restart brings every device back at once
            print=None,
        )


if __name__ == "__main__":
    main()
