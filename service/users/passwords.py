"""argon2id password hashes, verified off the event loop on a few low-priority threads."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's default is RFC 9106's low-memory profile: argon2id, t=3, 64 MiB, p=4,
# above OWASP's minimum (argon2id, 19 MiB, t=2, p=1).
hasher = PasswordHasher()
# argon2 is CPU-bound and multi-threaded (p=4). Verifying a few at a time, on threads of
# lower priority (argon2's own threads inherit it), leaves the CPU to the event loop first:
# a login storm queues sign-ins instead of stalling every other request.
HASH_CONCURRENCY = max(1, (os.cpu_count() or 2) // 2)
HASHING_NICENESS = 10
# A check waits behind at most this many others (~0.1 s each), so a burst is answered
# "busy" instead of making every sign-in wait for the whole burst.
MAX_QUEUED = 8
# Checks one client (IP) may have queued or running at once: one address can't fill the
# queue and push everybody else's sign-ins out.
MAX_PER_CLIENT = 2


class HashingBusy(Exception):
    """The hashing queue (or this client's share of it) is full: retry shortly."""


class PasswordChecker:
    """Owns the hashing threads; create one per app and `close()` it at the end."""

    def __init__(
        self,
        threads: int = HASH_CONCURRENCY,
        max_queued: int = MAX_QUEUED,
        max_per_client: int = MAX_PER_CLIENT,
    ) -> None:
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._capacity, self._per_client = threads + max_queued, max_per_client
        self._in_use = 0
        self._by_client: dict[str, int] = {}

    async def verify(self, stored_hash: str, password: str, client: str = "") -> bool:
        """Check a password on the hashing threads; raise HashingBusy when the queue is full."""
        held = self._by_client.get(client, 0)
        if self._in_use >= self._capacity or held >= self._per_client:
            raise HashingBusy()
        self._in_use += 1
        self._by_client[client] = held + 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, _verify, stored_hash, password)
        finally:
            self._in_use -= 1
            if (left := self._by_client.pop(client) - 1) > 0:
                self._by_client[client] = left

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    """On Linux a thread has a nice value of its own, and threads it starts inherit it."""
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
