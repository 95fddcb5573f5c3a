"""A sign-in checked against a password that `service.users passwd` (or `remove`) replaced
never opens a session, however the two interleave (issue 16, finding 1).

A sign-in is held at two points while the real command runs: while its password is being
hashed (a PasswordChecker that waits for the test), and after the check passed but before
its session is created (a directory that waits for the test). Then on a real API process,
frozen (SIGSTOP) in the middle of a slow hash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from service.users import file as usersfile
from service.users.directory import User, UserDirectory
from service.users.passwords import PasswordChecker
from tests.conftest import ENGINES, TEST_HASHER, bearer, on_engine
from tests.processes import running
from tests.test_users import command, write_users

MakeApi = Callable[..., Awaitable[TestClient]]
OLD, NEW, BOBS = "old-password", "new-password", "bob-password"


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


class Gate:
    """Holds the first call that reaches it until the test opens it."""

    def __init__(self) -> None:
        self.reached, self.opened = asyncio.Event(), asyncio.Event()

    async def hold(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            await self.opened.wait()


class SlowHash(PasswordChecker):
    """The first check of `password` takes as long as the test wants."""

    def __init__(self, password: str) -> None:
        # Two turns at once: a held check must not keep the next sign-in waiting.
        super().__init__(TEST_HASHER, threads=2, max_waiting=100, max_waiting_per_client=100)
        self.password, self.gate = password, Gate()

    async def verify(self, stored_hash: str, password: str) -> bool:
        if password == self.password:
            await self.gate.hold()
        return await super().verify(stored_hash, password)


class PauseAfterCheck(UserDirectory):
    """The first passing check of `password` waits, before its session is created."""

    password = ""
    gate: Gate

    async def authenticate(
        self, username: str, password: str, checker: PasswordChecker
    ) -> User | None:
        user = await super().authenticate(username, password, checker)
        if user is not None and password == self.password:
            await self.gate.hold()
        return user


async def sign_in(api: TestClient, user: str, password: str) -> tuple[int, Any]:
    resp = await api.post("/login", json={"username": user, "password": password})
    return resp.status, await resp.json()


async def works(api: TestClient, token: str) -> bool:
    return (await api.get("/me", headers=bearer(token))).status == 200


async def run_command(path: Path, redis_url: str, *args: str, typed: str = "") -> str:
    """Run `python -m service.users` on the file and the Redis of the test."""
    done = await asyncio.to_thread(command, path, *args, typed=typed, redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def sessions_of(api: TestClient, user: str, password: str) -> list[str]:
    """The user's sessions, as seen from a sign-in with `password` (itself left out)."""
    status, body = await sign_in(api, user, password)
    assert status == 200, body
    resp = await api.get("/sessions", headers=bearer(body["token"]))
    listed = (await resp.json())["sessions"]
    return [s["session_id"] for s in listed if not s["current"]]


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    write_users(path, alice=OLD, bob=BOBS)
    return path


@pytest.mark.parametrize("by_hand", [False, True], ids=["passwd", "by-hand"])
async def test_a_sign_in_hashing_while_the_password_changes_fails(
    make_api: MakeApi, redis_url: str, tmp_path: Path, by_hand: bool
) -> None:
    path = users_file(tmp_path)
    checker = SlowHash(OLD)
    api = await make_api(users=UserDirectory.load(path), passwords=checker)
    try:
        pending = asyncio.create_task(sign_in(api, "alice", OLD))
        await asyncio.wait_for(checker.gate.reached.wait(), 10)
        if by_hand:  # an editor, a deployment tool: the file changes and nothing else
            write_users(path, alice=NEW, bob=BOBS)
        else:
            said = await run_command(path, redis_url, "passwd", "alice", typed=NEW + "\n")
            assert "signed out 0 session(s)" in said
        # Someone else's sign-in rereads the file first (as a second process, or the
        # once-a-second look, would): the held one must still see the change.
        assert (await sign_in(api, "bob", BOBS))[0] == 200
        checker.gate.opened.set()
        status, body = await asyncio.wait_for(pending, 10)
        if status == 200:
            assert not await works(api, body["token"]), "the old password opened a session"
        assert (status, body["code"]) == (401, "invalid_credentials")
        assert await sessions_of(api, "alice", NEW) == []
    finally:
        checker.close()


