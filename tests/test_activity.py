"""GET /activity (and the admin API's twin): the user's recent session events, newest first."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from service.sessions import keys
from service.wire.schemas import ActivityResponse
from tests.conftest import ENGINES, EventWatch, ManualClock, bearer, login, on_engine
from tests.test_admin_api import ADMIN, ADMIN_TOKEN
from tests.test_api_input import problem
from tests.test_api_limits import attempt


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


MakeApi = Callable[..., Awaitable[TestClient]]


async def activity(api: TestClient, token: str, query: str = "") -> list[dict[str, Any]]:
    resp = await api.get(f"/activity{query}", headers=bearer(token))
    body = await resp.json()
    assert resp.status == 200, body
    msgspec.convert(body, ActivityResponse)  # the published schema
    return body["events"]  # type: ignore[no-any-return]


def device(session: dict[str, Any]) -> dict[str, str]:
    return {k: session[k] for k in ("session_id", "device_name", "ip")}


async def test_events_newest_first_with_what_which_device_where_when(
    make_api: MakeApi, clock: ManualClock
) -> None:
    api = await make_api(clock=clock)
    laptop = await login(api, device_name="Laptop")
    clock.advance(60)
    phone = await login(api, device_name="Phone")
    clock.advance(60)
    resp = await api.delete(
        f"/sessions/{phone['session']['session_id']}", headers=bearer(laptop["token"])
    )
    assert resp.status == 200

    revoked, phone_in, laptop_in = await activity(api, laptop["token"])
    assert revoked["type"] == "session.revoked"
    assert revoked["session"] == device(phone["session"])
    assert revoked["reason"] == "revoked"
    assert revoked["by"] == device(laptop["session"])
    for event, session in ((phone_in, phone), (laptop_in, laptop)):
        assert event["type"] == "session.created"
        assert event["session"] == device(session["session"])
        assert event["reason"] is None and event["by"] is None
    started = datetime.fromisoformat(laptop["session"]["created_at"])
    assert [datetime.fromisoformat(e["at"]) - started for e in (laptop_in, phone_in, revoked)] == [
        timedelta(0),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert revoked["at"].endswith("Z")  # RFC 3339, UTC
    assert len({e["id"] for e in (revoked, phone_in, laptop_in)}) == 3


async def test_only_the_callers_own_events(api: TestClient) -> None:
    alice = await login(api)
    await login(api, "bob")
    events = await activity(api, alice["token"])
    assert [e["session"]["session_id"] for e in events] == [alice["session"]["session_id"]]


async def test_limit_and_its_default(make_api: MakeApi) -> None:
    api = await make_api(max_sessions_per_user=100)
    tokens = [(await login(api, device_name=f"D{n}"))["token"] for n in range(55)]
    assert len(await activity(api, tokens[-1])) == 50
    newest = await activity(api, tokens[-1], "?limit=3")
    assert [e["session"]["device_name"] for e in newest] == ["D54", "D53", "D52"]
    assert len(await activity(api, tokens[-1], "?limit=100")) == 55
    assert len(await activity(api, tokens[-1], "?limit=1")) == 1
    assert len(await activity(api, tokens[-1], "?limit=007")) == 7


@pytest.mark.parametrize(
    "limit", ["0", "101", "x", "", "-1", "1.5", "1e2", " 5", "\u0663", "9" * 5000]
)
async def test_a_bad_limit_is_422_naming_it(api: TestClient, limit: str) -> None:
    token = (await login(api))["token"]
    resp = await api.get("/activity", params={"limit": limit}, headers=bearer(token))
    found = await problem(resp, 422, "validation_error")
    assert found["errors"][0]["field"] == "limit"


async def test_activity_needs_a_live_session(api: TestClient) -> None:
    await problem(await api.get("/activity"), 401, "missing_token")
    await problem(await api.get("/activity", headers=bearer("x.y.z")), 401, "invalid_token")
    signed_in = await login(api)
    await api.post("/logout", headers=bearer(signed_in["token"]))
    gone = await api.get("/activity", headers=bearer(signed_in["token"]))
    await problem(gone, 401, "session_revoked")


async def test_the_admin_api_shows_the_same_activity(make_api: MakeApi) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    first, second = await login(api), await login(api)
    resp = await api.post("/admin/users/alice/logout-all", headers=ADMIN)
    assert resp.status == 200
    # Alice signs in again to read her own log; the admin reads it with the admin token.
    again = await login(api)
    mine = await activity(api, again["token"], "?limit=4")
    resp = await api.get("/admin/users/alice/activity?limit=4", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["events"] == mine
    assert [(e["type"], e["reason"], e["by"]) for e in mine[1:3]] == [
        ("session.revoked", "admin", None),
        ("session.revoked", "admin", None),
    ]
    revoked_ids = {e["session"]["session_id"] for e in mine[1:3]}
    assert revoked_ids == {first["session"]["session_id"], second["session"]["session_id"]}
    for limit in ("0", "101", "x"):
        resp = await api.get(f"/admin/users/alice/activity?limit={limit}", headers=ADMIN)
        assert (await problem(resp, 422, "validation_error"))["errors"][0]["field"] == "limit"


# --- failed sign-ins: the owner sees attacks on their account ---

PROXY = (ipaddress.ip_network("127.0.0.1/32"),)


async def guess(api: TestClient, ip: str, username: str = "alice") -> int:
    """A wrong password from `ip`; the answer's status."""
    return (await attempt(api, username, "wrong", xff=ip))[0]


