"""`sessionwire`: a device client for terminals (sign in, list and sign out devices, listen).

Tokens are kept per profile in `$SESSIONWIRE_HOME` (default ~/.config/sessionwire), one
0600 file each, so two terminals can be two devices: `--profile laptop`, `--profile phone`
(see clients/terminal/profiles.py). A profile whose session ended is forgotten.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import platform
import random
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from clients.terminal.profiles import (
    ProfileError,
    forget_profile,
    load_device_tokens,
    load_profile,
    login_command,
    save_device_token,
    save_profile,
)
from service.wire import disconnect
from service.wire.names import escaped

VERSION = "0.1"
# The API tells a terminal from a browser by this (device_type "terminal").
USER_AGENT = f"sessionwire/{VERSION} ({platform.system()} {platform.machine()})".replace(" )", ")")
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_GATEWAY = "ws://127.0.0.1:8001/ws"
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
# The 401 codes that mean this profile's session is over for good (not a bad request).
ENDED_CODES = ("session_revoked", "token_expired")


def say(text: object, file: TextIO | None = None) -> None:
    """Print one line. Much of it comes from the server, and a device name is anybody's to
    choose: a character that a terminal would act on (ESC, CR, a bidi override) is shown
    as its escape instead."""
    print(escaped(str(text)), file=file or sys.stdout, flush=True)


BROWSERS_ONLY = (
    "this server signs in browsers only (AUTH_COOKIE=always): the terminal client needs "
    "AUTH_COOKIE=auto or never"
)


class CliError(Exception):
    """Something to tell the user in one line; exit status 1. `code`: the problem's, if any."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SessionEnded(CliError):
    """The API says this profile's session has ended: the profile is to be forgotten."""


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
) -> Any:
    """One API request; a problem+json answer becomes a CliError (see problem_error)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.request(method, url, json=body, headers=headers) as resp:
            payload = await resp.json(content_type=None)
            if resp.status >= 400:
                raise problem_error(resp.status, resp.reason, payload)
            return payload
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CliError(f"cannot reach the API at {url}: {exc}") from None
    except (aiohttp.ContentTypeError, ValueError):
        raise CliError(f"unexpected answer from {url}") from None


def problem_error(status: int, reason: str | None, payload: Any) -> CliError:
    """The error for a problem+json answer; a session that ended says why, in words."""
    problem = payload if isinstance(payload, dict) else {}
    if status == 401 and problem.get("code") in ENDED_CODES:
        if revoked := problem.get("revoked"):
            return SessionEnded(signed_out_in_words(revoked))
        why = "the session expired" if problem["code"] == "token_expired" else "the session ended"
        return SessionEnded(f"this device was signed out: {why}")
    return CliError(f"{status}: {problem.get('detail') or reason}", str(problem.get("code", "")))


async def login(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    username = args.username
    # A terminal keeps its token itself (its profile): no browser cookie for it.
    body = {
        "username": username,
        "password": args.password,
        "device_name": args.device_name,
        "cookie": False,
    }
    known = load_device_tokens(args.profile)
    if username in known:  # this device's own failure budget: guessers can't lock us out
        body["device_token"] = known[username]
    try:
        answer = await call(http, "POST", f"{args.api}/login", body=body)
    except CliError as error:
        # Only a sign-in that sets a cookie is judged by its page: the server sets one for
        # every sign-in, which a terminal can't take.
        if error.code == "csrf_refused":
            raise CliError(BROWSERS_ONLY) from None
        raise
    if "token" not in answer:
        raise CliError(BROWSERS_ONLY)
    if answer.get("device_token"):
        save_device_token(args.profile, username, answer["device_token"])
    session = answer["session"]
    save_profile(
        args.profile,
        {"token": answer["token"], "username": username, "session_id": session["session_id"]},
    )
    say(
        f"signed in as {username} on {session['device_name']!r} "
        f"(session {session['session_id']}, profile {args.profile})"
    )
    return EXIT_OK


async def devices(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    token = load_profile(args.profile)["token"]
    answer = await call(http, "GET", f"{args.api}/sessions", token)
    if args.json:  # the machine form: the API's own answer (JSON escapes every control)
        print(json.dumps(answer, indent=2, ensure_ascii=True), flush=True)
        return EXIT_OK
    for line in aligned([DEVICE_COLUMNS, *(device_row(s) for s in answer["sessions"])]):
        say(line)
    return EXIT_OK


DEVICE_COLUMNS = ("", "ID", "NAME", "DEVICE", "WHERE", "LAST SEEN", "SIGNED IN")
NAME_WIDTH = 28
TYPE_WORDS = {"desktop": "computer", "phone": "phone", "tablet": "tablet", "terminal": "terminal"}
ACTIVE_NOW_S = 120  # as the page and the client library say it


def device_row(s: dict[str, Any], now: datetime | None = None) -> tuple[str, ...]:
    """One session as `devices` prints it: every cell already escaped, so widths are true."""
    name = s["device_name"]
    if len(name) > NAME_WIDTH:  # cut before escaping: an escape is shown whole
        name = name[: NAME_WIDTH - 1] + "…"
    return (
        "*" if s.get("current") else "",
        s["session_id"][:8],
        escaped(name),
        escaped(device_in_words(s)),
        escaped(where_in_words(s)),
        "online now" if s.get("online") else seen_in_words(s["last_seen_at"], now),
        local_time(s["created_at"]),
    )


def device_in_words(s: dict[str, Any]) -> str:
    """ "terminal, sessionwire 0.1 on Linux", "phone, Safari 17 on iOS 17.1"."""
    what = " on ".join(part for part in (s.get("browser"), s.get("os")) if part)
    kind = TYPE_WORDS.get(s.get("device_type") or "", "")
    return ", ".join(part for part in (kind, what) if part) or "-"


def where_in_words(s: dict[str, Any]) -> str:
    """ "203.0.113.5 (Berlin, Germany)", "127.0.0.1 (this network)", the address, or "-"."""
    place = ""
    if location := s.get("location"):
        if location.get("this_network"):
            place = "this network"
        else:
            city = location.get("city") or location.get("region")
            place = ", ".join(p for p in (city, location.get("country")) if p)
    address = s.get("ip") or ""
    if address and place:
        return f"{address} ({place})"
    return address or place or "-"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def seen_in_words(value: str, now: datetime | None = None) -> str:
    """ "active now", "5 minutes ago", "2 hours ago", "3 days ago" (rounded down)."""
    seconds = ((now or datetime.now(UTC)) - parse_time(value)).total_seconds()
    if seconds < ACTIVE_NOW_S:
        return "active now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n = int(seconds // size)
        if n >= 1:
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "active now"


def local_time(value: str) -> str:
    """ "3 Dec 09:18", in this computer's time zone."""
    when = parse_time(value).astimezone()
    return f"{when.day} {when:%b %H:%M}"


