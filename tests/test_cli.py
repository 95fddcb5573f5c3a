"""The `sessionwire` terminal client against real API and worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import string
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import jwt

from tests.conftest import PASSWORD, ROOT, TEST_SECRET
from tests.processes import Process, running
from tests.test_admin_api import ADMIN, ADMIN_TOKEN

WAIT = 10.0


class Cli:
    """Runs `python -m clients.terminal.cli` with its own SESSIONWIRE_HOME and the servers' URLs."""

    def __init__(self, home: Path, api: Process, worker: Process) -> None:
        self.home, self.api, self.worker = home, api, worker
        self.env = {
            **os.environ,
            "SESSIONWIRE_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "SESSIONWIRE_API": api.url,
            "SESSIONWIRE_GATEWAY": f"ws://127.0.0.1:{worker.port}/ws",
        }

    async def start(self, *args: str, piped: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clients.terminal.cli",
            *args,
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if piped else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def run(self, *args: str, typed: str | None = None) -> tuple[int, str]:
        """Run a command; `typed` is piped to its standard input."""
        proc = await self.start(*args, piped=typed is not None)
        out, _ = await asyncio.wait_for(proc.communicate(typed and typed.encode()), WAIT)
        return proc.returncode or 0, out.decode()

    async def login(self, profile: str, device: str) -> str:
        code, out = await self.run(
            "login",
            "-u",
            "alice",
            "--password",
            PASSWORD,
            "--device-name",
            device,
            "--profile",
            profile,
        )
        assert code == 0, out
        return out.split("(session ", 1)[1].split(",", 1)[0]


@contextmanager
def terminals(redis_url: str, tmp_path: Path, **api_env: str) -> Iterator[Cli]:
    """A real API (with `api_env`) and worker, and the client pointed at them."""
    with (
        running("service", redis_url, tmp_path, **api_env) as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        yield Cli(tmp_path / "home", api, worker)


async def line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    """Read the process's output until a line containing `text`."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
        assert line, f"output ended before {text!r}"
        if text in line:
            return line


async def test_cli_two_terminal_walkthrough(redis_url: str, tmp_path: Path) -> None:
    with terminals(redis_url, tmp_path) as cli:
        laptop_sid = await cli.login("laptop", "laptop")
        phone_sid = await cli.login("phone", "phone")
        assert (tmp_path / "home" / "phone.json").stat().st_mode & 0o777 == 0o600

        listener = await cli.start("listen", "--profile", "phone")
        await line_with(listener, f"connected as alice (session {phone_sid})")

        code, out = await cli.run("devices", "--profile", "laptop")
        assert code == 0
        assert f"\n* {laptop_sid[:8]}  laptop " in out and f"\n  {phone_sid[:8]}  phone " in out

        # The gateway goes away and comes back: the listener reconnects by itself.
        cli.worker.stop()
        await line_with(listener, "reconnecting in")
        cli.worker.start()
        await line_with(listener, "connected as alice")

        # A unique start of the id will do, as shown shortened (with its ellipsis) or not.
        code, out = await cli.run("revoke", phone_sid[:8] + "…", "--profile", "laptop")
        assert (code, out) == (0, f"signed out: {phone_sid}\n")
        line = await line_with(listener, "this device was signed out")
        assert "another device signed it out, from laptop (127.0.0.1), at " in line
        await line_with(listener, "profile 'phone' forgotten")
        assert await asyncio.wait_for(listener.wait(), WAIT) == 0
        assert not (tmp_path / "home" / "phone.json").exists()

        code, out = await cli.run("devices", "--profile", "phone")
        assert code == 1 and "not signed in" in out
        assert "run 'sessionwire --profile phone login'" in out  # this profile, not the default

        await cli.login("tablet", "tablet")
        code, out = await cli.run("revoke-others", "--profile", "laptop")
        assert code == 0 and "signed out:" in out
        # Any command learns why its session ended, says it in words and forgets the profile.
        code, out = await cli.run("devices", "--profile", "tablet")
        assert code == 1
        assert out.startswith(
            "sessionwire: this device was signed out: another device signed out all the "
            "others, from laptop (127.0.0.1), at "
        )
        assert out.endswith(
            "(profile 'tablet' forgotten: 'sessionwire --profile tablet login' signs this "
            "device in again)\n"
        )
        assert not (tmp_path / "home" / "tablet.json").exists()
        assert (tmp_path / "home" / "tablet.devices.json").exists()  # its device token stays

        code, out = await cli.run("logout", "--profile", "laptop")
        assert code == 0
        assert not (tmp_path / "home" / "laptop.json").exists()


async def test_a_piped_password_is_read_without_a_warning(redis_url: str, tmp_path: Path) -> None:
    with terminals(redis_url, tmp_path) as cli:
        code, out = await cli.run("login", "-u", "alice", "--profile", "ci", typed=PASSWORD + "\n")
        assert code == 0, out
        assert out.startswith("signed in as alice on 'terminal'")
        assert "Warning" not in out and "Password:" not in out
        code, out = await cli.run("login", "-u", "alice", "--profile", "ci", typed="wrong\n")
        assert code == 1 and "401" in out


async def test_cli_says_why_the_admin_api_signed_it_out(redis_url: str, tmp_path: Path) -> None:
    with terminals(redis_url, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN) as cli:
        listeners, sids = {}, {}
        for profile in ("phone", "laptop"):
            sids[profile] = await cli.login(profile, profile)
            listeners[profile] = await cli.start("listen", "--profile", profile)
            await line_with(listeners[profile], f"connected as alice (session {sids[profile]})")

        async with aiohttp.ClientSession(cli.api.url, headers=ADMIN) as admin:
            async with admin.delete(f"/admin/users/alice/sessions/{sids['laptop']}") as resp:
                assert resp.status == 200
            line = await line_with(listeners["laptop"], "this device was signed out")
            assert "an administrator signed this device out, at " in line

            async with admin.post(
                "/admin/users/alice/logout-all", json={"reason": "password_changed"}
            ) as resp:
                assert resp.status == 200
        line = await line_with(listeners["phone"], "this device was signed out")
        assert "your password was changed, at " in line
        for listener in listeners.values():
            assert await asyncio.wait_for(listener.wait(), WAIT) == 0


async def test_cli_revoke_by_prefix_refuses_ambiguous_and_unknown_starts(
    redis_url: str, tmp_path: Path
) -> None:
    with terminals(redis_url, tmp_path, MAX_SESSIONS_PER_USER="64") as cli:
        mine = await cli.login("laptop", "laptop")
        sids = await sign_in_until_two_share_a_first_letter(cli.api, {mine})
        shared = Counter(sid[0] for sid in sids).most_common(1)[0][0]
        unused = next(c for c in string.ascii_letters if all(s[0] != c for s in sids))

        code, out = await cli.run("revoke", shared, "--profile", "laptop")
        assert code == 1 and out.count("\n") == 1
        assert out.startswith(f"sessionwire: '{shared}' is the start of ")
        assert out.endswith("type more of it\n")
        code, out = await cli.run("revoke", unused, "--profile", "laptop")
        assert (code, out) == (
            1,
            f"sessionwire: no signed-in device has a session id starting with '{unused}'\n",
        )
        code, out = await cli.run("revoke", "…", "--profile", "laptop")
        assert code == 1 and "give a session id" in out
        code, out = await cli.run("devices", "--profile", "laptop")  # nothing signed out
        assert code == 0 and out.count("\n") == 1 + len(sids)  # a heading, a line each


async def sign_in_until_two_share_a_first_letter(api: Process, sids: set[str]) -> set[str]:
    """Sign alice in until two session ids start alike (ids are random: a few dozen at most)."""
    async with aiohttp.ClientSession() as http:
        while len({sid[0] for sid in sids}) == len(sids):
            body = {"username": "alice", "password": PASSWORD}
            async with http.post(api.url + "/login", json=body) as resp:
                sids.add((await resp.json())["session"]["session_id"])
    return sids


async def test_cli_forgets_a_profile_whose_token_expired(redis_url: str, tmp_path: Path) -> None:
    with terminals(redis_url, tmp_path) as cli:
        await cli.login("laptop", "laptop")
        stored = tmp_path / "home" / "laptop.json"
        profile = json.loads(stored.read_text())
        past = int(time.time()) - 3600
        claims = {"sub": "alice", "sid": profile["session_id"], "iat": past, "exp": past + 60}
        expired = jwt.encode({**claims, "iss": "sessionwire"}, TEST_SECRET, algorithm="HS256")
        for command in ("devices", "listen"):  # the gateway's 401 is explained by the API
            stored.write_text(json.dumps({**profile, "token": expired}))
            code, out = await cli.run(command, "--profile", "laptop")
            assert code == 1, out
            assert out.startswith("sessionwire: this device was signed out: the session expired")
            assert "profile 'laptop' forgotten" in out
            assert not stored.exists()
        assert (tmp_path / "home" / "laptop.devices.json").exists()


# --- README's "Two terminals" walkthrough, run as written ---

README = ROOT / "README.md"
# README cuts the 22-character session ids to 8 and an ellipsis (`devices` prints 8, with
# none); times, in RFC 3339 or local ("28 Nov 09:18"), vary from run to run.
SHORT_ID = re.compile(r"([A-Za-z0-9_-]{8})…")
TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z|\d{1,2} [A-Z][a-z]{2} \d\d:\d\d")


def readme_walkthrough() -> list[str]:
    text = README.read_text()
    start = text.index("```console\n# terminal 1")
    return text[start : text.index("```\n", start + 3)].splitlines()[1:]


class Walkthrough:
    """README's commands run by the client; README's lines matched to what it printed."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        self.ids: dict[str, str] = {}  # README's shortened id -> the real one
        self.listener: asyncio.subprocess.Process | None = None
        self.unread: list[str] = []  # what the last command printed, not yet matched

    async def run(self, line: str) -> Callable[[], Awaitable[str]]:
        """Run a `$ ...` line; the answer reads what it prints, line by line."""
        assert not self.unread, f"README leaves out {self.unread}"
        args = [self._real_start(arg) for arg in shlex.split(line.removeprefix("$ "))[1:]]
        if "listen" in args:
            self.listener = await self.cli.start(*args)
            return self.heard
        code, out = await self.cli.run(*args)
        assert code == 0, out
        self.unread = out.splitlines()
        return self.printed

    async def printed(self) -> str:
        return self.unread.pop(0)

    async def heard(self) -> str:
        assert self.listener is not None and self.listener.stdout is not None
        line = await asyncio.wait_for(self.listener.stdout.readline(), WAIT)
        return line.decode().rstrip("\n")

    def expect(self, shown: str, printed: str) -> None:
        """`printed` is README's line but for the ids' ends and the times."""
        for short, real in self.ids.items():  # an id `devices` cut to 8, seen before
            shown = re.sub(f"{re.escape(short)}(?!…)", real[:8], shown)
        pattern, names = "", []
        for part in re.split(f"({SHORT_ID.pattern}|{TIME.pattern})", shown):
            if part and (short := SHORT_ID.fullmatch(part)):
                names.append(short.group(1))
                pattern += r"([A-Za-z0-9_-]{22})"
            elif part and TIME.fullmatch(part):
                pattern += f"(?:{TIME.pattern})"
            elif part and part not in names:
                pattern += re.escape(part)
        found = re.fullmatch(pattern, printed)
        assert found, f"README shows {shown!r}, the client printed {printed!r}"
        for name, real in zip(names, found.groups(), strict=True):
            assert self.ids.setdefault(name, real) == real, f"README's {name}… is two sessions"

    def _real_start(self, arg: str) -> str:
        """A start of one of README's ids typed in a command: that start of the real id."""
        for short, real in self.ids.items():
            if len(arg) >= 4 and short.startswith(arg):
                return real[: len(arg)]
        return arg


async def test_readme_two_terminals_is_what_the_client_prints(
    redis_url: str, tmp_path: Path
) -> None:
    # A copy: a sign-in rehashes an old-parameter hash into its users file (the cheap test
    # parameters here), which must not rewrite the repository's demo_users.json.
    users = tmp_path / "demo_users.json"
    shutil.copyfile(ROOT / "demo_users.json", users)
    with terminals(redis_url, tmp_path, USERS_FILE=str(users)) as cli:
        cli.env["SESSIONWIRE_PASSWORD"] = "1234"  # README's demo user; no prompt without a tty
        walk = Walkthrough(cli)
        read = walk.printed
        for line in readme_walkthrough():
            if line.startswith("$ "):
                read = await walk.run(line)
            elif line.startswith("# terminal 1 printed"):
                read = walk.heard
            elif line and not line.startswith("#") and line != "Password:":
                walk.expect(line, await read())
        assert not walk.unread, f"README leaves out {walk.unread}"
        assert walk.listener and await asyncio.wait_for(walk.listener.wait(), WAIT) == 0


async def test_cli_reports_unreachable_api(tmp_path: Path) -> None:
    env = {**os.environ, "SESSIONWIRE_HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.terminal.cli",
        "--api",
        "http://127.0.0.1:9",
        "login",
        "-u",
        "alice",
        "--password",
        "x",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert b"cannot reach the API" in out and b"Traceback" not in out


async def test_cli_keeps_its_device_token_and_signs_in_through_a_lockout(
    redis_url: str, tmp_path: Path
) -> None:
    with terminals(redis_url, tmp_path, LOGIN_MAX_FAILURES="2") as cli:
        await cli.login("laptop", "laptop")
        assert (await cli.run("logout", "--profile", "laptop"))[0] == 0
        kept = tmp_path / "home" / "laptop.devices.json"
        assert kept.stat().st_mode & 0o777 == 0o600  # kept past the sign-out
        for _ in range(2):  # someone else guesses alice's password and locks her name
            code, out = await cli.run("login", "-u", "alice", "--password", "x", "--profile", "x")
            assert code == 1 and "401" in out
        code, out = await cli.run("login", "-u", "alice", "--password", PASSWORD, "--profile", "x")
        assert code == 1 and "429" in out
        await cli.login("laptop", "laptop")  # the known device still gets in


async def test_cli_says_so_when_the_server_signs_in_browsers_only(
    redis_url: str, tmp_path: Path
) -> None:
    with terminals(redis_url, tmp_path, AUTH_COOKIE="always") as cli:
        code, out = await cli.run("login", "-u", "alice", "--password", PASSWORD)
        assert code == 1 and "AUTH_COOKIE=always" in out and "Traceback" not in out


def display_column(line: str, text: str) -> int:
    """The terminal column where `text` starts in `line` (wide characters count two)."""
    from clients.terminal.cli import width

    return width(line[: line.index(text)])


async def test_cli_devices_in_columns_as_json_and_renamed(redis_url: str, tmp_path: Path) -> None:
    with terminals(redis_url, tmp_path) as cli:
        mine = await cli.login("laptop", "laptop")
        wide = "キッチンのタブレット"  # ten characters, twenty columns
        other = await cli.login("kitchen", wide)

        code, out = await cli.run("devices", "--profile", "laptop")
        assert code == 0, out
        heading, *rows = out.splitlines()
        assert heading.split() == ["ID", "NAME", "DEVICE", "WHERE", "LAST", "SEEN", "SIGNED", "IN"]
        (own,) = [r for r in rows if r.startswith("* ")]
        (theirs,) = [r for r in rows if r.startswith("  ")]
        assert own.startswith(f"* {mine[:8]}  laptop ")
        assert theirs.startswith(f"  {other[:8]}  {wide}")
        for row in (own, theirs):
            assert "terminal, sessionwire 0.1 on " in row
            assert "127.0.0.1 (this network)" in row
            assert re.search(r"  (active now|online now)  \d{1,2} [A-Z][a-z]{2} \d\d:\d\d$", row)
        # Aligned under the heading, a wide name or not.
        for column, cell in (("DEVICE", "terminal"), ("WHERE", "127.0.0.1"), ("LAST SEEN", "")):
            starts = {display_column(heading, column)}
            for row in (own, theirs):
                found = re.search(r"(active|online) now", row) if not cell else None
                starts.add(display_column(row, found.group(0) if found else cell))
            assert len(starts) == 1, (column, starts)

        code, out = await cli.run("devices", "--json", "--profile", "laptop")
        assert code == 0
        listed = json.loads(out)["sessions"]
        assert {s["session_id"] for s in listed} == {mine, other}
        for s in listed:
            assert s["device_type"] == "terminal" and s["browser"] == "sessionwire 0.1"
            assert s["location"]["this_network"] is True
            assert {"online", "os", "created_at", "last_seen_at", "current"} <= s.keys()

        code, out = await cli.run("rename", other[:6], "kitchen tablet", "--profile", "laptop")
        assert (code, out) == (0, f"renamed {other} to 'kitchen tablet'\n")
        code, out = await cli.run("rename", other[:6], "evil\x1b[31m", "--profile", "laptop")
        assert code == 1 and "\x1b" not in out
        assert out == (
            "sessionwire: 'evil\\x1b[31m' can't be a device name: 1 to 100 characters, none of "
            "them control or format characters\n"
        )
        code, out = await cli.run("devices", "--profile", "laptop")
        assert f"  {other[:8]}  kitchen tablet " in out and wide not in out


def test_a_session_id_starting_with_a_dash_is_an_argument() -> None:
    """URL-safe ids may start with "-": `revoke -Fc…` is not an unknown option."""
    from clients.terminal.cli import ids_as_arguments, parser

    args = parser().parse_args(ids_as_arguments(["rename", "-Fc", "a name", "--profile", "p"]))
    assert (args.session_id, args.name, args.profile) == ("-Fc", "a name", "p")
    args = parser().parse_args(ids_as_arguments(["--profile", "p", "revoke", "-x"]))
    assert (args.command, args.session_id) == ("revoke", "-x")
