"""The `sessionwire` terminal client against real API and worker processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from tests.conftest import PASSWORD, ROOT
from tests.processes import Process, running
from tests.test_admin_api import ADMIN, ADMIN_TOKEN

WAIT = 10.0


class Cli:
    """Runs `python -m workers.cli` with its own SESSIONWIRE_HOME and the servers' URLs."""

    def __init__(self, home: Path, api: Process, worker: Process) -> None:
        self.env = {
            **os.environ,
            "SESSIONWIRE_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "SESSIONWIRE_API": api.url,
            "SESSIONWIRE_GATEWAY": f"ws://127.0.0.1:{worker.port}/ws",
        }

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.cli",
            *args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def run(self, *args: str) -> tuple[int, str]:
        proc = await self.start(*args)
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
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


async def line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    """Read the process's output until a line containing `text`."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
        assert line, f"output ended before {text!r}"
        if text in line:
            return line


async def test_cli_two_terminal_walkthrough(redis_url: str, tmp_path: Path) -> None:
    with (
        running("service", redis_url, tmp_path) as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        cli = Cli(tmp_path / "home", api, worker)
        laptop_sid = await cli.login("laptop", "laptop")
        phone_sid = await cli.login("phone", "phone")
        assert (tmp_path / "home" / "phone.json").stat().st_mode & 0o777 == 0o600

        listener = await cli.start("listen", "--profile", "phone")
        await line_with(listener, f"connected as alice (session {phone_sid})")

        code, out = await cli.run("devices", "--profile", "laptop")
        assert code == 0
        assert f"* {laptop_sid}" in out and phone_sid in out

        # The gateway goes away and comes back: the listener reconnects by itself.
        worker.stop()
        await line_with(listener, "reconnecting in")
        worker.start()
        await line_with(listener, "connected as alice")

        code, out = await cli.run("revoke", phone_sid, "--profile", "laptop")
        assert code == 0 and phone_sid in out
        line = await line_with(listener, "this device was signed out")
        assert "another device signed it out, from laptop (127.0.0.1), at " in line
        assert await asyncio.wait_for(listener.wait(), WAIT) == 0
        assert not (tmp_path / "home" / "phone.json").exists()

        code, out = await cli.run("devices", "--profile", "phone")
        assert code == 1 and "not signed in" in out

        await cli.login("tablet", "tablet")
        code, out = await cli.run("revoke-others", "--profile", "laptop")
        assert code == 0 and "signed out:" in out
        code, out = await cli.run("devices", "--profile", "tablet")
        assert code == 1 and "401" in out

        code, out = await cli.run("logout", "--profile", "laptop")
        assert code == 0
        assert not (tmp_path / "home" / "laptop.json").exists()


async def test_cli_says_why_the_admin_api_signed_it_out(redis_url: str, tmp_path: Path) -> None:
    with (
        running("service", redis_url, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN) as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        cli = Cli(tmp_path / "home", api, worker)
        listeners, sids = {}, {}
        for profile in ("phone", "laptop"):
            sids[profile] = await cli.login(profile, profile)
            listeners[profile] = await cli.start("listen", "--profile", profile)
            await line_with(listeners[profile], f"connected as alice (session {sids[profile]})")

        async with aiohttp.ClientSession(api.url, headers=ADMIN) as admin:
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


async def test_cli_reports_unreachable_api(tmp_path: Path) -> None:
    env = {**os.environ, "SESSIONWIRE_HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
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
    with (
        running("service", redis_url, tmp_path, LOGIN_MAX_FAILURES="2") as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        cli = Cli(tmp_path / "home", api, worker)
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
