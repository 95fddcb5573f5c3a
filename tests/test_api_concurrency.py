"""Races: concurrent logins lose no update, and a revoke always wins over requests."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from service.sessions import keys
from service.users.passwords import PasswordChecker
from tests.conftest import ENGINES, PASSWORD, bearer, login, on_engine


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


MakeApi = Callable[..., Awaitable[TestClient]]
# These tests race the store, not the sign-in limiter or the hashing queue (whose rules are
# in test_api_limits.py): let every concurrent sign-in of one user be checked at once.
RACE = {"login_max_failures": 1000}


@pytest.fixture
def make_api(make_api: MakeApi, roomy_passwords: PasswordChecker) -> MakeApi:
    return functools.partial(make_api, passwords=roomy_passwords)


async def concurrent_logins(api: TestClient, count: int, **fields: str) -> list[dict[str, Any]]:
    async def one(i: int) -> dict[str, Any]:
        body = {"username": "alice", "password": PASSWORD, **fields}
        body.setdefault("device_id", f"device-{i}")
        resp = await api.post("/login", json=body)
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    return await asyncio.gather(*(one(i) for i in range(count)))


async def stored_state(
    rdb: aioredis.Redis, username: str
) -> tuple[set[str], set[str], dict[str, str]]:
    """The session index, the ids with a record, and the device map, as stored."""
    index = set(await rdb.zrange(keys.session_index(username), 0, -1))
    prefix = keys.session_record(username, "")
    pattern = prefix.replace("{", "\\{").replace("}", "\\}") + "*"
    records = {key[len(prefix) :] async for key in rdb.scan_iter(match=pattern)}
    devices = await rdb.hgetall(keys.device_index(username))
    return index, records, devices


@pytest.mark.parametrize(("limit", "expected"), [(10, 10), (250, 200)])
async def test_concurrent_logins_leave_exactly_the_allowed_sessions(
    make_api: MakeApi, rdb: aioredis.Redis, limit: int, expected: int
) -> None:
    api = await make_api(max_sessions_per_user=limit, **RACE)
    results = await concurrent_logins(api, 200)
    index, records, devices = await stored_state(rdb, "alice")
    assert len(index) == expected
    assert records == index
    assert set(devices.values()) == index
    assert len(devices) == expected
    listed = await api.get(
        "/sessions",
        headers=bearer(next(r["token"] for r in results if r["session"]["session_id"] in index)),
    )
    assert {s["session_id"] for s in (await listed.json())["sessions"]} == index
    # Every session that is not live was evicted, and says so.
    log = await rdb.xrange(keys.event_log("alice"), count=1000)
    reasons = [entry["e"] for _, entry in log]
    assert sum('"session.created"' in e for e in reasons) == 200
    assert sum('"evicted"' in e for e in reasons) == 200 - expected
    for result in results:
        resp = await api.get("/me", headers=bearer(result["token"]))
        live = result["session"]["session_id"] in index
        assert resp.status == (200 if live else 401)


async def test_concurrent_logins_with_one_device_id_leave_one_session(
    make_api: MakeApi, rdb: aioredis.Redis
) -> None:
    api = await make_api(**RACE)
    results = await concurrent_logins(api, 50, device_id="the-phone")
    index, records, devices = await stored_state(rdb, "alice")
    assert len(index) == 1
    assert records == index
    assert devices == {"the-phone": next(iter(index))}
    log = await rdb.xrange(keys.event_log("alice"), count=1000)
    assert sum('"replaced"' in entry["e"] for _, entry in log) == 49
    live = [r for r in results if r["session"]["session_id"] in index]
    assert len(live) == 1


@pytest.mark.parametrize("touch_interval", [0, 60], ids=["touch-every-request", "read-only"])
async def test_a_revoke_racing_requests_never_leaves_the_token_working(
    make_api: MakeApi, rdb: aioredis.Redis, touch_interval: int
) -> None:
    api = await make_api(session_touch_interval=touch_interval)
    victim = await login(api, device_name="Victim")
    actor = await login(api, device_name="Actor")
    sid = victim["session"]["session_id"]
    revoked_at: list[float] = []
    seen: list[tuple[float, int]] = []  # (when the request was sent, its status)
    going, enough = asyncio.Event(), asyncio.Event()

    async def hammer() -> None:
        while not enough.is_set():
            sent = time.monotonic()
            resp = await api.get("/me", headers=bearer(victim["token"]))
            seen.append((sent, resp.status))
            resp.release()
            if len(seen) >= 50:
                going.set()
            if revoked_at and sum(s[0] > revoked_at[0] for s in seen) >= 100:
                enough.set()

    async def revoke() -> None:
        await going.wait()
        resp = await api.delete(f"/sessions/{sid}", headers=bearer(actor["token"]))
        assert resp.status == 200
        revoked_at.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(revoke(), *(hammer() for _ in range(16))), 60)
    before = [status for sent, status in seen if sent < revoked_at[0]]
    after = [status for sent, status in seen if sent > revoked_at[0]]
    assert 200 in before
    assert set(after) == {401}
    assert not await rdb.exists(keys.session_record("alice", sid))
    assert await rdb.zscore(keys.session_index("alice"), sid) is None
    assert (await api.get("/me", headers=bearer(victim["token"]))).status == 401
