"""Every WebSocket close the gateway sends, named, with what the client should do."""

from __future__ import annotations

from typing import NamedTuple


class Disconnect(NamedTuple):
    code: int
    reason: bytes  # at most 123 bytes on the wire


# Going away (shutdown, restart): reconnect, to this worker or another.
SHUTDOWN = Disconnect(1001, b"server shutting down")
# Try again later: the client fell behind; reconnecting starts it afresh.
TOO_SLOW = Disconnect(1013, b"client too slow")
# The client sends more frames than it ever needs to (it need send none): cut, not served.
FLOODING = Disconnect(1008, b"too many frames")
# The client did not answer a ping in time: it may reconnect when its network is back.
NO_PONG = Disconnect(4000, b"no pong in time")
# The session ended (its notice was sent just before): do not reconnect.
REVOKED = Disconnect(4501, b"session revoked")

# Codes 4500-4999 mean "do not reconnect" (the convention Centrifugo uses).
NO_RECONNECT = range(4500, 5000)
