"""A poll stream's SETs (RFC 8936), waiting for the receiver to acknowledge them.

The delivery duty appends each SET once per `jti` (a second append of the same message,
after a crash, changes nothing); a poll returns the oldest, an `ack` or a `setErrs` entry
forgets them. Both keys of a stream are on its own slot ({ssf:<stream id>}), so every
operation is one slot. SETs older than EVENTS_RETENTION are dropped at each append and
each poll, whatever the receiver does.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.engine.connect import RedisClient
from service.sessions import keys

MAX_EVENTS = 1000  # at most this many SETs per poll answer


class PollStore:
    def __init__(self, client: RedisClient, retention_ms: int) -> None:
        self.redis, self.retention_ms = client, retention_ms

    async def append(self, stream_id: str, jti: str, token: str, now_ms: int) -> None:
        order, sets = keys.ssf_poll_order(stream_id), keys.ssf_poll_sets(stream_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(sets, jti, token)
            pipe.zadd(order, {jti: now_ms}, nx=True)
            await pipe.execute()
        await self._trim(stream_id, now_ms)

    async def take(self, stream_id: str, count: int, now_ms: int) -> tuple[dict[str, str], bool]:
        """The oldest `count` SETs (they stay until acknowledged), and whether more wait."""
        await self._trim(stream_id, now_ms)
        order, sets = keys.ssf_poll_order(stream_id), keys.ssf_poll_sets(stream_id)
        if count <= 0:
            return {}, bool(await self.redis.zcard(order))
        jtis = await self.redis.zrange(order, 0, count)  # one more: is there more?
        more = len(jtis) > count
        jtis = jtis[:count]
        if not jtis:
            return {}, False
        tokens = await self.redis.hmget(sets, jtis)
        return {j: t for j, t in zip(jtis, tokens, strict=True) if t is not None}, more

    async def forget(self, stream_id: str, jtis: Sequence[str]) -> None:
        if not jtis:
            return
        order, sets = keys.ssf_poll_order(stream_id), keys.ssf_poll_sets(stream_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(order, *jtis)
            pipe.hdel(sets, *jtis)
            await pipe.execute()

    async def _trim(self, stream_id: str, now_ms: int) -> None:
        order = keys.ssf_poll_order(stream_id)
        old = await self.redis.zrangebyscore(
            order, 0, now_ms - self.retention_ms, start=0, num=1000
        )
        await self.forget(stream_id, old)


async def queue_control(client: RedisClient, stream_id: str, token: str) -> None:
    """A verification or stream-updated SET for a push stream: the worker sends it."""
    key = keys.ssf_control(stream_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key, token)
        pipe.ltrim(key, -100, -1)  # a receiver asking for verification in a loop: bounded
        await pipe.execute()
