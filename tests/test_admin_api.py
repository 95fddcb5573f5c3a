"""The admin API: every row of the contract's table, its token, its limits and bad input."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from service.wire.schemas import LoginResponse
from tests.conftest import (
    ENGINES,
    FIREFOX_UA,
    PASSWORD,
    EventWatch,
    ManualClock,
    bearer,
    login,
    make_settings,
    on_engine,
)
from tests.devices import Device, start_gateway
from tests.test_api_input import challenge, problem


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


ADMIN_TOKEN = "admin-" + "k" * 40
ADMIN = bearer(ADMIN_TOKEN)
MakeApi = Callable[..., Awaitable[TestClient]]
Watch = Callable[[str], EventWatch]

# Every row of the table, with a body each accepts.
ROWS: list[tuple[str, str, Any]] = [
    ("POST", "/admin/sessions", {"username": "dave"}),
    ("GET", "/admin/users/alice/sessions", None),
    ("DELETE", "/admin/users/alice/sessions/some-session", None),
    ("POST", "/admin/users/alice/logout-all", None),
    ("GET", "/admin/users/alice/activity", None),
]


@pytest.fixture
async def admin(make_api: MakeApi) -> TestClient:
    """The API with the admin API on."""
    return await make_api(admin_token=ADMIN_TOKEN)


async def call(
    api: TestClient,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return await api.request(method, path, json=body, headers=ADMIN if headers is None else headers)


async def ok(api: TestClient, method: str, path: str, body: Any = None) -> Any:
    resp = await call(api, method, path, body)
    answer = await resp.json(content_type=None)
    assert resp.status == 200, answer
    return answer


async def activity_of(api: TestClient, username: str) -> list[dict[str, Any]]:
    """The user's events, newest first, through the admin API."""
    return list((await ok(api, "GET", f"/admin/users/{username}/activity"))["events"])


async def open_for(api: TestClient, username: str = "dave", **fields: str) -> Any:
    """POST /admin/sessions; the 200 body."""
    return await ok(api, "POST", "/admin/sessions", {"username": username, **fields})


# --- the token ---


async def test_without_admin_token_every_admin_path_is_404(api: TestClient) -> None:
    for method, path, body in [*ROWS, ("GET", "/admin/", None), ("PUT", "/admin/x", None)]:
        await problem(await call(api, method, path, body), 404, "not_found")


async def test_every_row_needs_the_admin_token(make_api: MakeApi) -> None:
    admin = await make_api(admin_token=ADMIN_TOKEN, login_max_failures=100)  # 35 wrong here
    user = await login(admin)
    wrong = [
        ({}, "missing_token"),
        (bearer("x" * 46), "invalid_token"),
        (bearer(ADMIN_TOKEN[:-1]), "invalid_token"),  # a prefix is not the token
        (bearer(ADMIN_TOKEN + "x"), "invalid_token"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, "invalid_token"),
        ({"Authorization": ADMIN_TOKEN}, "invalid_token"),
        (bearer(user["token"]), "invalid_token"),  # a user's session is no admin
    ]
    for method, path, body in ROWS:
        for headers, code in wrong:
            resp = await call(admin, method, path, body, headers)
            found = await problem(resp, 401, code)
            assert "revoked" not in found
            assert resp.headers["WWW-Authenticate"] == challenge(code)
    # None of those calls did anything: alice is still signed in, dave never was.
    assert len((await ok(admin, "GET", "/admin/users/alice/sessions"))["sessions"]) == 1
    assert (await ok(admin, "GET", "/admin/users/dave/sessions"))["sessions"] == []


