"""Proof that a device reads what it is sent, and a cap on what it may send.

The kernel buffers megabytes for a client that stopped reading, so "the send completed"
proves nothing. The gateway pings with a sequence number as payload; a pong echoing it
proves the client read everything sent before that ping (TCP is ordered). What was sent
since the last answered ping is unproven; past MAX_UNPROVEN_BYTES or MAX_UNPROVEN_MESSAGES
the client is too slow. A pong with any other payload (unsolicited) proves nothing.
"""

from __future__ import annotations

MAX_UNPROVEN_BYTES = 64 * 1024
MAX_UNPROVEN_MESSAGES = 64
# A ping goes out early once this share of either bound is unproven, so a client that
# reads gets to prove it long before the bound.
EARLY_PING_SHARE = 4
# Clients need not send anything but pongs (one per ping); far more is a flood.
MAX_CLIENT_FRAMES = 50
FRAME_WINDOW_MS = 10_000


class ReadGuard:
    """Counts what was sent to one client and what it has proven to have read."""

    __slots__ = (
        "frames",
        "max_bytes",
        "max_messages",
        "ping_marks",
        "proven",
        "sent",
        "seq",
        "window_ends",
    )

    def __init__(
        self, max_bytes: int = MAX_UNPROVEN_BYTES, max_messages: int = MAX_UNPROVEN_MESSAGES
    ) -> None:
        self.max_bytes, self.max_messages = max_bytes, max_messages
        self.sent = (0, 0)  # bytes, messages: all written so far
        self.proven = (0, 0)  # as they stood at the last ping the client answered
        self.seq = 0
        self.ping_marks: tuple[int, int] | None = None  # `sent` when the pending ping left
        self.frames, self.window_ends = 0, 0

    def wrote(self, size: int) -> None:
        self.sent = (self.sent[0] + size, self.sent[1] + 1)

    @property
    def too_slow(self) -> bool:
        unproven_bytes, unproven_messages = self._unproven()
        return unproven_bytes > self.max_bytes or unproven_messages > self.max_messages

    @property
    def wants_early_ping(self) -> bool:
        unproven_bytes, unproven_messages = self._unproven()
        return self.ping_marks is None and (
            unproven_bytes * EARLY_PING_SHARE >= self.max_bytes
            or unproven_messages * EARLY_PING_SHARE >= self.max_messages
        )

    @property
    def ping_pending(self) -> bool:
        return self.ping_marks is not None

    def ping(self) -> bytes:
        """The payload of a ping about to be sent after everything written so far."""
        self.seq += 1
        self.ping_marks = self.sent
        return str(self.seq).encode()

    def pong(self, payload: bytes) -> bool:
        """A pong came; True when it answers the pending ping (what preceded it was read)."""
        if self.ping_marks is None or payload != str(self.seq).encode():
            return False
        self.proven, self.ping_marks = self.ping_marks, None
        return True

    def frame(self, now_ms: int) -> bool:
        """Count a frame from the client; False when it is over its budget (a flood)."""
        if now_ms >= self.window_ends:
            self.frames, self.window_ends = 0, now_ms + FRAME_WINDOW_MS
        self.frames += 1
        return self.frames <= MAX_CLIENT_FRAMES

    def _unproven(self) -> tuple[int, int]:
        return self.sent[0] - self.proven[0], self.sent[1] - self.proven[1]
