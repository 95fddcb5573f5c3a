"""The user directory: a JSON file of argon2id hashes, followed while the API runs.

The file is read at start-up and again whenever it changes: service/userwatch.py looks
once a second and on SIGHUP, and every password check looks first (one stat), so a
password changed by `python -m service.users passwd` is the only one that works from the
moment the file is replaced. `python -m service.users add|passwd|remove NAME` edits it
(service/useradmin.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import msgspec

from service.settings import ConfigError
from service.users.passwords import PasswordChecker

log = logging.getLogger(__name__)


class User(msgspec.Struct, kw_only=True):
    username: str
    password_hash: str
    email: str = ""
    bio: str = ""

    @property
    def credentials(self) -> str:
        """What names this password in Redis (see credentials_of)."""
        return credentials_of(self.password_hash)


def credentials_of(password_hash: str) -> str:
    """A digest of a password hash: the session core refuses a sign-in checked against a
    hash since replaced or removed (SessionStore.create). It tells nothing of the password:
    a guess can't be tried against it without the hash's salt."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


class UsersFile(msgspec.Struct):
    users: list[User]


class UserDirectory:
    """Looks users up and checks their passwords; loaded from a file, it follows the file."""

    def __init__(self, users: list[User], path: str | Path | None = None) -> None:
        self._users = {user.username: user for user in users}
        self.path = Path(path) if path is not None else None
        self._seen: tuple[int, ...] | None = None  # the file as last read

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        """Read the users file; raise ConfigError if it is missing or malformed."""
        seen = _stamp(Path(path))  # before reading: a change meanwhile is seen next time
        directory = cls(read_users(path), path)
        directory._seen = seen
        return directory

    def get(self, username: str) -> User | None:
        return self._users.get(username)

    def refresh(self, *, force: bool = False) -> bool:
        """Reread the file if it changed (or when forced); True if users were replaced.

        A file that can't be read is logged once per change, and the users stay as they were.
        """
        if self.path is None:
            return False
        seen = _stamp(self.path)
        if seen == self._seen and not force:
            return False
        self._seen = seen
        try:
            users = read_users(self.path)
        except ConfigError as exc:
            log.error("%s; keeping the %d users read before", exc, len(self._users))
            return False
        self._users = {user.username: user for user in users}
        log.info("reread USERS_FILE %s: %d users", self.path, len(users))
        return True

    async def authenticate(
        self, username: str, password: str, checker: PasswordChecker
    ) -> User | None:
        """The user if the password is right, else None; same cost either way.

        Call it during one of the checker's turns. A password changed while the hash was
        being checked is checked again, whoever reread the file first, so a sign-in with the
        old one fails once the new file is read. (A sign-in checked just before the change
        is refused by the session core: the user's `credentials` are revoked with their
        sessions, see service/users/command.py.)
        """
        self.refresh()
        user = self._users.get(username)
        stored = user.password_hash if user else checker.dummy_hash
        ok = await checker.verify(stored, password)
        self.refresh()
        if _hash_of(self._users.get(username)) != _hash_of(user):
            return await self.authenticate(username, password, checker)
        return user if ok and user else None


def read_users(path: str | Path) -> list[User]:
    """The users of the file; ConfigError if it is missing or malformed.

    A name listed twice is malformed: which entry counts would be anybody's guess (the
    API's dict keeps the last, a command editing the file the first).
    """
    try:
        users = msgspec.json.decode(Path(path).read_bytes(), type=UsersFile).users
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"USERS_FILE={str(path)!r} can't be used: {exc}") from None
    counts = Counter(user.username for user in users)
    for name, count in counts.items():
        if count > 1:
            raise ConfigError(
                f"USERS_FILE={str(path)!r} can't be used: {name!r} is listed {count} times"
            )
    return users


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What changes whenever the file is replaced or written (None: it can't be seen)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash_of(user: User | None) -> str | None:
    return user.password_hash if user else None