async def test_a_token_of_bytes_that_are_not_utf8_is_a_401(admin: TestClient) -> None:
    reader, writer = await asyncio.open_connection(admin.host, admin.port)
    writer.write(
        b"GET /admin/users/alice/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe" + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"code":"invalid_token"' in answer


async def test_wrong_admin_tokens_are_rate_limited_per_ip(
    make_api: MakeApi, clock: ManualClock
) -> None:
    # One failure per username, so five per IP (IP_LIMIT_FACTOR), in a 60 s window.
    api = await make_api(
        admin_token=ADMIN_TOKEN,
        login_max_failures=1,
        login_failure_window=60,
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
        clock=clock,
    )
    path, attacker = "/admin/users/alice/sessions", {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(5):
        resp = await call(api, "GET", path, headers={**attacker, **bearer("guess" * 8)})
        await problem(resp, 401, "invalid_token")
    resp = await call(api, "GET", path, headers={**attacker, **bearer("guess" * 8)})
    limited = await problem(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == str(limited["retry_after"]) == "60"
    # The right token still passes from that very address: it can't be guessed, so the
    # limit protects nothing by refusing it, and whoever shares the address can't lock
    # the back end out.
    assert (await call(api, "GET", path, headers={**attacker, **ADMIN})).status == 200

    # Other addresses, and sign-ins from this one, have budgets of their own.
    other = {"X-Forwarded-For": "198.51.100.1", **bearer("guess" * 8)}
    await problem(await call(api, "GET", path, headers=other), 401, "invalid_token")
    resp = await api.post(
        "/login", json={"username": "alice", "password": PASSWORD}, headers=attacker
    )
    assert resp.status == 200

    clock.advance(60)
    resp = await call(api, "GET", path, headers={**attacker, **bearer("guess" * 8)})
    await problem(resp, 401, "invalid_token")


async def test_requests_without_a_token_never_lock_the_back_end_out(make_api: MakeApi) -> None:
    # Behind a proxy without TRUSTED_PROXIES every client shares the back end's address.
    api = await make_api(admin_token=ADMIN_TOKEN, login_max_failures=1)  # five per IP
    path = "/admin/users/alice/sessions"
    for headers in ({}, {"Authorization": ""}):
        for _ in range(30):
            await problem(await call(api, "GET", path, headers=headers), 401, "missing_token")
    assert (await call(api, "GET", path)).status == 200
    # Tokenless requests did not spend the wrong tokens' budget either.
    wrong = bearer("guess" * 8)
    for _ in range(5):
        await problem(await call(api, "GET", path, headers=wrong), 401, "invalid_token")
    await problem(await call(api, "GET", path, headers=wrong), 429, "rate_limited")
    assert (await call(api, "GET", path)).status == 200


async def test_a_burst_of_wrong_tokens_gets_no_more_answers_than_the_limit(
    make_api: MakeApi,
) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, login_max_failures=1)  # five per IP
    headers = bearer("guess" * 8)
    answers = await asyncio.gather(
        *(call(api, "GET", "/admin/users/alice/sessions", headers=headers) for _ in range(40))
    )
    statuses = [resp.status for resp in answers]
    assert statuses.count(401) == 5 and statuses.count(429) == 35


async def test_right_tokens_are_never_asked_to_wait(make_api: MakeApi) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, login_max_failures=1)
    answers = await asyncio.gather(
        *(call(api, "GET", "/admin/users/alice/sessions") for _ in range(40))
    )
    assert {resp.status for resp in answers} == {200}


# --- POST /admin/sessions ---


async def test_a_session_for_a_user_absent_from_the_users_file(admin: TestClient) -> None:
    opened = await open_for(
        admin,
        "dave",
        device_name="Dave's laptop",
        device_id="laptop-1",
        user_agent="Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        ip="2001:db8::1",
    )
    # A device token is for sign-ins with a password; the product's own are its business.
    assert set(opened) == set(LoginResponse.__struct_fields__) - {"device_token"}
    assert opened["token_type"] == "Bearer"
    session = opened["session"]
    assert session["device_name"] == "Dave's laptop"
    assert session["device_id"] == "laptop-1"
    assert session["ip"] == "2001:db8::1"
    assert session["user_agent"].startswith("Mozilla/5.0")

    resp = await admin.get("/me", headers=bearer(opened["token"]))
    me = await resp.json()
    assert resp.status == 200, me
    assert (me["username"], me["email"], me["bio"]) == ("dave", None, None)
    assert me["session"]["session_id"] == session["session_id"]
    listed = await (await admin.get("/sessions", headers=bearer(opened["token"]))).json()
    assert [s["session_id"] for s in listed["sessions"]] == [session["session_id"]]


async def test_a_session_for_a_user_of_the_users_file(admin: TestClient) -> None:
    opened = await open_for(admin, "alice")
    me = await (await admin.get("/me", headers=bearer(opened["token"]))).json()
    assert (me["email"], me["bio"]) == ("alice@example.com", "alice tests things")
    assert opened["session"]["device_name"] == "Unknown device"  # no name, no User-Agent
    assert opened["session"]["ip"] is None  # the product did not say: unknown, as device_id
    assert opened["session"]["device_id"] is None
    listed = await ok(admin, "GET", "/admin/users/alice/sessions")
    assert listed["sessions"][0]["ip"] is None
    revoked = await (await admin.post("/logout", headers=bearer(opened["token"]))).json()
    assert revoked["revoked"] == [opened["session"]["session_id"]]
    [ended, created] = await activity_of(admin, "alice")
    assert ended["session"]["ip"] is None and ended["by"]["ip"] is None
    assert created["session"]["ip"] is None


async def test_the_device_name_comes_from_the_user_agent_given(admin: TestClient) -> None:
    opened = await open_for(admin, user_agent=FIREFOX_UA)
    assert opened["session"]["device_name"] == "Firefox on Ubuntu"


async def test_same_replace_and_evict_rules_and_events_as_login(
    make_api: MakeApi, watch_events: Watch
) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, max_sessions_per_user=2)
    first = await open_for(api, device_id="phone")
    async with watch_events("dave") as events:
        second = await open_for(api, device_id="phone", device_name="Phone again")
        replaced, created = await events.take()
    assert (replaced["type"], replaced["reason"]) == ("session.revoked", "replaced")
    assert replaced["session_id"] == first["session"]["session_id"]
    assert created["type"] == "session.created"
    assert created["session_id"] == second["session"]["session_id"]
    assert created["session"]["device_name"] == "Phone again"

    await open_for(api, device_name="Tablet")
    async with watch_events("dave") as events:
        await open_for(api, device_name="Desk")
        evicted, _ = await events.take()
    assert (evicted["reason"], evicted["session_id"]) == (
        "evicted",
        second["session"]["session_id"],
    )
    names = [
        s["device_name"] for s in (await ok(api, "GET", "/admin/users/dave/sessions"))["sessions"]
    ]
    assert names == ["Desk", "Tablet"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "username"),
        ({"username": ""}, "username"),
        ({"username": "a b"}, "username"),
        ({"username": "x" * 65}, "username"),
        ({"username": "alice\n"}, "username"),
        ({"username": "}{u:bob"}, "username"),
        ({"username": 5}, "username"),
        ({"username": None}, "username"),
        ({"username": "dave", "device_name": ""}, "device_name"),
        ({"username": "dave", "device_name": "x" * 101}, "device_name"),
        ({"username": "dave", "device_id": "has space"}, "device_id"),
        ({"username": "dave", "user_agent": "u" * 513}, "user_agent"),
        ({"username": "dave", "user_agent": 7}, "user_agent"),
        ({"username": "dave", "ip": "not an address"}, "ip"),
        ({"username": "dave", "ip": "10.0.0.300"}, "ip"),
        ({"username": "dave", "ip": ["10.0.0.1"]}, "ip"),
        # An IPv6 zone id is any text at all: it is not part of an address anybody else sees.
        ({"username": "dave", "ip": "::1%\r\nX-Evil: 1"}, "ip"),
        ({"username": "dave", "ip": "fe80::1%eth0"}, "ip"),
        ({"username": "dave", "ip": "fe80::1%"}, "ip"),
        ([], "body"),
        ("dave", "body"),
    ],
)
async def test_a_bad_session_body_is_422_naming_the_field(
    admin: TestClient, body: Any, field: str
) -> None:
    found = await problem(
        await call(admin, "POST", "/admin/sessions", body), 422, "validation_error"
    )
    assert found["errors"][0]["field"] == field
    assert (await ok(admin, "GET", "/admin/users/dave/sessions"))["sessions"] == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "malformed_body"),
        (b"", "application/json", 400, "malformed_body"),
        (b'{"username": "\xff"}', "application/json", 400, "malformed_body"),
        (b'{"username": "dave"}', "text/plain", 415, "unsupported_media_type"),
        # A form can't say null; the back end's API takes JSON only.
        (b"username=dave", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"x" * (65 * 1024), "application/json", 413, "payload_too_large"),
    ],
)
async def test_a_malformed_session_body_is_a_4xx_problem(
    admin: TestClient, data: bytes, content_type: str, status: int, code: str
) -> None:
    headers = {**ADMIN, "Content-Type": content_type}
    await problem(await admin.post("/admin/sessions", data=data, headers=headers), status, code)


