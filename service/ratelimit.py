"""Brute-force protection: count failed sign-ins per username and per client IP."""

from __future__ import annotations

import redis.asyncio as redis

from service import keys
from service.settings import Settings

# One client IP may fail this many times the per-user limit (a NAT hides many people).
IP_LIMIT_FACTOR = 5


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; retry in {retry_after}s")
        self.retry_after = retry_after


class LoginLimiter:
    """Fixed-window failure counters in Redis; successes are never limited."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.user_limit = settings.login_max_failures
        self.ip_limit = settings.login_max_failures * IP_LIMIT_FACTOR
        self.window_ms = settings.login_failure_window * 1000

    async def check(self, username: str, ip: str) -> None:
        """Raise RateLimited while either counter is at its limit."""
        user_key, ip_key = keys.login_failures_by_user(username), keys.login_failures_by_ip(ip)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(user_key).pttl(user_key).get(ip_key).pttl(ip_key)
            user_count, user_ttl, ip_count, ip_ttl = await pipe.execute()
        self._enforce(int(user_count or 0), user_ttl, int(ip_count or 0), ip_ttl)

    async def record_failure(self, username: str, ip: str) -> None:
        """Count a failed attempt; raise RateLimited if it was past a limit.

        Guesses sent at once all pass `check` before any of them is counted; counting
        them one by one here (INCR is atomic) turns all but the first few into 429s,
        so a burst learns no more than the limit allows.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (keys.login_failures_by_user(username), keys.login_failures_by_ip(ip)):
                pipe.incr(key).pexpire(key, self.window_ms, nx=True).pttl(key)
            user_count, _, user_ttl, ip_count, _, ip_ttl = await pipe.execute()
        self._enforce(user_count - 1, user_ttl, ip_count - 1, ip_ttl)

    async def clear(self, username: str) -> None:
        """A success clears the username's failures (not the IP's)."""
        await self.redis.delete(keys.login_failures_by_user(username))

    def _enforce(self, user_count: int, user_ttl: int, ip_count: int, ip_ttl: int) -> None:
        waits = [
            ttl
            for count, ttl, limit in (
                (user_count, user_ttl, self.user_limit),
                (ip_count, ip_ttl, self.ip_limit),
            )
            if count >= limit
        ]
        if waits:
            longest = max(waits)
            raise RateLimited(max(1, -(-longest // 1000)) if longest > 0 else 1)
