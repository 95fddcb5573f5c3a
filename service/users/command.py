"""`python -m service.users add|passwd|remove NAME`: change the users file of a running system.

The running API processes follow the file (service/userwatch.py), so a change needs no
restart. A changed password signs the user out everywhere (reason `password_changed`), a
removed user too (reason `admin`); their devices are told at once, like any revocation.

This command does those sign-outs itself, right after it replaced the file, rather than
each API process when it rereads the file: it alone knows what changed and when, and it
does it once. An API process that reread the file late would sign out sessions opened with
the new password in the meantime. Sign-ins cannot slip in between: each password check
looks at the file again after hashing, and the script that signs the user out revokes the
old password too, so a sign-in checked against it opens no session (SessionStore.create).

It needs the service's settings (REDIS_URL above all): run it with the service's
environment, or name the service's environment file with `--env-file` (read as the
service's run script reads `.env`: a variable of the process environment wins). With
APP_ENV=production, REDIS_URL must be set. It says where it signed out (the URL, without
its password). If Redis does not answer within CONNECT_WAIT, nothing is changed: a
password changed without its sign-outs would leave the old sessions live. In development
(no REDIS_URL) with nothing running at the development address there is nothing to sign
out (an embedded Redis keeps no sessions once stopped), so only the file is changed.

The password is asked twice at a terminal; otherwise one line is read from stdin, for
scripts: `printf '%s\\n' "$PW" | python -m service.users passwd alice`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from redis.exceptions import RedisError

from service.engine.connect import connected
from service.engine.devredis import answers
from service.engine.errors import REDIS_DOWN
from service.envfile import EnvFileError, environment_with
from service.sessions.store import SessionStore
from service.settings import DEFAULT_REDIS_HOST, ConfigError, Settings, redacted_url
from service.users.directory import credentials_of
from service.users.file import (
    Entry,
    UsersFileError,
    find,
    locked,
    read_entries,
    write_entries,
)
from service.users.passwords import password_hasher
from service.wire.names import is_printable, is_valid_username

PROG = "python -m service.users"
MIN_PASSWORD = 8
MAX_EMAIL = 254  # RFC 5321's limit on a path
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
        email = _checked_email(getattr(args, "email", ""))
        env = environment_with(args.env_file) if args.env_file else os.environ
        settings = _settings(env, args.file)
        path = Path(args.file or settings.users_file)
        print(asyncio.run(_change(settings, path, args.command, args.username, email)))
    except (BadInput, ConfigError, EnvFileError) as exc:
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
        command.add_argument(
            "--env-file",
            metavar="PATH",
            help="the service's environment file (NAME=value lines); the environment wins",
        )
        if name == "add":
            command.add_argument("--email", default="", help="the user's email address")
    return parser


def _settings(env: Mapping[str, str], users_file: str | None) -> Settings:
    """The service's settings, read from `env` as the service reads them (production must
    name its Redis: a default address would sign nobody out). The command signs no token,
    so it needs no JWT_SECRET (nor makes a development one), nor USERS_FILE with --file."""
    needless = {"JWT_SECRET": secrets.token_urlsafe(32), "USERS_FILE": users_file or ""}
    unset = {name: value for name, value in needless.items() if not env.get(name, "").strip()}
    return Settings.from_env({**env, **unset})


def _checked_email(email: str) -> str:
    """The address as given (or none), else BadInput. It goes into /me and the
    X-Auth-Request-Email header of forward auth: one `local@domain`, all printable."""
    local, _, domain = email.rpartition("@")
    printable = is_printable(email) and not any(c.isspace() for c in email)
    if email and not (local and domain and printable and len(email) <= MAX_EMAIL):
        raise BadInput(f"{email!r} is not an email address such as alice@example.com")
    return email


async def _change(
    settings: Settings, path: Path, command: str, username: str, email: str = ""
) -> str:
    """Make the change, then its sign-outs; the line that reports them."""
    with locked(path):  # no hash upgrade by an API process writes the file meanwhile
        return await _change_locked(settings, path, command, username, email)


async def _change_locked(
    settings: Settings, path: Path, command: str, username: str, email: str
) -> str:
    entries = read_entries(path)
    entry = find(entries, username)
    old_hash = str(entry["password_hash"]) if entry else ""  # before _edit replaces it
    done = _edit(entries, command, username, path, settings, email)
    reason = REASONS.get(command)
    if reason is None:
        write_entries(path, entries)
        return done
    async with _sessions(settings) as store:
        write_entries(path, entries)
        if store is None:
            nobody = "so there is no session to sign out"
            return f"{done}; no Redis answers at {_where(settings)}, {nobody}"
        revoked = credentials_of(old_hash)
        signed_out = await _sign_out(store, username, reason, revoked, done)
    return f"{done}; signed out {len(signed_out)} session(s) at {_where(settings)}"


def _where(settings: Settings) -> str:
    """The Redis the command talks to, as the service would (without a password)."""
    url = redacted_url(settings.effective_redis_url)
    if settings.redis_url:
        return url
    return f"{url}, the development default (REDIS_URL is not set: see --env-file)"


def _edit(
    entries: list[Entry],
    command: str,
    username: str,
    path: Path,
    settings: Settings,
    email: str = "",
) -> str:
    """Change `entries` as asked (asking for the password); the words for what was done."""
    entry = find(entries, username)
    if command == "add":
        if entry is not None:
            raise Refused(f"{username} is already in {path} (`passwd {username}` changes it)")
        entry = {"username": username, "email": email, "bio": ""}
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
            url = redacted_url(settings.effective_redis_url)
            raise Refused(
                f"Redis at {url} did not answer within {CONNECT_WAIT:.0f}s, so the user's "
                "sessions could not be signed out: nothing was changed"
            ) from None
        yield SessionStore(client, settings)


async def _sign_out(
    store: SessionStore, username: str, reason: str, credentials: str, done: str
) -> list[str]:
    """Sign the user out everywhere and, in the same step, revoke the old password: no
    sign-in checked against it (in any API process, however late) opens a session."""
    try:
        return await store.revoke(username, "all", "", reason, None, credentials=credentials)
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
