"""The expiry sweeper: sessions past their idle timeout or maximum age end as `expired`.

Deadlines live in the store's due-time index (keyspace expiry events fire late and are
lost while disconnected). Only the holder of a short Redis lease sweeps, so two workers do
not do the work twice; the expire script is idempotent anyway, so a lease handover can
never notify a device twice.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from service.backoff import Backoff
from service.engine.errors import REDIS_DOWN, redis_trouble
from service.sessions.lease import Lease
from service.sessions.store import Due, SessionStore
from workers.metrics import Metrics
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

INTERVAL = 0.25
BATCH = 200  # entries per due-index bucket per round
MAX_ROUNDS = 50  # per pass: a backlog is worked off over a few passes, never in one loop
BAD_ENTRY_RETRY_MS = 60_000
BACKOFF_MAX = 2.0


class Sweeper:
    """Ends sessions past their deadline, while this worker holds the sweeper lease."""

    def __init__(
        self, store: SessionStore, lease: Lease, metrics: Metrics, interval: float = INTERVAL
    ) -> None:
        self.store, self.lease, self.metrics = store, lease, metrics
        self.interval = interval

    async def run(self) -> None:
        """Sweep every `interval` while holding the lease; survive anything."""
        backoff = Backoff(self.interval, BACKOFF_MAX)
        while True:
            try:
                if await self.lease.acquire():
                    await self.sweep()
                backoff.reset()
            except Exception as exc:
                if not redis_trouble(exc):
                    log.exception("sweeper pass failed")
                else:
                    self.lease.held = False
                    log.warning("sweeper: Redis unavailable (%r); retrying", exc)
                    backoff.next()
            raise_if_cancelling()
            await asyncio.sleep(backoff.delay)

    async def sweep(self) -> int:
        """End every session whose deadline has passed; returns how many ended."""
        ended = 0
        for _ in range(MAX_ROUNDS):
            due = await self.store.due(BATCH)
            for entry in due:
                ended += await self._expire(entry)
            if not due:
                break
        return ended

    async def _expire(self, due: Due) -> int:
        try:
            revoked, deadline = await self.store.expire(due.username, due.session_id)
        except REDIS_DOWN:
            raise
        except RedisError as exc:  # one bad entry is logged and put off, never a stuck loop
            log.error("sweeper: cannot expire %r: %s; retrying later", due.member, exc)
            await self.store.reschedule(due, self.store.clock.now_ms() + BAD_ENTRY_RETRY_MS)
            return 0
        await self.store.reschedule(due, deadline)
        if revoked:  # each logged by the store
            self.metrics.expired.inc(len(revoked))
        return len(revoked)
