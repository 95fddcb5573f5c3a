"""A Redis lease (SET NX PX) held by one process at a time, for duties that must run once."""

from __future__ import annotations

import uuid

import redis.asyncio as redis

from service.sessions import keys
from service.sessions.scripts import plain_script

LEASE_MS = 2_000  # a crashed holder's duty moves to another process within this


class Lease:
    def __init__(self, client: redis.Redis, key: str, ttl_ms: int = LEASE_MS) -> None:
        self.redis, self.key, self.ttl_ms = client, key, ttl_ms
        self.token = uuid.uuid4().hex
        self.held = False
        # Only the holder may extend or release it.
        self._renew = client.register_script(plain_script("lease_renew"))
        self._release = client.register_script(plain_script("lease_release"))

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        if self.held:
            self.held = bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        if not self.held:
            self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self._release(keys=[self.key], args=[self.token])


def sweeper_lease(client: redis.Redis) -> Lease:
    """The lease of the expiry sweeper (one sweeping worker at a time)."""
    return Lease(client, keys.SWEEPER_LEASE)