@pytest.mark.parametrize(("change", "reason"), [("passwd", "password"), ("remove", "removal")])
async def test_a_sign_in_checked_just_before_the_change_opens_no_session(
    make_api: MakeApi,
    redis_url: str,
    tmp_path: Path,
    roomy_passwords: PasswordChecker,
    change: str,
    reason: str,
) -> None:
    path = users_file(tmp_path)
    users = PauseAfterCheck.load(path)
    users.password, users.gate = OLD, Gate()
    api = await make_api(users=users, passwords=roomy_passwords)
    pending = asyncio.create_task(sign_in(api, "alice", OLD))
    await asyncio.wait_for(users.gate.reached.wait(), 10)
    said = await run_command(path, redis_url, change, "alice", typed=NEW + "\n")
    assert "signed out 0 session(s)" in said
    users.gate.opened.set()
    status, body = await asyncio.wait_for(pending, 10)
    if status == 200:
        assert not await works(api, body["token"]), f"a session outlived the {reason}"
    assert (status, body["code"]) == (401, "invalid_credentials")
    metrics = await (await api.get("/metrics")).text()
    assert 'sessionwire_logins_total{outcome="failure"} 1.0' in metrics
    if change == "passwd":
        assert await sessions_of(api, "alice", NEW) == []
        return
    # Added again, with any password, the name signs in as a new user would.
    await run_command(path, redis_url, "add", "alice", typed=OLD + "\n")
    assert await sessions_of(api, "alice", OLD) == []


# --- a real API process and the real command ---

# One argon2 check of this cost is ~1 s of CPU here (t=3 at 64 MiB: ~0.15 s).
SLOW = PasswordHasher(time_cost=24, memory_cost=64 * 1024, parallelism=1)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until_hashing(pid: int, before: float, seconds: float = 0.15) -> None:
    """Wait until the process has spent `seconds` of CPU since `before`: only a password
    hash costs that much in an idle API."""
    deadline = time.monotonic() + 20
    while cpu_seconds(pid) - before < seconds:
        assert time.monotonic() < deadline, "the password was never hashed"
        await asyncio.sleep(0.01)


async def test_a_real_api_frozen_mid_hash_across_passwd(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "users.json"
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    entries = [
        {"username": "alice", "email": "", "bio": "", "password_hash": SLOW.hash(OLD)},
        {"username": "bob", "email": "", "bio": "", "password_hash": cheap.hash(BOBS)},
    ]
    usersfile.write_entries(path, entries)
    with running("service", redis_url, tmp_path, USERS_FILE=str(path)) as api:
        assert api.proc is not None
        pid = api.proc.pid
        async with aiohttp.ClientSession() as http:

            async def sign_in_at_api(user: str, password: str) -> tuple[int, Any]:
                body = {"username": user, "password": password}
                async with http.post(f"{api.url}/login", json=body) as resp:
                    return resp.status, await resp.json()

            before = cpu_seconds(pid)
            pending = asyncio.create_task(sign_in_at_api("alice", OLD))
            await until_hashing(pid, before)
            os.kill(pid, signal.SIGSTOP)  # the hash is frozen a little way in
            try:
                said = await run_command(path, redis_url, "passwd", "alice", typed=NEW + "\n")
            finally:
                os.kill(pid, signal.SIGCONT)
            assert "signed out 0 session(s)" in said
            assert (await sign_in_at_api("bob", BOBS))[0] == 200  # it rereads the file first
            status, body = await asyncio.wait_for(pending, 30)
            if status == 200:
                async with http.get(f"{api.url}/me", headers=bearer(body["token"])) as resp:
                    assert resp.status != 200, "the old password opened a session"
            assert (status, body["code"]) == (401, "invalid_credentials")
    assert "Traceback" not in api.log()