# --- sessions of a user ---


async def test_sessions_are_ordered_by_last_seen(make_api: MakeApi, clock: ManualClock) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, clock=clock)
    tokens = {}
    for name in ("A", "B", "C"):
        tokens[name] = (await open_for(api, device_name=name))["token"]
        clock.advance(1)
    await api.get("/me", headers=bearer(tokens["A"]))
    listed = await ok(api, "GET", "/admin/users/dave/sessions")
    assert [s["device_name"] for s in listed["sessions"]] == ["A", "C", "B"]


@pytest.mark.parametrize(
    ("name", "status"),
    # Braces never match the route's {username} (404); the rest reach the check (422).
    [("a%20b", 422), ("x" * 65, 422), ("alice%0A", 422), ("%7Bu:x%7D", 404)],
)
async def test_a_bad_username_in_the_path_is_a_4xx(
    admin: TestClient, name: str, status: int
) -> None:
    for method, path in [
        ("GET", f"/admin/users/{name}/sessions"),
        ("DELETE", f"/admin/users/{name}/sessions/abc"),
        ("POST", f"/admin/users/{name}/logout-all"),
        ("GET", f"/admin/users/{name}/activity"),
    ]:
        resp = await call(admin, method, path)
        if status == 404:
            await problem(resp, 404, "not_found")
        else:
            found = await problem(resp, 422, "validation_error")
            assert found["errors"][0]["field"] == "username"


