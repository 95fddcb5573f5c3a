"""One loop timer for every socket's heartbeat, instead of one per socket.

A timer of its own costs each socket ~550 bytes (the handle, libuv's timer, a bound
method), over a twentieth of an idle socket. Here a socket's next tick is filed in a
bucket of STEP seconds and one timer, set for the earliest bucket, runs the ticks that
are due, in order: a tick runs up to STEP late, never early.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

STEP = 0.05  # seconds per bucket: a 25 s heartbeat spreads its sockets over 500 of them


class Beating(Protocol):
    def beat(self) -> None: ...


class Beats:
    """When each socket's heartbeat next ticks, in buckets of `step` seconds."""

    def __init__(self, step: float = STEP) -> None:
        self.step = step
        self.buckets: dict[int, set[Beating]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for: int | None = None  # the bucket the timer runs

    def schedule(self, conn: Beating, when: float) -> int:
        """File `conn` to tick at loop time `when`; the bucket, to cancel it with."""
        bucket = math.ceil(when / self.step)
        self.buckets.setdefault(bucket, set()).add(conn)
        if self.armed_for is None or bucket < self.armed_for:
            self._arm(bucket)
        return bucket

    def cancel(self, conn: Beating, bucket: int) -> None:
        """Unfile `conn` (the timer, if it finds nothing left, just stops)."""
        conns = self.buckets.get(bucket)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.buckets[bucket]

    def _arm(self, bucket: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed_for = bucket
        self.timer = asyncio.get_running_loop().call_at(bucket * self.step, self._run)

    def _run(self) -> None:
        due = math.floor(asyncio.get_running_loop().time() / self.step)
        # Ticks file their next tick in later buckets; none re-arms the timer meanwhile.
        self.timer, self.armed_for = None, due
        while self.buckets and (bucket := min(self.buckets)) <= due:
            for conn in self.buckets.pop(bucket):
                conn.beat()
        self.armed_for = None
        if self.buckets:
            self._arm(min(self.buckets))
