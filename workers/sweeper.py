"""The expiry sweeper: sessions past their idle timeout or maximum age end as `expired`.

Deadlines live in a due-time index (keyspace expiry events fire late and are lost while
disconnected). Only the holder of a short Redis lease sweeps, so two workers do not do the
work twice; the expire script is idempotent anyway, so a lease handover can never notify a
device twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

from service import keys
from service.redis_conn import REDIS_DOWN
from service.store import SessionStore, now_ms
from workers.metrics import Metrics
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

INTERVAL = 0.25
LEASE_MS = 2_000  # a crashed holder's duty moves to another worker within this
BATCH = 200
BAD_MEMBER_RETRY_MS = 60_000
BACKOFF_MAX = 2.0

# Only the owner may extend or release the lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A Redis lease (SET NX PX) held by one worker at a time."""

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int = LEASE_MS) -> None:
        self.redis, self.key, self.ttl_ms = client, key, ttl_ms
        self.token = uuid.uuid4().hex
        self.held = False
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this worker holds it."""
        if self.held:
            self.held = bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        if not self.held:
            self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self._release(keys=[self.key], args=[self.token])


class Sweeper:
    """Ends sessions past their deadline, while this worker holds the sweeper lease."""

    def __init__(
        self, client: redis.Redis, store: SessionStore, metrics: Metrics, interval: float = INTERVAL
    ) -> None:
        self.redis, self.store, self.metrics = client, store, metrics
        self.interval = interval
        self.lease = Lease(client, keys.SWEEPER_LEASE)

    async def run(self) -> None:
        """Sweep every `interval` while holding the lease; survive anything."""
        delay = self.interval
        while True:
            try:
                if await self.lease.acquire():
                    await self.sweep()
                delay = self.interval
            except (RedisError, *REDIS_DOWN) as exc:
                self.lease.held = False
                log.warning("sweeper: Redis unavailable (%s); retrying in %.2fs", exc, delay)
                delay = min(delay * 2, BACKOFF_MAX)
            except Exception:
                log.exception("sweeper pass failed")
            raise_if_cancelling()
            await asyncio.sleep(delay)

    async def sweep(self) -> int:
        """End every session whose deadline has passed; returns how many ended."""
        ended = 0
        while True:
            due = await self.redis.zrangebyscore(keys.DUE_INDEX, "-inf", now_ms(), 0, BATCH)
            for member in due:
                ended += await self._expire(member)
            if len(due) < BATCH:
                return ended

    async def _expire(self, member: str) -> int:
        username, session_id = keys.parse_due_member(member)
        try:
            revoked, deadline = await self.store.expire(username, session_id)
        except REDIS_DOWN:
            raise
        except RedisError as exc:  # one bad entry is logged and put off, never a stuck loop
            log.error("sweeper: cannot expire %r: %s; retrying later", member, exc)
            retry_at = now_ms() + BAD_MEMBER_RETRY_MS
            await self.redis.zadd(keys.DUE_INDEX, {member: retry_at}, xx=True)
            return 0
        if deadline is None:
            await self.redis.zrem(keys.DUE_INDEX, member)
        else:
            await self.redis.zadd(keys.DUE_INDEX, {member: deadline}, xx=True)
        if revoked:
            log.info("expired %d session(s) of %s", len(revoked), username)
            self.metrics.expired.inc(len(revoked))
        return len(revoked)