async def test_unknown_users_have_nothing(admin: TestClient) -> None:
    assert await ok(admin, "GET", "/admin/users/nobody/sessions") == {"sessions": []}
    assert await ok(admin, "POST", "/admin/users/nobody/logout-all") == {"revoked": []}
    assert await ok(admin, "GET", "/admin/users/nobody/activity") == {"events": []}
    resp = await call(admin, "DELETE", "/admin/users/nobody/sessions/abc")
    await problem(resp, 404, "session_not_found")


# --- revoking ---


async def test_revoke_one_session_with_reason_admin(admin: TestClient, watch_events: Watch) -> None:
    target, other = await login(admin, device_name="Target"), await login(admin)
    sid = target["session"]["session_id"]
    async with watch_events("alice") as events:
        body = await ok(admin, "DELETE", f"/admin/users/alice/sessions/{sid}")
        (event,) = await events.take()
    assert body == {"revoked": [sid]}
    assert (event["type"], event["reason"], event["by"]) == ("session.revoked", "admin", None)
    gone = await problem(
        await admin.get("/me", headers=bearer(target["token"])), 401, "session_revoked"
    )
    assert gone["revoked"]["reason"] == "admin" and gone["revoked"]["by"] is None
    assert (await admin.get("/me", headers=bearer(other["token"]))).status == 200
    # Again, or in another user's name: no such session.
    for path in (f"/admin/users/alice/sessions/{sid}", f"/admin/users/bob/sessions/{sid}"):
        await problem(await call(admin, "DELETE", path), 404, "session_not_found")