async def test_failed_sign_ins_are_one_entry_per_window_with_the_addresses(
    make_api: MakeApi, clock: ManualClock
) -> None:
    api = await make_api(
        clock=clock, trusted_proxies=PROXY, login_max_failures=3, login_failure_window=300
    )
    assert [await guess(api, "203.0.113.9") for _ in range(2)] == [401, 401]
    clock.advance(10)
    assert await guess(api, "2001:db8::7") == 401  # the third: alice is locked out
    clock.advance(10)
    assert [await guess(api, "203.0.113.9") for _ in range(4)] == [429] * 4
    clock.advance(290)  # the window has passed
    signed_in = await login(api)  # from 127.0.0.1

    created, failed = await activity(api, signed_in["token"])
    assert created["type"] == "session.created"
    assert failed["type"] == "login.failed"
    assert failed["session"] is None and failed["reason"] is None and failed["by"] is None
    first = datetime.fromisoformat(failed["failures"]["first_at"])
    assert datetime.fromisoformat(failed["at"]) - first == timedelta(seconds=20)
    assert failed["failures"] == {
        "first_at": failed["failures"]["first_at"],
        "attempts": 3,
        "refused": 4,
        "locked_until": (first + timedelta(seconds=300)).isoformat().replace("+00:00", "Z"),
        "ips": [{"ip": "203.0.113.9", "attempts": 6}, {"ip": "2001:db8::7", "attempts": 1}],
        "other_ips": 0,
    }

    # The next window is an entry of its own; a success in between changes nothing there.
    clock.advance(1)
    assert await guess(api, "198.51.100.1") == 401
    newest = (await activity(api, signed_in["token"], "?limit=1"))[0]
    assert newest["type"] == "login.failed"
    assert newest["failures"]["attempts"] == 1 and newest["failures"]["locked_until"] is None
    assert newest["failures"]["ips"] == [{"ip": "198.51.100.1", "attempts": 1}]
    assert newest["id"] != failed["id"]


async def test_guesses_never_push_session_events_out_of_the_log(
    make_api: MakeApi, watch_events: Callable[[str], EventWatch], rdb: aioredis.Redis
) -> None:
    api = await make_api(trusted_proxies=PROXY, max_sessions_per_user=100)
    signed_in = await login(api)
    async with watch_events("alice") as events:
        # Many addresses, many guesses: five are checked, the rest refused.
        statuses = [await guess(api, f"198.51.100.{i % 200}") for i in range(300)]
        assert statuses.count(401) == 5 and statuses.count(429) == 295
        # Nothing reached the event log or the channel: the gateway has nothing to decode.
        assert await events.take() == []
    failed, created = await activity(api, signed_in["token"])
    assert created["type"] == "session.created"
    assert failed["failures"]["attempts"] + failed["failures"]["refused"] == 300
    assert len(failed["failures"]["ips"]) == 5
    assert (
        sum(source["attempts"] for source in failed["failures"]["ips"])
        + failed["failures"]["other_ips"]
        == 300
    )
    assert await rdb.llen(keys.signin_failures("alice")) == 1


async def test_failures_of_names_nobody_has_are_not_recorded(
    make_api: MakeApi, rdb: aioredis.Redis
) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    assert await guess(api, "127.0.0.1", "nobody") == 401
    assert await rdb.exists(keys.signin_failures("nobody")) == 0
    # A known device's wrong password is shown too (a stolen device token, say).
    device_token = (await login(api))["device_token"]
    await login(api, password="wrong", device_token=device_token, status=401)
    resp = await api.get("/admin/users/alice/activity", headers=ADMIN)
    failed = (await resp.json())["events"][0]
    assert failed["type"] == "login.failed" and failed["failures"]["attempts"] == 1
