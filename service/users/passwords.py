"""argon2id password hashes, checked off the event loop on a few low-priority threads, with
sign-ins admitted to them in turn, fairly between clients.

A sign-in waits for its turn (a share of the hashing threads) rather than being refused as
soon as a few others are being checked: clients take turns round-robin, one queue per
client (an address, or an IPv6 /64), so a burst from one client delays another client's
sign-in by about one hash, however long the burst. The queues are bounded per client and
in all, and a sign-in that can't have its turn within MAX_WAIT_S is answered 503 `busy`
with a Retry-After of about how long the queue takes to drain.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from service.settings import Settings

# argon2 is CPU-bound and multi-threaded (p=4). Checking a few at a time, on threads of
# lower priority (argon2's own threads inherit it), leaves the CPU to the event loop first:
# a login storm queues sign-ins instead of stalling every other request.
HASH_CONCURRENCY = max(1, (os.cpu_count() or 2) // 2)
HASHING_NICENESS = 10
# 20 people behind one NAT signing in at once all wait their turn (an office on Monday).
MAX_WAITING_PER_CLIENT = 32
MAX_WAITING = 256
# Longer than that, a person would rather be told to retry; well inside proxies' timeouts.
MAX_WAIT_S = 10.0
# Until hashes have been timed, assume this long for one (argon2id 64 MiB, t=3: ~0.1 s).
FIRST_GUESS_S = 0.1


def password_hasher(settings: Settings) -> PasswordHasher:
    """The hasher of PASSWORD_HASH_*: for new hashes, and what a stored one is held to."""
    return PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_cost=settings.password_hash_memory_cost,
        parallelism=settings.password_hash_parallelism,
    )


class HashingBusy(Exception):
    """No turn at the hashing threads within the bounded wait: retry after `retry_after` s."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"password checks are busy; retry in {retry_after}s")
        self.retry_after = retry_after


class PasswordChecker:
    """Owns the hashing threads and their turns; create one per app and `close()` it."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        threads: int = HASH_CONCURRENCY,
        max_waiting: int = MAX_WAITING,
        max_waiting_per_client: int = MAX_WAITING_PER_CLIENT,
        max_wait: float = MAX_WAIT_S,
    ) -> None:
        self.hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._threads, self._free = threads, threads
        self._max_waiting, self._per_client, self._max_wait = (
            max_waiting,
            max_waiting_per_client,
            max_wait,
        )
        # Waiting sign-ins by client; the dict's order is the round-robin's.
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._waiting = 0
        self._hash_seconds = FIRST_GUESS_S
        # Unknown users are checked against this, so they cost what a wrong password costs.
        self.dummy_hash = self.hasher.hash(os.urandom(16).hex())

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[None]:
        """Hold a share of the hashing threads for the block; HashingBusy if none comes."""
        await self._admit(client)
        try:
            yield
        finally:
            self._hand_on()

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Check a password on the hashing threads (call it during a `turn`)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._verify, stored_hash, password)
        finally:
            # A moving average of the wall time of a check, for Retry-After.
            self._hash_seconds += (time.perf_counter() - started - self._hash_seconds) / 8

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a stored hash has other parameters than PASSWORD_HASH_*."""
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False

    async def hash(self, password: str) -> str:
        """A new hash of `password` (call it during a `turn`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hasher.hash, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _admit(self, client: str) -> None:
        if self._free and not self._queues:
            self._free -= 1
            return
        queue = self._queues.get(client)
        if self._waiting >= self._max_waiting or (queue and len(queue) >= self._per_client):
            raise HashingBusy(self._drain_seconds())
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if queue is None:
            queue = self._queues[client] = deque()  # a new client joins at the back
        queue.append(turn)
        self._waiting += 1
        expiry = asyncio.get_running_loop().call_later(self._max_wait, self._expire, client, turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._hand_on()  # given a turn just as its caller went away: pass it on
            else:
                self._withdraw(client, turn)
            raise
        finally:
            expiry.cancel()

    def _expire(self, client: str, turn: asyncio.Future[None]) -> None:
        if not turn.done():
            self._withdraw(client, turn)
            turn.set_exception(HashingBusy(self._drain_seconds()))

    def _withdraw(self, client: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(client)
        if queue is not None and turn in queue:
            queue.remove(turn)
            self._waiting -= 1
            if not queue:
                del self._queues[client]

    def _hand_on(self) -> None:
        """A turn ends: the next client in the rotation gets it, and goes to the back."""
        while self._queues:
            client, queue = next(iter(self._queues.items()))
            del self._queues[client]
            turn = queue.popleft()
            self._waiting -= 1
            if queue:
                self._queues[client] = queue
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

    def _drain_seconds(self) -> int:
        """About how long the sign-ins waiting now will take: a Retry-After."""
        seconds = (self._waiting + 1) * self._hash_seconds / self._threads
        return max(1, min(math.ceil(seconds), math.ceil(self._max_wait)))

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def _lower_priority() -> None:
    """On Linux a thread has a nice value of its own, and threads it starts inherit it."""
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
