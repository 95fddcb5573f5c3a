"""Brute-force protection: failed sign-ins counted per username and per client IP, and
wrong admin tokens per client IP.

A sign-in from a known device (a valid device token) is counted against that device
alone. An attempt is reserved before its password is hashed, so a burst of concurrent guesses
costs no more hashes than the limit allows; when only attempts still being checked fill
the budget, the next one is told to retry (503 busy) rather than that it failed. A success
counts against nothing (people behind one NAT must still get in) and clears the username's
failures. Each counter is its own key, so its own Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import redis.asyncio as redis

from service.clock import SYSTEM_CLOCK, Clock
from service.sessions import keys
from service.sessions.scripts import plain_script
from service.settings import Settings

# One client IP may fail this many times the per-user limit (a NAT hides many people).
IP_LIMIT_FACTOR = 5

_json = msgspec.json.Encoder()


class RateLimited(Exception):
    """Too many failures in the window: 429 until it ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; retry in {retry_after}s")
        self.retry_after = retry_after


class SignInBusy(Exception):
    """Attempts still being checked fill the budget: 503, retry shortly."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The counters one attempt is charged to, in order; a success clears the last one."""

    counters: tuple[str, ...]


class LoginLimiter:
    """Fixed-window attempt counters in Redis, judged by the injected clock."""

    def __init__(self, client: redis.Redis, settings: Settings, clock: Clock = SYSTEM_CLOCK):
        self.clock = clock
        self.user_limit = settings.login_max_failures
        self.ip_limit = settings.login_max_failures * IP_LIMIT_FACTOR
        self.window_ms = settings.login_failure_window * 1000
        self._attempts = client.register_script(plain_script("attempts"))

    async def reserve(self, username: str, ip: str, device: str | None = None) -> Reservation:
        """Charge one attempt, or raise RateLimited/SignInBusy.

        A known `device` (from a valid device token) is charged alone, to its own budget:
        failures from elsewhere never lock it out. Otherwise the IP goes first, then the
        username: a client past its own limit must not use up the username's.
        """
        if device is not None:
            budgets = [(keys.login_failures_by_device(username, device), self.user_limit)]
        else:
            budgets = [
                (keys.login_failures_by_ip(ip), self.ip_limit),
                (keys.login_failures_by_user(username), self.user_limit),
            ]
        taken: list[str] = []
        try:
            for counter, limit in budgets:
                await self._take(counter, limit)
                taken.append(counter)
        except (RateLimited, SignInBusy):
            await self.cancel(Reservation(tuple(taken)))
            raise
        return Reservation(tuple(taken))

    async def failed(self, reservation: Reservation) -> None:
        for counter in reservation.counters:
            await self._run(counter, "failed")

    async def succeeded(self, reservation: Reservation) -> None:
        *others, last = reservation.counters
        for counter in others:
            await self._run(counter, "succeeded")
        await self._run(last, "succeeded", clear=True)

    async def cancel(self, reservation: Reservation) -> None:
        """The attempt never tested its password (the server was busy, or failed)."""
        for counter in reservation.counters:
            await self._run(counter, "cancel")

    async def admin_failed(self, ip: str) -> None:
        """Count a wrong admin token against the IP; RateLimited once it is at its limit.

        Only wrong tokens are ever counted or refused (the right one is never asked here),
        so attempts in flight that fill the budget mean the limit, not "busy".
        """
        counter = keys.admin_failures_by_ip(ip)
        outcome, wait_ms = await self._run(counter, "take", limit=self.ip_limit)
        if outcome != "taken":
            raise RateLimited(_seconds(wait_ms))
        await self._run(counter, "failed")

    async def _take(self, counter: str, limit: int) -> None:
        outcome, wait_ms = await self._run(counter, "take", limit=limit)
        if outcome == "limited":
            raise RateLimited(_seconds(wait_ms))
        if outcome == "busy":
            raise SignInBusy()

    async def _run(self, counter: str, op: str, **named: object) -> tuple[str, int]:
        arguments = {"now": self.clock.now_ms(), "window_ms": self.window_ms, "op": op, **named}
        outcome, wait_ms = await self._attempts(keys=[counter], args=[_json.encode(arguments)])
        return str(outcome), int(wait_ms)


def _seconds(wait_ms: int) -> int:
    """Whole seconds to wait, rounded up, at least one (for Retry-After)."""
    return max(1, -(-wait_ms // 1000))
