"""Which outbox shards this worker process delivers: a lease per shard, a fair share each.

Every process announces itself in a small sorted set (alive until a few lease lengths from
now), counts the live ones, and holds at most its share of the shards: one process takes
them all, two take half each, and a process that dies (kill -9) leaves its shards to the
others within a lease length. Losing a lease (Redis down, a renewal refused) stops the
shard's work in this process before anyone else can take it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid

from redis.exceptions import RedisError

from service.engine.connect import RedisClient
from service.engine.errors import REDIS_DOWN
from service.sessions import keys
from service.sessions.lease import LEASE_MS, Lease
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class ShardLeases:
    def __init__(self, client: RedisClient, ttl_ms: int = LEASE_MS) -> None:
        self.redis, self.ttl_ms = client, ttl_ms
        self.token = uuid.uuid4().hex
        self.leases = [
            Lease(client, keys.outbox_lease(s), ttl_ms) for s in range(keys.OUTBOX_SHARDS)
        ]  # type: ignore[arg-type]
        self.held: set[int] = set()
        self._live = 1

    async def update(self, now_ms: int) -> tuple[set[int], set[int]]:
        """Renew, give up or take leases; the shards gained and lost."""
        self._live = await self._count_live(now_ms)
        share = math.ceil(keys.OUTBOX_SHARDS / self._live)
        renewed = await asyncio.gather(*(self._try(s) for s in sorted(self.held)))
        lost = {s for s, ok in zip(sorted(self.held), renewed, strict=True) if not ok}
        self.held -= lost
        while len(self.held) > share:  # another process came: leave it its part
            extra = max(self.held)
            self.held.discard(extra)
            lost.add(extra)
        gained: set[int] = set()
        start = random.randrange(keys.OUTBOX_SHARDS)  # processes starting at once spread
        for i in range(keys.OUTBOX_SHARDS):
            shard = (start + i) % keys.OUTBOX_SHARDS
            if len(self.held) >= share:
                break
            if shard not in self.held and shard not in lost and await self._try(shard):
                self.held.add(shard)
                gained.add(shard)
        return gained, lost

    async def release(self, shards: set[int]) -> None:
        for shard in shards:
            try:
                await self.leases[shard].release()
            except (RedisError, *REDIS_DOWN):
                self.leases[shard].held = False

    async def leave(self) -> None:
        """Give every lease up at once, for another process to take over."""
        await self.release(set(self.held))
        self.held.clear()
        try:
            await self.redis.zrem(keys.delivery_workers(), self.token)
        except (RedisError, *REDIS_DOWN):
            pass

    async def _try(self, shard: int) -> bool:
        try:
            return await self.leases[shard].acquire()
        except (RedisError, *REDIS_DOWN) as exc:
            raise_if_cancelling()  # redis-py turns a cancellation into a connection error
            self.leases[shard].held = False
            log.warning("outbox shard %d: lease not renewed (%s)", shard, exc)
            return False

    async def _count_live(self, now_ms: int) -> int:
        workers = keys.delivery_workers()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(workers, {self.token: now_ms + 3 * self.ttl_ms})
                pipe.zremrangebyscore(workers, "-inf", now_ms)
                pipe.zcard(workers)
                *_, live = await pipe.execute()
        except (RedisError, *REDIS_DOWN):
            raise_if_cancelling()
            return self._live
        return max(1, int(live))
