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


class PasswordChecker:
    """Owns the hashing threads; create one per app and `close()` it at the end."""

    def __init__(self, threads: int = HASH_CONCURRENCY) -> None:
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="argon2", initializer=_lower_priority
        )

    async def verify(self, stored_hash: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _verify, stored_hash, password)

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