async def test_another_users_session_is_not_found(admin: TestClient) -> None:
    bobs = await login(admin, "bob")
    path = f"/admin/users/alice/sessions/{bobs['session']['session_id']}"
    await problem(await call(admin, "DELETE", path), 404, "session_not_found")
    assert (await admin.get("/me", headers=bearer(bobs["token"]))).status == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "admin"),
        ({}, "admin"),
        ({"reason": "admin"}, "admin"),
        ({"reason": "password_changed"}, "password_changed"),
    ],
)
async def test_logout_all_with_its_reason(
    admin: TestClient, watch_events: Watch, body: Any, reason: str
) -> None:
    sessions = [await login(admin), await login(admin), await login(admin, "bob")]
    async with watch_events("alice") as events:
        answer = await ok(admin, "POST", "/admin/users/alice/logout-all", body)
        published = await events.take()
    assert sorted(answer["revoked"]) == sorted(s["session"]["session_id"] for s in sessions[:2])
    assert {(e["reason"], json.dumps(e["by"])) for e in published} == {(reason, "null")}
    for signed_out in sessions[:2]:
        resp = await admin.get("/me", headers=bearer(signed_out["token"]))
        assert (await problem(resp, 401, "session_revoked"))["revoked"]["reason"] == reason
    assert (await admin.get("/me", headers=bearer(sessions[2]["token"]))).status == 200


async def test_logout_all_with_an_empty_body_of_any_type(admin: TestClient) -> None:
    for headers in ({}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}):
        resp = await admin.post(
            "/admin/users/alice/logout-all", data=b"", headers={**ADMIN, **headers}
        )
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b'{"reason": "logout"}', 422, "validation_error"),
        (b'{"reason": "ADMIN"}', 422, "validation_error"),
        (b'{"reason": 1}', 422, "validation_error"),
        (b'{"reason": null}', 422, "validation_error"),
        (b"[]", 422, "validation_error"),
        (b"{", 400, "malformed_body"),
        (b"reason=admin&", 400, "malformed_body"),
    ],
)
async def test_logout_all_bad_bodies(
    admin: TestClient, data: bytes, status: int, code: str
) -> None:
    signed_in = await login(admin)
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = await admin.post("/admin/users/alice/logout-all", data=data, headers=headers)
    found = await problem(resp, status, code)
    if status == 422:
        assert found["errors"][0]["field"] in ("reason", "body")
    assert (await admin.get("/me", headers=bearer(signed_in["token"]))).status == 200


async def test_an_admin_revoke_reaches_the_device_with_its_reason(
    aiohttp_client: AiohttpClient, redis_url: str, make_api: MakeApi
) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    gateway = await start_gateway(aiohttp_client, make_settings(redis_url))
    devices, ids = {}, {}
    for name in ("laptop", "phone", "tablet"):
        opened = await open_for(api, "dave", device_name=name)
        ids[name], token = opened["session"]["session_id"], opened["token"]
        ws = await gateway.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{token}"))
        devices[name] = Device(ws)
        await devices[name].ready()

    laptop_id = ids["laptop"]
    await ok(api, "DELETE", f"/admin/users/dave/sessions/{laptop_id}")
    notice = await devices["laptop"].until("session.revoked")
    assert await devices["laptop"].closed() == 4501
    assert (notice["session_id"], notice["reason"], notice["by"]) == (laptop_id, "admin", None)
    for name in ("phone", "tablet"):
        while (changed := await devices[name].until("sessions.changed"))["event"] == "created":
            pass  # the sign-ins of the devices after it
        assert (changed["event"], changed["session"]["session_id"]) == ("revoked", laptop_id)

    await ok(api, "POST", "/admin/users/dave/logout-all", {"reason": "password_changed"})
    for name in ("phone", "tablet"):
        notice = await devices[name].until("session.revoked")
        assert (notice["reason"], notice["by"]) == ("password_changed", None)
