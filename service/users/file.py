"""Editing the users file so that a running API never reads half of one.

A new version is written to a temporary file beside the old one, given the old one's mode
and owner, flushed to disk (fsync), then renamed over it: a reader sees the old file or
the new one, and a crash at any point leaves one of the two whole. A link is followed, so
the file it points at is replaced and the link kept.

Whoever reads, changes and writes the file back holds its lock (`locked`, an flock on a
file beside it) meanwhile: the users command, and an API process upgrading a hash. So an
upgrade can never write back a password that `passwd` replaced a moment before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.users.directory import read_users

Entry = dict[str, Any]  # one user as the file has it, fields we don't know included


class UsersFileError(Exception):
    """The users file can't be read or written as asked; the message is one line."""


def read_entries(path: Path) -> list[Entry]:
    """The file's users (none if there is no file); UsersFileError if it is malformed."""
    if not path.exists():
        return []
    try:
        read_users(path)  # checks every entry's shape
        return list(json.loads(path.read_text())["users"])
    except Exception as exc:
        raise UsersFileError(str(exc)) from None


def find(entries: list[Entry], username: str) -> Entry | None:
    return next((entry for entry in entries if entry["username"] == username), None)


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the users file's lock for the block; without `wait`, True only if it was free."""
    target = Path(os.path.realpath(path))
    lock_path = target.parent / f".{target.name}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsersFileError(f"can't lock {target} ({lock_path}): {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # and with it the lock


def write_entries(path: Path, entries: list[Entry]) -> None:
    """Replace the file atomically with `entries`, keeping its mode and owner."""
    target = Path(os.path.realpath(path))
    text = json.dumps({"users": entries}, indent=2, ensure_ascii=False) + "\n"
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise UsersFileError(f"can't write beside {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            _take_mode_and_owner(out.fileno(), target)
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(target.parent)


def _take_mode_and_owner(fd: int, target: Path) -> None:
    """Give the new file the old one's mode and owner (a new file: the umask's mode)."""
    try:
        old = target.stat()
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    os.fchmod(fd, old.st_mode & 0o7777)
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:
            raise UsersFileError(
                f"can't keep the owner of {target} (uid {old.st_uid}, gid {old.st_gid}): "
                "run this as root or as that user"
            ) from None


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
