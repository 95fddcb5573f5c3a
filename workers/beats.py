"""One loop timer for every socket's heartbeat, instead of one per socket.

A timer of its own costs each socket ~550 bytes (the handle, libuv's timer, a bound
method), over a twentieth of an idle socket. Here a socket's next tick is filed in a
bucket of STEP seconds and one timer, set for the earliest bucket, runs the ticks that
are due, in order: a tick runs up to STEP late, never early.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Protocol

log = logging.getLogger(__name__)

# Seconds per bucket: small, so that sockets that connected together (a reconnect storm)
# still ping a few at a time, between the notices, not hundreds in one callback.
STEP = 0.005


class Beating(Protocol):
    def beat(self, now: float) -> None: ...


class Beats:
    """When each socket's heartbeat next ticks, in buckets of `step` seconds."""

    def __init__(self, step: float = STEP) -> None:
        self.step = step
        self.buckets: dict[int, set[Beating]] = {}
        self.order: list[int] = []  # a heap of the buckets (and of some emptied since)
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for: int | None = None  # the bucket the timer runs

    def schedule(self, conn: Beating, when: float) -> int:
        """File `conn` to tick at loop time `when`; the bucket, to cancel it with."""
        bucket = math.ceil(when / self.step)
        conns = self.buckets.get(bucket)
        if conns is None:
            conns = self.buckets[bucket] = set()
            heapq.heappush(self.order, bucket)
        conns.add(conn)
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
        now = asyncio.get_running_loop().time()  # one clock read for every tick that is due
        due = math.floor(now / self.step)
        # Ticks file their next tick in later buckets; none re-arms the timer meanwhile.
        self.timer, self.armed_for = None, due
        order = self.order
        while order and order[0] <= due:
            for conn in self.buckets.pop(heapq.heappop(order), ()):
                try:
                    conn.beat(now)
                except Exception:  # one socket's must not stop every heartbeat of the worker
                    log.exception("a socket's heartbeat failed")
        while order and order[0] not in self.buckets:  # emptied by cancels
            heapq.heappop(order)
        self.armed_for = None
        if order:
            self._arm(order[0])
