"""Sign-in admission: sign-ins wait their turn at the hashing threads, fairly between
clients, for a bounded time; hashes follow PASSWORD_HASH_* and old ones are upgraded."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher, extract_parameters

from service.users.directory import UserDirectory
from service.users.file import locked
from service.users.passwords import PasswordChecker
from tests.conftest import PASSWORD, TEST_HASHER, write_users
from tests.test_api_limits import attempt

MakeApi = Callable[..., Awaitable[TestClient]]
OFFICE = [f"user{i:02}" for i in range(20)]
PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
# Real hashes (argon2-cffi's defaults, ~0.1 s of CPU), where a test needs checks that last.
REAL = PasswordHasher()


def users_file(tmp_path: Path, names: list[str], hasher: PasswordHasher = TEST_HASHER) -> Path:
    path = tmp_path / "users.json"
    one = hasher.hash(PASSWORD)  # one hash for all: hashing 20 real ones costs seconds
    entries = [{"username": name, "password_hash": one} for name in names]
    path.write_text(json.dumps({"users": entries}))
    return path


async def sign_in(api: TestClient, username: str, ip: str = "203.0.113.9") -> tuple[int, Any, Any]:
    """A right password from `ip`: (status, body, headers), whatever the status."""
    return await attempt(api, username, PASSWORD, xff=ip)


async def test_an_office_behind_one_address_signs_in_at_once_without_retrying(
    make_api: MakeApi, tmp_path: Path
) -> None:
    # The production admission (the app builds its own checker). The old bounded queue let
    # two checks per address through and told the third to retry.
    users = UserDirectory.load(users_file(tmp_path, OFFICE))
    api = await make_api(users=users, trusted_proxies=PROXY)
    results = await asyncio.gather(*(sign_in(api, name) for name in OFFICE))
    assert [status for status, _, _ in results] == [200] * 20, results


async def test_clients_take_turns(make_api: MakeApi, tmp_path: Path) -> None:
    """A burst from one address delays another address's sign-in by about one check."""
    users = UserDirectory.load(users_file(tmp_path, ["alice", "bob"], REAL))
    checker = PasswordChecker(REAL, threads=1)
    api = await make_api(users=users, passwords=checker, trusted_proxies=PROXY)
    finished: list[str] = []

    async def one(label: str, username: str, ip: str) -> None:
        status, body, _ = await sign_in(api, username, ip)
        assert status == 200, body
        finished.append(label)

    try:
        burst = [asyncio.create_task(one(f"a{i}", "alice", "203.0.113.9")) for i in range(6)]
        await asyncio.sleep(0)  # the burst is sent first
        await asyncio.gather(*burst, one("b", "bob", "198.51.100.7"))
    finally:
        checker.close()
    # The burst's first check was running, its second next in turn; then the other address.
    assert finished.index("b") <= 2, finished


async def test_a_sign_in_waits_a_bounded_time_then_is_told_when_to_retry(
    make_api: MakeApi, tmp_path: Path
) -> None:
    users = UserDirectory.load(users_file(tmp_path, OFFICE, REAL))
    checker = PasswordChecker(REAL, threads=1, max_wait=0.3, max_waiting_per_client=4)
    api = await make_api(users=users, passwords=checker, trusted_proxies=PROXY)
    try:
        results = await asyncio.gather(*(sign_in(api, name) for name in OFFICE))
        # Another address still gets its turn while this one's queue is full.
        other = await sign_in(api, "user00", "198.51.100.7")
    finally:
        checker.close()
    statuses = [status for status, _, _ in results]
    assert statuses[0] == 200 and set(statuses) == {200, 503}
    # At most 1 + 4 of the address were let in or waiting; the rest were told at once.
    assert statuses.count(200) <= 5
    for status, body, headers in results:
        if status == 503:
            assert body["code"] == "busy"
            assert int(headers["Retry-After"]) == body["retry_after"] >= 1
    assert other[0] == 200


