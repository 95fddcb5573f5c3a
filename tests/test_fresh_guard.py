"""The fresh-session guard: a session younger than FRESH_SESSION_GUARD may not end older ones.

It stops a thief who just guessed the password from signing the owner out everywhere. The
older may always end the newer, a device may always sign itself out, and the admin API and
`service.users passwd` are never held back.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.users import command as useradmin
from tests.conftest import ENGINES, ManualClock, bearer, login, on_engine
from tests.processes import process_env
from tests.test_admin_api import ADMIN, ADMIN_TOKEN
from tests.test_cookies import Browser
from tests.test_users import write_users

MakeApi = Callable[..., Awaitable[TestClient]]
GUARD = 3600
IDLE = 10 * 86400  # the owner's devices stay signed in while the clock moves on


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


@pytest.fixture
async def api(make_api: MakeApi, clock: ManualClock) -> TestClient:
    return await make_api(
        clock=clock, fresh_session_guard=GUARD, admin_token=ADMIN_TOKEN, session_idle_timeout=IDLE
    )


async def call(api: TestClient, method: str, path: str, token: str) -> tuple[int, Any]:
    resp = await api.request(method, path, headers=bearer(token))
    return resp.status, await resp.json(content_type=None)


async def owner_and_thief(api: TestClient, clock: ManualClock) -> tuple[dict[str, Any], ...]:
    """The owner's phone and laptop, signed in long ago; a thief's sign-in 10 s old."""
    phone, laptop = await login(api), await login(api)
    clock.advance(86400)
    thief = await login(api)
    clock.advance(10)
    return phone, laptop, thief


def sid(login: dict[str, Any]) -> str:
    return login["session"]["session_id"]  # type: ignore[no-any-return]


async def assert_too_new(api: TestClient, method: str, path: str, token: str, wait: int) -> None:
    resp = await api.request(method, path, headers=bearer(token))
    body = await resp.json()
    assert (resp.status, body["code"]) == (403, "session_too_new"), body
    assert body["retry_after"] == wait and resp.headers["Retry-After"] == str(wait)


async def live(api: TestClient, *logins: dict[str, Any]) -> list[bool]:
    return [(await call(api, "GET", "/me", x["token"]))[0] == 200 for x in logins]


async def test_a_new_session_may_not_end_older_ones(api: TestClient, clock: ManualClock) -> None:
    phone, laptop, thief = await owner_and_thief(api, clock)
    for method, path in [
        ("DELETE", f"/sessions/{sid(phone)}"),
        ("POST", "/sessions/revoke-others"),
        ("POST", "/logout-all"),
    ]:
        await assert_too_new(api, method, path, thief["token"], GUARD - 10)
    assert await live(api, phone, laptop, thief) == [True, True, True]  # nothing was ended

    clock.advance(GUARD - 11)  # a second before it may: the wait is rounded up, never down
    await assert_too_new(api, "POST", "/logout-all", thief["token"], 1)
    clock.advance(1)
    status, body = await call(api, "DELETE", f"/sessions/{sid(phone)}", thief["token"])
    assert (status, body["revoked"]) == (200, [sid(phone)])


async def test_the_older_always_may_and_anyone_may_sign_out(
    api: TestClient, clock: ManualClock
) -> None:
    phone, laptop, thief = await owner_and_thief(api, clock)
    # The owner's older device ends the new one, at once.
    status, body = await call(api, "DELETE", f"/sessions/{sid(thief)}", phone["token"])
    assert (status, body["revoked"]) == (200, [sid(thief)])
    # A new session may end itself, and sessions newer than itself.
    thief = await login(api)
    clock.advance(5)
    newer = await login(api)
    assert (await call(api, "DELETE", f"/sessions/{sid(newer)}", thief["token"]))[0] == 200
    assert (await call(api, "DELETE", f"/sessions/{sid(thief)}", thief["token"]))[0] == 200
    thief = await login(api)
    assert (await call(api, "POST", "/logout", thief["token"]))[0] == 200
    # "Sign out all other devices" from the oldest ends every other one.
    await login(api)
    status, body = await call(api, "POST", "/sessions/revoke-others", phone["token"])
    assert status == 200 and sid(laptop) in body["revoked"]


async def test_revoke_others_with_only_newer_ones_left(api: TestClient, clock: ManualClock) -> None:
    first = await login(api)
    clock.advance(1)
    second, third = await login(api), await login(api)
    status, body = await call(api, "POST", "/sessions/revoke-others", first["token"])
    assert status == 200 and sorted(body["revoked"]) == sorted([sid(second), sid(third)])
    status, body = await call(api, "POST", "/logout-all", first["token"])
    assert (status, body["revoked"]) == (200, [sid(first)])


async def test_the_admin_api_is_never_held_back(api: TestClient, clock: ManualClock) -> None:
    phone, _, thief = await owner_and_thief(api, clock)
    fresh = await api.post("/admin/sessions", json={"username": "alice"}, headers=ADMIN)
    assert fresh.status == 200
    resp = await api.delete(f"/admin/users/alice/sessions/{sid(phone)}", headers=ADMIN)
    assert resp.status == 200
    resp = await api.post("/admin/users/alice/logout-all", headers=ADMIN)
    assert resp.status == 200 and len((await resp.json())["revoked"]) == 3
    assert await live(api, thief) == [False]


async def test_a_password_change_is_never_held_back(
    api: TestClient,
    clock: ManualClock,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phone, laptop, thief = await owner_and_thief(api, clock)
    path = tmp_path / "users.json"
    write_users(path, alice="old-pass-word")
    env = process_env(redis_url, FRESH_SESSION_GUARD=str(GUARD))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("new-pass-word\n"))
    assert await asyncio.to_thread(useradmin.main, ["passwd", "alice", "--file", str(path)]) == 0
    assert await live(api, phone, laptop, thief) == [False, False, False]


async def test_the_guard_is_off_by_default(make_api: MakeApi, clock: ManualClock) -> None:
    api = await make_api(clock=clock, session_idle_timeout=IDLE)
    phone, laptop, thief = await owner_and_thief(api, clock)
    status, body = await call(api, "POST", "/sessions/revoke-others", thief["token"])
    assert status == 200 and sorted(body["revoked"]) == sorted([sid(phone), sid(laptop)])


async def test_a_browser_is_told_in_a_problem_it_can_show(
    api: TestClient, clock: ManualClock
) -> None:
    phone = await login(api)
    clock.advance(60)
    browser = Browser(api)
    await browser.sign_in()
    resp = await browser.send("DELETE", f"/sessions/{sid(phone)}")
    body = await resp.json()
    assert (resp.status, body["code"], body["retry_after"]) == (403, "session_too_new", GUARD)
    assert "too recently" in body["detail"]
