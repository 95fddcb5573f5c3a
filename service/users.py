"""The user directory: a JSON file of argon2id hashes, read once at start-up.

`python -m service.users add NAME` adds a user or changes a password.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import msgspec

from service.passwords import PasswordChecker, hasher
from service.settings import ConfigError

# Names that can't break a Redis hash tag or a key.
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def is_valid_username(name: str) -> bool:
    """A name USERNAME_PATTERN allows as a whole (its `$` would let a final newline by)."""
    return USERNAME_PATTERN.fullmatch(name) is not None


class User(msgspec.Struct, kw_only=True):
    username: str
    password_hash: str
    email: str = ""
    bio: str = ""


class UsersFile(msgspec.Struct):
    users: list[User]


class UserDirectory:
    """Looks users up and checks their passwords."""

    def __init__(self, users: list[User]) -> None:
        self._users = {user.username: user for user in users}
        # Unknown users are checked against this, so they cost what a wrong password costs.
        self._dummy_hash = hasher.hash(os.urandom(16).hex())

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        """Read the users file; raise ConfigError if it is missing or malformed."""
        try:
            return cls(msgspec.json.decode(Path(path).read_bytes(), type=UsersFile).users)
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"USERS_FILE={str(path)!r} can't be used: {exc}") from None

    def get(self, username: str) -> User | None:
        return self._users.get(username)

    async def authenticate(
        self, username: str, password: str, checker: PasswordChecker, client: str = ""
    ) -> User | None:
        """The user if the password is right, else None; same cost either way.

        `client` (the caller's IP) is whose share of the hashing queue the check uses.
        """
        user = self._users.get(username)
        stored = user.password_hash if user else self._dummy_hash
        ok = await checker.verify(stored, password, client)
        return user if ok and user else None


def set_password(path: Path, username: str, password: str) -> bool:
    """Add the user or replace the password; returns True if the user is new."""
    data = json.loads(path.read_text()) if path.exists() else {"users": []}
    entry = next((u for u in data["users"] if u["username"] == username), None)
    is_new = entry is None
    if entry is None:
        entry = {"username": username, "email": "", "bio": ""}
        data["users"].append(entry)
    entry["password_hash"] = hasher.hash(password)
    with tempfile.NamedTemporaryFile("w", dir=path.parent or ".", delete=False) as tmp:
        json.dump(data, tmp, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, path)
    return is_new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.users")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user or change a password")
    add.add_argument("username")
    add.add_argument("--file", default=os.environ.get("USERS_FILE", "demo_users.json"))
    args = parser.parse_args(argv)
    if not USERNAME_PATTERN.match(args.username):
        print("username: 1-64 of letters, digits and . _ @ -", file=sys.stderr)
        return 2
    password = getpass.getpass("Password: ")
    if len(password) < 4 or password != getpass.getpass("Repeat: "):
        print("passwords differ or are shorter than 4 characters", file=sys.stderr)
        return 2
    is_new = set_password(Path(args.file), args.username, password)
    print(f"{'added' if is_new else 'updated'} {args.username} in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
