"""Admitted sockets start a few per turn of the event loop, so notices are never behind.

In a reconnect storm the sessions of new sockets are checked in shared Redis trips
(service/engine/batcher.py): one reply wakes up to hundreds of handlers in one turn, and
each then upgrades, sends `ready`, joins the hub and presence (a few hundred µs apiece).
That turn lasted 40-100 ms, and a notice for a socket that is already open, read from
pub/sub meanwhile, waited for all of it. Past the pacer at most `per_turn` handlers go on
per turn; the rest wait in arrival order, and between two turns the loop reads its
sockets again, pub/sub among them. Pacing the accepts (service/runtime/accept.py) bounds
the connections a turn takes in; this bounds the work their replies bring back.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnPacer:
    """`await pacer.turn()`: callers go on `per_turn` at a time, one group per turn."""

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._passed = 0  # callers let through in the current turn
        self._new_turn_scheduled = False

    async def turn(self) -> None:
        if not self._waiting and self._passed < self.per_turn:
            self._passed += 1  # no queue and room in this turn: no wait, no future
            self._schedule_new_turn()
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._schedule_new_turn()
        await future  # a cancelled waiter's future is done and skipped when released

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _schedule_new_turn(self) -> None:
        if not self._new_turn_scheduled:
            self._new_turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._new_turn)

    def _new_turn(self) -> None:
        """Runs once per turn while anyone passes or waits: release the next few.

        A released waiter resumes in the next turn, together with this callback's next
        run, which releases the few after it: one group per turn.
        """
        self._new_turn_scheduled = False
        self._passed = 0
        while self._waiting and self._passed < self.per_turn:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                self._passed += 1
        if self._passed:
            self._schedule_new_turn()
