"""`python -m service.users add|passwd|remove NAME`: change the users file of a running system.

The running API processes follow the file (service/userwatch.py), so a change needs no
restart. A changed password signs the user out everywhere (reason `password_changed`), a
removed user too (reason `admin`); their devices are told at once, like any revocation.

This command does those sign-outs itself, right after it replaced the file, rather than
each API process when it rereads the file: it alone knows what changed and when, and it
does it once. An API process that reread the file late would sign out sessions opened with
the new password in the meantime. Sign-ins cannot slip in between: each password check
looks at the file first, and again after hashing (service/users.py).

It needs the service's settings (REDIS_URL above all), so run it with the service's
environment. If Redis does not answer within CONNECT_WAIT, nothing is changed: a password
changed without its sign-outs would leave the old sessions live. In development (no
REDIS_URL) with nothing running at the development address there is nothing to sign out
(an embedded Redis keeps no sessions once stopped), so only the file is changed.

The password is asked twice at a terminal; otherwise one line is read from stdin, for
scripts: `printf '%s\\n' "$PW" | python -m service.users passwd alice`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from redis.exceptions import RedisError

from service.engine.connect import connected, redact
from service.engine.devredis import answers
from service.engine.errors import REDIS_DOWN
from service.sessions.store import SessionStore
from service.settings import DEFAULT_REDIS_HOST, ConfigError, Settings
from service.users.file import (
    Entry,
    UsersFileError,
    find,
    locked,
    read_entries,
    write_entries,
)
from service.users.passwords import password_hasher
from service.wire.names import is_valid_username

PROG = "python -m service.users"
MIN_PASSWORD = 8
CONNECT_WAIT = 10.0
# Who is signed out by what: a new user has no sessions yet.
REASONS = {"passwd": "password_changed", "remove": "admin"}
EXIT_REFUSED, EXIT_USAGE = 1, 2


class Refused(Exception):
    """What was asked can't be done; nothing was changed. The message is one line."""


class BadInput(Exception):
    """A name or password that breaks the rules; nothing was changed."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # Redis's retries, if any
    logging.getLogger("service.sessions.store").setLevel(logging.INFO)  # each sign-out
    try:
        if not is_valid_username(args.username):
            raise BadInput("a username is 1-64 of letters, digits and . _ @ -")
        settings = Settings.from_env()
        path = Path(args.file or settings.users_file)
        print(asyncio.run(_change(settings, path, args.command, args.username)))
    except (BadInput, ConfigError) as exc:
        return _fail(args.command, str(exc), EXIT_USAGE)
    except (Refused, UsersFileError) as exc:
        return _fail(args.command, str(exc), EXIT_REFUSED)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, purpose in (
        ("add", "add a user (asks for the password)"),
        ("passwd", "change a user's password and sign them out everywhere"),
        ("remove", "remove a user and sign them out everywhere"),
    ):
        command = commands.add_parser(name, help=purpose)
        command.add_argument("username")
        command.add_argument("--file", help="the users file (default: USERS_FILE)")
    return parser


async def _change(settings: Settings, path: Path, command: str, username: str) -> str:
    """Make the change, then its sign-outs; the line that reports them."""
    with locked(path):  # no hash upgrade by an API process writes the file meanwhile
        return await _change_locked(settings, path, command, username)


async def _change_locked(settings: Settings, path: Path, command: str, username: str) -> str:
    entries = read_entries(path)
    done = _edit(entries, command, username, path, settings)
    reason = REASONS.get(command)
    if reason is None:
        write_entries(path, entries)
        return done
    async with _sessions(settings) as store:
        write_entries(path, entries)
        if store is None:
            return f"{done}; no Redis runs here, so there is no session to sign out"
        signed_out = await _sign_out(store, username, reason, done)
    return f"{done}; signed out {len(signed_out)} session(s)"


def _edit(entries: list[Entry], command: str, username: str, path: Path, settings: Settings) -> str:
    """Change `entries` as asked (asking for the password); the words for what was done."""
    entry = find(entries, username)
    if command == "add":
        if entry is not None:
            raise Refused(f"{username} is already in {path} (`passwd {username}` changes it)")
        entry = {"username": username, "email": "", "bio": ""}
        entries.append(entry)
    elif entry is None:
        raise Refused(f"{username} is not in {path}")
    if command == "remove":
        entries.remove(entry)
        return f"removed {username} from {path}"
    entry["password_hash"] = password_hasher(settings).hash(_read_password())  # PASSWORD_HASH_*
    return f"{'added' if command == 'add' else 'changed the password of'} {username} in {path}"


@asynccontextmanager
async def _sessions(settings: Settings) -> AsyncIterator[SessionStore | None]:
    """The session store, once Redis answers (Refused if it won't); None in development
    when no Redis runs at all."""
    if settings.redis_url is None and not answers(DEFAULT_REDIS_HOST, settings.dev_redis_port):
        yield None
        return
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout(CONNECT_WAIT):
                client = await stack.enter_async_context(connected(settings))
        except TimeoutError:
            url = redact(settings.effective_redis_url)
            raise Refused(
                f"Redis at {url} did not answer within {CONNECT_WAIT:.0f}s, so the user's "
                "sessions could not be signed out: nothing was changed"
            ) from None
        yield SessionStore(client, settings)


async def _sign_out(store: SessionStore, username: str, reason: str, done: str) -> list[str]:
    try:
        return await store.revoke(username, "all", "", reason, None)
    except (RedisError, *REDIS_DOWN) as exc:
        raise Refused(
            f"{done}, but signing out their sessions failed ({exc}): sign them out with "
            f"POST /admin/users/{username}/logout-all"
        ) from None


def _read_password(ask: Callable[[str], str] = getpass.getpass) -> str:
    """Twice at a terminal; else one line of stdin. BadInput if it breaks the rules."""
    if sys.stdin.isatty():
        password = ask("Password: ")
        if password != ask("Repeat: "):
            raise BadInput("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"a password must have at least {MIN_PASSWORD} characters")
    return password


def _fail(command: str, problem: str, status: int) -> int:
    print(f"{PROG} {command}: {problem}", file=sys.stderr)
    return status
