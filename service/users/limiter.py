"""Brute-force protection: failed sign-ins counted per username and per client, and wrong
admin tokens per client (a client is an address, or an IPv6 /64: users/clients.py).

A sign-in from a known device (a valid device token) is counted against that device and
the client's budget for known devices, never against the username. An attempt is reserved
before its password is hashed, so a burst of concurrent guesses costs no more hashes than
the limit allows; when only attempts still being checked fill the budget, the next one is
told to retry (503 busy) rather than that it failed. A success counts against nothing
(people behind one NAT must still get in) and clears the username's failures.

What this keeps in Redis is bounded per client: a counter that ends up with nothing
counted is deleted at once, so only failures (which cost the client its own budget) leave
keys, and a client has at most its budget of them per window.

Failures and refusals of a user in the users file are also recorded for its owner to see
(/activity), by the same script that counts them: the username's and its devices' counters
live on the user's slot, beside that record. The client counters live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import redis.asyncio as redis

from service.clock import SYSTEM_CLOCK, Clock
from service.sessions import keys
from service.sessions.scripts import plain_script
from service.settings import Settings
from service.users.clients import client_of
from service.wire.names import is_valid_username

# One client may fail this many times the per-user limit (a NAT hides many people).
IP_LIMIT_FACTOR = 5
# Windows of failed sign-ins kept for the owner to see (each aggregates a whole window).
FAILURE_RECORD_ENTRIES = 20
# As long as the user's event log is kept: a session's maximum age plus the store's grace.
_RECORD_GRACE_MS = 60_000

_json = msgspec.json.Encoder()


class RateLimited(Exception):
    """Too many failures in the window: 429 until it ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; retry in {retry_after}s")
        self.retry_after = retry_after


class SignInBusy(Exception):
    """Attempts still being checked fill the budget: 503, retry shortly."""


@dataclass(frozen=True, slots=True)
class Budget:
    counter: str
    limit: int
    # The user's failure record, when the counter is on the user's slot and the user exists.
    record: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """The budgets one attempt is charged to, in order; a success clears the last one."""

    budgets: tuple[Budget, ...]


class LoginLimiter:
    """Fixed-window attempt counters in Redis, judged by the injected clock."""

    def __init__(self, client: redis.Redis, settings: Settings, clock: Clock = SYSTEM_CLOCK):
        self.clock = clock
        self.user_limit = settings.login_max_failures
        self.ip_limit = settings.login_max_failures * IP_LIMIT_FACTOR
        self.window_ms = settings.login_failure_window * 1000
        self.record_keep_ms = settings.session_max_age * 1000 + _RECORD_GRACE_MS
        self._attempts = client.register_script(plain_script("attempts"))

    async def reserve(
        self, username: str, ip: str, device: str | None = None, *, known_user: bool = False
    ) -> Reservation:
        """Charge one attempt, or raise RateLimited/SignInBusy.

        A known `device` (from a valid device token) is charged to its own budget and to
        the client's budget for known devices: failures from elsewhere never lock it out.
        Otherwise the client goes first, then the username: a client past its own limit
        must not use up the username's. A name that can't be a user's has no budget of its
        own (there is no account to protect), only the client's. Failures of a
        `known_user` are recorded for its owner.
        """
        client = client_of(ip)
        record = self._record(username, ip, known_user)
        if device is not None:
            budgets = [
                Budget(keys.device_failures_by_ip(client), self.ip_limit),
                Budget(keys.login_failures_by_device(username, device), self.user_limit, record),
            ]
        else:
            budgets = [Budget(keys.login_failures_by_ip(client), self.ip_limit)]
            if is_valid_username(username):
                lock = {**record, "lock": True} if record else None
                budgets.append(Budget(keys.login_failures_by_user(username), self.user_limit, lock))
        taken: list[Budget] = []
        try:
            for budget in budgets:
                await self._take(budget)
                taken.append(budget)
        except (RateLimited, SignInBusy):
            await self.cancel(Reservation(tuple(taken)))
            raise
        return Reservation(tuple(taken))

    def _record(self, username: str, ip: str, known_user: bool) -> dict[str, object] | None:
        if not known_user or not is_valid_username(username):
            return None
        return {
            "key": keys.signin_failures(username),
            "ip": ip,
            "cap": FAILURE_RECORD_ENTRIES,
            "keep_ms": self.record_keep_ms,
            "lock": False,
        }

    async def failed(self, reservation: Reservation) -> None:
        for budget in reservation.budgets:
            await self._run(budget, "failed")

    async def succeeded(self, reservation: Reservation) -> None:
        *others, last = reservation.budgets
        for budget in others:
            await self._run(budget, "succeeded")
        await self._run(last, "succeeded", clear=True)

    async def cancel(self, reservation: Reservation) -> None:
        """The attempt never tested its password (the server was busy, or failed)."""
        for budget in reservation.budgets:
            await self._run(budget, "cancel")

    async def admin_failed(self, ip: str) -> None:
        """Count a wrong admin token against the client; RateLimited once it is at its limit.

        Only wrong tokens are ever counted or refused (the right one is never asked here),
        so attempts in flight that fill the budget mean the limit, not "busy".
        """
        budget = Budget(keys.admin_failures_by_ip(client_of(ip)), self.ip_limit)
        outcome, wait_ms = await self._run(budget, "take")
        if outcome != "taken":
            raise RateLimited(_seconds(wait_ms))
        await self._run(budget, "failed")

    async def _take(self, budget: Budget) -> None:
        outcome, wait_ms = await self._run(budget, "take")
        if outcome == "limited":
            raise RateLimited(_seconds(wait_ms))
        if outcome == "busy":
            raise SignInBusy()

    async def _run(self, budget: Budget, op: str, **named: object) -> tuple[str, int]:
        arguments = {
            "now": self.clock.now_ms(),
            "window_ms": self.window_ms,
            "limit": budget.limit,
            "op": op,
            **named,
        }
        counter_keys = [budget.counter]
        if budget.record is not None:
            record = dict(budget.record)
            counter_keys.append(str(record.pop("key")))
            arguments["record"] = record
        outcome, wait_ms = await self._attempts(keys=counter_keys, args=[_json.encode(arguments)])
        return str(outcome), int(wait_ms)


def _seconds(wait_ms: int) -> int:
    """Whole seconds to wait, rounded up, at least one (for Retry-After)."""
    return max(1, -(-wait_ms // 1000))
