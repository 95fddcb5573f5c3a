"""Stored hashes follow PASSWORD_HASH_*: a password checked right against a hash of other
parameters is hashed anew and written back, in that user's entry of the users file.

The file is replaced atomically under its lock (users/file.py), and only if the entry still
has the hash that was checked: a password changed meanwhile is never overwritten. The
other API processes follow the file as they always do. A file the API may not write (a
read-only mount) is reported once, and sign-ins go on with the old hashes: no upgrade is
tried again (and no hash spent on one) until the file changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from service.users.directory import User, UserDirectory
from service.users.file import UsersFileError, find, locked, read_entries, write_entries
from service.users.passwords import PasswordChecker

log = logging.getLogger(__name__)


class HashUpgrades:
    """Upgrades the hashes of one directory's file; call `after_sign_in` during a turn."""

    def __init__(self, directory: UserDirectory, checker: PasswordChecker) -> None:
        self.directory, self.checker = directory, checker
        self._refused_said = False
        self._refused_file: tuple[int, ...] | None = None  # the file as it was when refused

    async def after_sign_in(self, user: User, password: str) -> None:
        """Rehash `password` (just checked right against `user`'s hash) if its hash is old."""
        path = self.directory.path
        if path is None or not self.checker.needs_rehash(user.password_hash):
            return
        if self._refused_file is not None and self._refused_file == _identity(path):
            return
        if not _writable(path):
            self._refused(path, "the API may not write it")
            return
        new_hash = await self.checker.hash(password)
        try:
            written = await asyncio.to_thread(
                _replace_hash, path, user.username, user.password_hash, new_hash
            )
        except (UsersFileError, OSError) as exc:
            self._refused(path, str(exc))
            return
        if written:
            log.info("upgraded the password hash of %s to PASSWORD_HASH_*", user.username)
            self.directory.refresh()

    def _refused(self, path: Path, why: str) -> None:
        self._refused_file = _identity(path)
        if not self._refused_said:
            self._refused_said = True
            log.warning("can't upgrade old password hashes in %s (%s); they stay", path, why)


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _writable(path: Path) -> bool:
    target = os.path.realpath(path)
    return os.access(target, os.W_OK) and os.access(os.path.dirname(target), os.W_OK)


def _replace_hash(path: Path, username: str, checked: str, new_hash: str) -> bool:
    """Write `new_hash` in place of `checked`; False if the entry changed or is busy."""
    with locked(path, wait=False) as held:  # a users command at work: upgrade next time
        if not held:
            return False
        entries = read_entries(path)
        entry = find(entries, username)
        if entry is None or entry.get("password_hash") != checked:
            return False
        entry["password_hash"] = new_hash
        write_entries(path, entries)
        return True