async def test_a_sign_in_whose_client_went_away_passes_its_turn_on(
    make_api: MakeApi, tmp_path: Path
) -> None:
    users = UserDirectory.load(users_file(tmp_path, ["alice"], REAL))
    checker = PasswordChecker(REAL, threads=1, max_waiting_per_client=2)
    api = await make_api(users=users, passwords=checker, trusted_proxies=PROXY)
    try:
        gone = [asyncio.create_task(sign_in(api, "alice")) for _ in range(2)]
        await asyncio.sleep(0.02)  # both sent: one checking, one waiting
        for task in gone:
            task.cancel()
        # Their places were given back: two more from the address wait and get in.
        results = await asyncio.gather(*(sign_in(api, "alice") for _ in range(2)))
    finally:
        checker.close()
    assert [status for status, _, _ in results] == [200, 200]


# --- PASSWORD_HASH_* and upgrades ---


def parameters(path: Path, username: str) -> tuple[int, int, int]:
    entry = next(u for u in json.loads(path.read_text())["users"] if u["username"] == username)
    found = extract_parameters(entry["password_hash"])
    return found.time_cost, found.memory_cost, found.parallelism


HASHING = {"password_hash_time_cost": 2, "password_hash_memory_cost": 16}


async def test_an_old_hash_is_upgraded_at_the_next_sign_in(
    make_api: MakeApi, tmp_path: Path
) -> None:
    path = write_users([{"username": "alice", "email": "a@example.com"}], PASSWORD)
    path.chmod(0o640)
    users = UserDirectory.load(path)
    api = await make_api(users=users, **HASHING)
    assert parameters(path, "alice") == (1, 8, 1)
    assert (await sign_in(api, "alice"))[0] == 200
    assert parameters(path, "alice") == (2, 16, 1)
    entry = json.loads(path.read_text())["users"][0]
    assert entry["email"] == "a@example.com"  # the rest of the entry is kept
    assert path.stat().st_mode & 0o777 == 0o640
    # The same password works with the new hash; an up-to-date hash is left alone.
    inode = path.stat().st_ino
    assert (await sign_in(api, "alice"))[0] == 200
    assert path.stat().st_ino == inode
    assert (await attempt(api, "alice", "wrong"))[0] == 401
    assert path.stat().st_ino == inode  # a wrong password upgrades nothing


@pytest.mark.parametrize("why", ["read-only", "can't be locked"])
async def test_a_users_file_the_api_may_not_write_keeps_its_hashes(
    make_api: MakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture, why: str
) -> None:
    path = write_users([{"username": "alice"}], PASSWORD)
    before = path.read_bytes()
    if why == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root may write any file")
        path.parent.chmod(0o500)
    else:  # where its lock would be, something that is no file (root can't open it either)
        (path.parent / f".{path.name}.lock").mkdir()
    try:
        api = await make_api(users=UserDirectory.load(path), **HASHING)
        with caplog.at_level(logging.WARNING, logger="service.users.upgrade"):
            for _ in range(3):
                assert (await sign_in(api, "alice"))[0] == 200
    finally:
        path.parent.chmod(0o700)
    assert path.read_bytes() == before
    (warning,) = [r.message for r in caplog.records if r.name == "service.users.upgrade"]
    assert warning.startswith(f"can't upgrade old password hashes in {path} (")
    assert warning.endswith("); they stay")


async def test_no_upgrade_while_the_users_command_holds_the_file(
    make_api: MakeApi, tmp_path: Path
) -> None:
    # `service.users passwd` holds the lock from reading the file to writing it: an upgrade
    # written meanwhile would be overwritten, or would write an old password back.
    path = write_users([{"username": "alice"}], PASSWORD)
    api = await make_api(users=UserDirectory.load(path), **HASHING)
    with locked(path):
        assert (await sign_in(api, "alice"))[0] == 200
        assert parameters(path, "alice") == (1, 8, 1)
    assert (await sign_in(api, "alice"))[0] == 200  # the next one upgrades
    assert parameters(path, "alice") == (2, 16, 1)
