"""Exponential backoff, one implementation for every loop that retries Redis."""

from __future__ import annotations

import asyncio


class Backoff:
    """Delays that double from `start` up to `cap`; `reset()` after a success."""

    def __init__(self, start: float, cap: float) -> None:
        self.start, self.cap = start, cap
        self.delay = start

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long (up to the cap)."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.start

    async def wait(self) -> None:
        await asyncio.sleep(self.next())