def width(text: str) -> int:
    """Columns a terminal gives `text` (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of columns two spaces apart, each as wide as its widest cell."""
    widths = [max(width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell + " " * (w - width(cell)) for cell, w in zip(row, widths, strict=True)]
        lines.append((cells[0] + " " + "  ".join(cells[1:])).rstrip())  # "* " then the id
    return lines


async def revoke(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    token = load_profile(args.profile)["token"]
    session_id = await resolve_session_id(args, http, token)
    answer = await call(http, "DELETE", f"{args.api}/sessions/{quote(session_id, safe='')}", token)
    say("signed out: " + ", ".join(answer["revoked"]))
    return EXIT_OK


async def rename(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    token = load_profile(args.profile)["token"]
    session_id = await resolve_session_id(args, http, token)
    path = f"{args.api}/sessions/{quote(session_id, safe='')}"
    try:
        answer = await call(http, "PATCH", path, token, {"device_name": args.name})
    except CliError as error:
        if error.code == "validation_error":
            raise CliError(
                f"{args.name!r} can't be a device name: 1 to 100 characters, none of them "
                "control or format characters"
            ) from None
        raise
    say(f"renamed {session_id} to {answer['device_name']!r}")
    return EXIT_OK


async def resolve_session_id(
    args: argparse.Namespace, http: aiohttp.ClientSession, token: str
) -> str:
    """The one live session whose id starts with what was typed, as git resolves a hash."""
    typed = args.session_id
    prefix = typed.rstrip(".…")  # an id copied shortened, with its ellipsis, still works
    if not prefix:
        raise CliError("give a session id, or the start of one ('sessionwire devices' lists them)")
    answer = await call(http, "GET", f"{args.api}/sessions", token)
    ids = [s["session_id"] for s in answer["sessions"]]
    matches = [prefix] if prefix in ids else [i for i in ids if i.startswith(prefix)]
    if not matches:
        raise CliError(f"no signed-in device has a session id starting with {typed!r}")
    if len(matches) > 1:
        raise CliError(
            f"{typed!r} is the start of {len(matches)} session ids ({', '.join(matches)}): "
            "type more of it"
        )
    return matches[0]


async def revoke_others(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    token = load_profile(args.profile)["token"]
    answer = await call(http, "POST", f"{args.api}/sessions/revoke-others", token)
    say("signed out: " + (", ".join(answer["revoked"]) or "no other device"))
    return EXIT_OK


async def logout(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    token = load_profile(args.profile)["token"]
    try:
        await call(http, "POST", f"{args.api}/logout", token)
    except SessionEnded as ended:  # what was asked for, done earlier: say by whom, no error
        forget_profile(args.profile)
        say(ended)
        return EXIT_OK
    forget_profile(args.profile)
    say("signed out")
    return EXIT_OK


def describe(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "ready":
        return f"connected as {message['username']} (session {message['session_id']})"
    if kind == "sessions.changed":
        s = message["session"]
        what = CHANGES.get(message["event"], message["event"])
        where = f" ({s['ip']})" if s.get("ip") else ""
        return f"{what}: {s['device_name']}{where}, session {s['session_id']}"
    if kind == "session.revoked":
        return signed_out_in_words(message)
    return f"message: {message}"


CHANGES = {
    "created": "new sign-in",
    "revoked": "signed out",
    "renamed": "renamed",
    "online": "online now",
    "offline": "offline",
}


def signed_out_in_words(revoked: dict[str, Any]) -> str:
    """A `session.revoked` message, or a 401's `revoked`: why, who and when."""
    by = revoked.get("by")
    words = REASONS.get(revoked["reason"], revoked["reason"])
    where = f" ({by['ip']})" if by and by.get("ip") else ""
    who = f", from {by['device_name']}{where}" if by else ""
    return f"this device was signed out: {words}{who}, at {revoked['at']}"


# Why a session ended, in words (the contract's reasons; an unknown one is shown as is).
REASONS = {
    "logout": "it signed out",
    "revoked": "another device signed it out",
    "revoke_others": "another device signed out all the others",
    "logout_all": "someone signed out everywhere",
    "expired": "the session expired",
    "evicted": "too many devices were signed in, and this one was used least recently",
    "replaced": "a new sign-in on this device replaced it",
    "admin": "an administrator signed this device out",
    "password_changed": "your password was changed",
}


async def listen(args: argparse.Namespace, http: aiohttp.ClientSession) -> int:
    """Print notices until this session ends; reconnect with backoff when the link drops."""
    token = load_profile(args.profile)["token"]
    protocols = ("sessionwire.v1", f"bearer.{token}")
    delay = BACKOFF_START
    while True:
        try:
            async with http.ws_connect(args.gateway, protocols=protocols, heartbeat=30) as ws:
                delay = BACKOFF_START
                code = await _read(ws)
                if code is None:  # session.revoked was shown: this device is signed out
                    forget_profile(args.profile)
                    say(forgotten(args.profile))
                    return EXIT_OK
                say(f"connection closed ({code})")
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                if exc.status == 401:  # the gateway says no more than 401: the API says why
                    await raise_if_ended(args, http, token)
                say(f"refused by the gateway ({exc.status}): sign in again")
                return EXIT_ERROR
            say(f"gateway answered {exc.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            say(f"cannot reach the gateway at {args.gateway}: {exc}")
        wait = delay * random.uniform(0.8, 1.2)  # jitter: devices don't return in lockstep
        say(f"reconnecting in {wait:.1f}s")
        await asyncio.sleep(wait)
        delay = min(delay * 2, BACKOFF_MAX)


async def raise_if_ended(args: argparse.Namespace, http: aiohttp.ClientSession, token: str) -> None:
    """Raise SessionEnded when the API says this session is over; anything else is no answer."""
    try:
        await call(http, "GET", f"{args.api}/me", token)
    except SessionEnded:
        raise
    except CliError:
        pass


def forgotten(profile: str) -> str:
    return f"profile {profile!r} forgotten: '{login_command(profile)}' signs this device in again"


def is_own_presence(message: dict[str, Any], own: str | None) -> bool:
    session = message.get("session") or {}
    return message.get("event") in ("online", "offline") and session.get("session_id") == own


async def _read(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Print messages; None once the session ended, else the close code."""
    own: str | None = None
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            message = json.loads(msg.data)
            if message.get("type") == "ready":
                own = message.get("session_id")
            elif is_own_presence(message, own):
                continue  # this very connection coming online is no news here
            say(describe(message))
            if message.get("type") == "session.revoked":
                return None
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            code = int(msg.data)
            if code in disconnect.NO_RECONNECT:
                say(f"the gateway ended this session ({code}: {msg.extra})")
                return None
            return code
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return ws.close_code or 1006


COMMANDS = {
    "login": login,
    "devices": devices,
    "revoke": revoke,
    "rename": rename,
    "revoke-others": revoke_others,
    "logout": logout,
    "listen": listen,
}


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    top = argparse.ArgumentParser(prog="sessionwire", description=__doc__.splitlines()[0])
    _common_options(
        top,
        {
            "api": env("SESSIONWIRE_API", DEFAULT_API),
            "gateway": env("SESSIONWIRE_GATEWAY", DEFAULT_GATEWAY),
            "profile": env("SESSIONWIRE_PROFILE", "default"),
        },
    )
    # The same options after the command ("sessionwire devices --profile phone") win.
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, None)
    sub = top.add_subparsers(dest="command", required=True)
    sign_in = sub.add_parser(
        "login", parents=[common], help="sign in and store the token for this profile"
    )
    sign_in.add_argument("--username", "-u")
    sign_in.add_argument("--password", help="else $SESSIONWIRE_PASSWORD, else a prompt")
    sign_in.add_argument("--device-name", default="terminal")
    listing = sub.add_parser(
        "devices", parents=[common], help="list this user's signed-in devices (* = this one)"
    )
    listing.add_argument(
        "--json", action="store_true", help="print the API's answer (GET /sessions) as JSON"
    )
    one = sub.add_parser("revoke", parents=[common], help="sign out one device")
    one.add_argument("session_id", help="a session id, or its start if no other id starts so")
    renaming = sub.add_parser("rename", parents=[common], help="give a device another name")
    renaming.add_argument("session_id", help="a session id, or its start (as for revoke)")
    renaming.add_argument("name", help="the new name (1 to 100 characters)")
    sub.add_parser("revoke-others", parents=[common], help="sign out every other device")
    sub.add_parser("logout", parents=[common], help="sign out this device")
    sub.add_parser(
        "listen", parents=[common], help="print notices as they come; exit when signed out"
    )
    return top


def _common_options(parser: argparse.ArgumentParser, defaults: dict[str, str] | None) -> None:
    def default(name: str) -> str:
        return defaults[name] if defaults else argparse.SUPPRESS

    parser.add_argument("--api", default=default("api"), help="API base URL (env SESSIONWIRE_API)")
    parser.add_argument(
        "--gateway",
        default=default("gateway"),
        help="gateway WebSocket URL (env SESSIONWIRE_GATEWAY)",
    )
    parser.add_argument(
        "--profile",
        default=default("profile"),
        help="which stored sign-in to use (env SESSIONWIRE_PROFILE)",
    )


async def run(args: argparse.Namespace) -> int:
    args.api = args.api.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=None, connect=5)
    headers = {"User-Agent": USER_AGENT}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        try:
            return await COMMANDS[args.command](args, http)
        except SessionEnded as ended:
            forget_profile(args.profile)
            raise CliError(f"{ended} ({forgotten(args.profile)})") from None


def read_password() -> str:
    """Asked at a terminal (not echoed); else one line of stdin, for scripts and pipes
    (getpass would warn that it cannot hide the input there)."""
    if sys.stdin.isatty():
        return getpass.getpass()
    return sys.stdin.readline().rstrip("\r\n")


VALUED_OPTIONS = ("--api", "--gateway", "--profile")
ID_COMMANDS = ("revoke", "rename")


def ids_as_arguments(argv: list[str]) -> list[str]:
    """A session id may start with "-" (URL-safe base64): after `revoke` or `rename`, all
    that is not one of our options is an argument, put after "--" for argparse."""
    at = next((i for i, arg in enumerate(argv) if arg in ID_COMMANDS), None)
    if at is None or "--" in argv:
        return argv
    options, arguments, rest = [], [], iter(argv[at + 1 :])
    for arg in rest:
        if arg.split("=", 1)[0] in VALUED_OPTIONS or arg in ("-h", "--help"):
            options.append(arg)
            if arg in VALUED_OPTIONS:
                options.append(next(rest, ""))
        else:
            arguments.append(arg)
    return [*argv[: at + 1], *options, "--", *arguments]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(ids_as_arguments(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "login":  # prompts happen before the event loop starts
            args.username = args.username or input("username: ")
            args.password = (
                args.password or os.environ.get("SESSIONWIRE_PASSWORD") or read_password()
            )
        return asyncio.run(run(args))
    except (CliError, ProfileError) as exc:
        say(f"sessionwire: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
