"""Every row of the contract's HTTP table, and the events each change publishes."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from service.sessions import keys
from service.wire.schemas import (
    LoginResponse,
    MeResponse,
    Problem,
    RevokedResponse,
    SessionsResponse,
)
from tests.conftest import (
    ENGINES,
    FIREFOX_UA,
    PASSWORD,
    EventWatch,
    ManualClock,
    bearer,
    login,
    on_engine,
)
from tests.test_api_input import challenge


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
SESSION_FIELDS = {
    "session_id",
    "device_id",
    "device_name",
    "user_agent",
    "ip",
    "created_at",
    "last_seen_at",
    "expires_at",
    "online",
    "browser",
    "os",
    "device_type",
    "location",
}
Watch = Callable[[str], EventWatch]
T = TypeVar("T")


async def tick_then(clock: ManualClock, request: Awaitable[T]) -> T:
    """Move the API's clock on by a millisecond, then await `request`.

    Last-seen times are kept in ms: without this, two requests in a row may be seen "at
    once" and their order is arbitrary.
    """
    clock.advance(0.001)
    return await request


def when(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp  # RFC 3339, UTC
    return datetime.fromisoformat(stamp)


async def get_json(client: TestClient, path: str, token: str, status: int = 200) -> Any:
    resp = await client.get(path, headers=bearer(token))
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


async def post_json(client: TestClient, path: str, token: str, status: int = 200) -> Any:
    resp = await client.post(path, headers=bearer(token))
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


async def revoked_reason(client: TestClient, token: str) -> dict[str, Any]:
    """The 401 of a revoked token: its `revoked` block."""
    body = await get_json(client, "/me", token, 401)
    assert body["code"] == "session_revoked"
    return body["revoked"]  # type: ignore[no-any-return]


def actor(session: dict[str, Any]) -> dict[str, str]:
    return {k: session[k] for k in ("session_id", "device_name", "ip")}


async def test_login_with_json(api: TestClient) -> None:
    body = await login(api)
    assert body["token_type"] == "Bearer"
    assert body["token"].count(".") == 2
    session = body["session"]
    assert set(session) == SESSION_FIELDS
    assert session["device_name"] == "Firefox on Ubuntu"
    assert session["user_agent"] == FIREFOX_UA
    assert session["ip"] == "127.0.0.1"
    assert session["device_id"] is None
    created = when(session["created_at"])
    assert when(session["last_seen_at"]) == created
    assert when(session["expires_at"]) == created + timedelta(hours=1)  # idle timeout
    assert when(body["expires_at"]) == created + timedelta(days=7)  # max age
    assert abs(created - datetime.now(created.tzinfo)) < timedelta(seconds=30)


async def test_login_with_a_form(api: TestClient) -> None:
    resp = await api.post(
        "/login",
        data={"username": "bob", "password": PASSWORD, "device_name": "Bob's phone"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["session"]["device_name"] == "Bob's phone"
    me = await get_json(api, "/me", body["token"])
    assert me["username"] == "bob"


async def test_login_with_a_multipart_form(api: TestClient) -> None:
    form = aiohttp.FormData({"username": "carol", "password": PASSWORD, "device_id": "c-1"})
    form.add_field("avatar", b"\x00\x01", filename="a.png")  # files are ignored
    resp = await api.post("/login", data=form)
    assert resp.status == 200
    assert (await resp.json())["session"]["device_id"] == "c-1"


async def test_device_name_comes_from_the_user_agent(api: TestClient) -> None:
    body = await login(api, user_agent=IPHONE_UA)
    assert body["session"]["device_name"] == "Mobile Safari on iPhone"
    resp = await api.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        skip_auto_headers=["User-Agent"],
    )
    assert (await resp.json())["session"]["device_name"] == "Unknown device"


async def test_explicit_device_name_and_id(api: TestClient) -> None:
    body = await login(api, device_name="Work laptop", device_id="laptop-1")
    assert body["session"]["device_name"] == "Work laptop"
    assert body["session"]["device_id"] == "laptop-1"


async def test_login_publishes_one_created_event(api: TestClient, watch_events: Watch) -> None:
    async with watch_events("alice") as events:
        body = await login(api, device_name="Desk")
        (event,) = await events.take()
    session = body["session"]
    assert event["type"] == "session.created"
    assert event["user"] == "alice"
    assert event["session_id"] == session["session_id"]
    assert event["session"]["device_name"] == "Desk"
    assert event["by"] == actor(session)


async def test_wrong_password_and_unknown_user_get_the_same_401(api: TestClient) -> None:
    answers = []
    for username, password in (("alice", "wrong"), ("nobody", PASSWORD), ("no body!", "x")):
        resp = await api.post("/login", json={"username": username, "password": password})
        assert resp.status == 401
        headers = {k: v for k, v in resp.headers.items() if k not in ("Date",)}
        answers.append((headers, await resp.read()))
    assert answers[0] == answers[1] == answers[2]
    assert b"invalid_credentials" in answers[0][1]
    assert answers[0][0]["WWW-Authenticate"].startswith("Bearer")


async def test_same_device_id_replaces_the_session(api: TestClient, watch_events: Watch) -> None:
    first = await login(api, device_id="phone")
    other = await login(api, device_id="tablet")
    async with watch_events("alice") as events:
        second = await login(api, device_id="phone", device_name="Phone again")
        revoked, created = await events.take()
    assert revoked["type"] == "session.revoked"
    assert revoked["reason"] == "replaced"
    assert revoked["session_id"] == first["session"]["session_id"]
    assert revoked["by"] == actor(second["session"])
    assert created["type"] == "session.created"
    assert created["session_id"] == second["session"]["session_id"]

    tomb = await revoked_reason(api, first["token"])
    assert tomb["reason"] == "replaced"
    assert tomb["by"] == actor(second["session"])
    listed = await get_json(api, "/sessions", second["token"])
    ids = {s["session_id"] for s in listed["sessions"]}
    assert ids == {second["session"]["session_id"], other["session"]["session_id"]}


async def test_past_the_limit_the_least_recently_seen_is_evicted(
    make_api: Callable[..., Any], watch_events: Watch, clock: ManualClock
) -> None:
    api = await make_api(clock=clock, max_sessions_per_user=3)
    a, b, c = [await tick_then(clock, login(api, device_name=name)) for name in ("A", "B", "C")]
    await tick_then(clock, get_json(api, "/me", a["token"]))  # A is now seen more recently than B
    async with watch_events("alice") as events:
        d = await tick_then(clock, login(api, device_name="D"))
        evicted, created = await events.take()
    assert evicted["reason"] == "evicted"
    assert evicted["session_id"] == b["session"]["session_id"]
    assert evicted["by"] == actor(d["session"])
    assert created["session_id"] == d["session"]["session_id"]

    tomb = await revoked_reason(api, b["token"])
    assert tomb["reason"] == "evicted"
    assert tomb["by"]["device_name"] == "D"
    listed = await tick_then(clock, get_json(api, "/sessions", c["token"]))
    assert [s["device_name"] for s in listed["sessions"]] == ["C", "D", "A"]


async def test_logout(api: TestClient, watch_events: Watch) -> None:
    mine = await login(api, device_name="Mine")
    other = await login(api, device_name="Other")
    async with watch_events("alice") as events:
        body = await post_json(api, "/logout", mine["token"])
        (event,) = await events.take()
    assert body == {"revoked": [mine["session"]["session_id"]]}
    assert event["type"] == "session.revoked"
    assert event["reason"] == "logout"
    assert event["by"] == actor(mine["session"])

    tomb = await revoked_reason(api, mine["token"])
    assert tomb["reason"] == "logout"
    assert tomb["by"] == actor(mine["session"])
    assert abs(when(tomb["at"]) - datetime.now(when(tomb["at"]).tzinfo)) < timedelta(seconds=30)
    await get_json(api, "/me", other["token"])
    again = await post_json(api, "/logout", mine["token"], 401)
    assert again["code"] == "session_revoked"


async def test_me_has_the_profile_and_session_and_no_secret(api: TestClient) -> None:
    body = await login(api)
    resp = await api.get("/me", headers=bearer(body["token"]))
    me = await resp.json()
    assert set(me) == {"username", "email", "bio", "session"}
    assert me["username"] == "alice"
    assert me["email"] == "alice@example.com"
    assert me["bio"] == "alice tests things"
    assert me["session"]["session_id"] == body["session"]["session_id"]
    assert set(me["session"]) == SESSION_FIELDS


async def test_no_response_ever_carries_a_password_or_hash(api: TestClient) -> None:
    texts: list[str] = []
    first = await login(api)
    token = first["token"]
    texts.append(str(first))
    for path in ("/me", "/sessions", "/metrics", "/openapi.json", "/"):
        texts.append(await (await api.get(path, headers=bearer(token))).text())
    bad = await api.post("/login", json={"username": "alice", "password": "wrong-guess"})
    texts.append(await bad.text())
    texts.append(await (await api.post("/login", data={"username": "alice"})).text())
    for text in texts:
        assert PASSWORD not in text
        assert "wrong-guess" not in text
        assert "$argon2" not in text
        assert "password_hash" not in text


async def test_sessions_are_listed_most_recently_seen_first(
    make_api: Callable[..., Any], clock: ManualClock
) -> None:
    api = await make_api(clock=clock)
    a, b, c = [await tick_then(clock, login(api, device_name=name)) for name in ("A", "B", "C")]
    await tick_then(clock, get_json(api, "/me", b["token"]))
    await tick_then(clock, get_json(api, "/me", a["token"]))
    listed = await tick_then(clock, get_json(api, "/sessions", c["token"]))
    sessions = listed["sessions"]
    # C's request touched C first; then A and B in the order they were last seen.
    assert [s["device_name"] for s in sessions] == ["C", "A", "B"]
    assert [s["current"] for s in sessions] == [True, False, False]
    assert set(sessions[0]) == SESSION_FIELDS | {"current"}
    seen = [when(s["last_seen_at"]) for s in sessions]
    assert seen == sorted(seen, reverse=True)


async def test_sessions_of_other_users_are_not_listed(api: TestClient) -> None:
    await login(api, "bob")
    mine = await login(api)
    listed = await get_json(api, "/sessions", mine["token"])
    assert [s["session_id"] for s in listed["sessions"]] == [mine["session"]["session_id"]]


async def test_delete_another_device(api: TestClient, watch_events: Watch) -> None:
    actor_login = await login(api, device_name="Laptop")
    target = await login(api, device_name="Phone")
    sid = target["session"]["session_id"]
    async with watch_events("alice") as events:
        resp = await api.delete(f"/sessions/{sid}", headers=bearer(actor_login["token"]))
        (event,) = await events.take()
    assert resp.status == 200
    assert await resp.json() == {"revoked": [sid]}
    assert event["reason"] == "revoked"
    assert event["session_id"] == sid
    assert event["by"] == actor(actor_login["session"])
    tomb = await revoked_reason(api, target["token"])
    assert tomb["reason"] == "revoked"
    assert tomb["by"]["device_name"] == "Laptop"
    await get_json(api, "/me", actor_login["token"])

    again = await api.delete(f"/sessions/{sid}", headers=bearer(actor_login["token"]))
    assert again.status == 404


async def test_delete_own_session_is_a_logout(api: TestClient) -> None:
    body = await login(api)
    sid = body["session"]["session_id"]
    resp = await api.delete(f"/sessions/{sid}", headers=bearer(body["token"]))
    assert resp.status == 200
    assert (await revoked_reason(api, body["token"]))["reason"] == "logout"


async def test_delete_another_users_session_is_404(api: TestClient, watch_events: Watch) -> None:
    bob = await login(api, "bob")
    alice = await login(api)
    async with watch_events("bob") as events:
        resp = await api.delete(
            f"/sessions/{bob['session']['session_id']}", headers=bearer(alice["token"])
        )
        assert await events.take() == []
    assert resp.status == 404
    body = await resp.json(content_type="application/problem+json")
    assert body["code"] == "session_not_found"
    await get_json(api, "/me", bob["token"])
    missing = await api.delete("/sessions/no-such-session", headers=bearer(alice["token"]))
    assert (await missing.json(content_type=None))["code"] == "session_not_found"


async def test_revoke_others(api: TestClient, watch_events: Watch) -> None:
    mine, b, c = [await login(api, device_name=name) for name in ("Mine", "B", "C")]
    bob = await login(api, "bob")
    async with watch_events("alice") as events:
        body = await post_json(api, "/sessions/revoke-others", mine["token"])
        published = await events.take()
    others = {b["session"]["session_id"], c["session"]["session_id"]}
    assert set(body["revoked"]) == others
    assert {e["session_id"] for e in published} == others
    assert {e["reason"] for e in published} == {"revoke_others"}
    assert all(e["by"] == actor(mine["session"]) for e in published)
    for other in (b, c):
        tomb = await revoked_reason(api, other["token"])
        assert tomb["reason"] == "revoke_others"
        assert tomb["by"]["device_name"] == "Mine"
    listed = await get_json(api, "/sessions", mine["token"])
    assert [s["session_id"] for s in listed["sessions"]] == [mine["session"]["session_id"]]
    await get_json(api, "/me", bob["token"])
    assert (await post_json(api, "/sessions/revoke-others", mine["token"]))["revoked"] == []


async def test_logout_all(api: TestClient, watch_events: Watch) -> None:
    mine, other = [await login(api, device_name=name) for name in ("Mine", "Other")]
    bob = await login(api, "bob")
    async with watch_events("alice") as events:
        body = await post_json(api, "/logout-all", mine["token"])
        published = await events.take()
    both = {mine["session"]["session_id"], other["session"]["session_id"]}
    assert set(body["revoked"]) == both
    assert {e["session_id"] for e in published} == both
    assert {e["reason"] for e in published} == {"logout_all"}
    for each in (mine, other):
        tomb = await revoked_reason(api, each["token"])
        assert tomb == {**tomb, "reason": "logout_all", "by": actor(mine["session"])}
    await get_json(api, "/me", bob["token"])


async def test_healthz_readyz(api: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        resp = await api.get(path)
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "pid": os.getpid()}  # who answered


async def test_metrics(api: TestClient) -> None:
    await login(api)
    await api.post("/login", json={"username": "alice", "password": "nope"})
    await api.get("/nowhere")
    resp = await api.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert 'sessionwire_http_requests_total{method="POST",route="/login",status="200"} 1.0' in text
    assert 'sessionwire_logins_total{outcome="failure"} 1.0' in text
    assert 'sessionwire_logins_total{outcome="success"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "sessionwire_http_request_seconds_bucket" in text


async def test_openapi_document(api: TestClient) -> None:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    expected = {
        ("post", "/login"),
        ("post", "/logout"),
        ("get", "/me"),
        ("get", "/sessions"),
        ("delete", "/sessions/{session_id}"),
        ("post", "/sessions/revoke-others"),
        ("post", "/logout-all"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    }
    found = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert expected <= found
    schemas = doc["components"]["schemas"]
    for name in ("LoginRequest", "LoginResponse", "MeResponse", "SessionsResponse", "Problem"):
        assert name in schemas
    login_req = schemas["LoginRequest"]
    assert set(login_req["required"]) == {"username", "password"}
    assert login_req["properties"]["password"]["maxLength"] == 1024
    # every $ref points at a schema that exists
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas
    assert doc["paths"]["/me"]["get"]["security"]
    assert "bearer" in doc["components"]["securitySchemes"]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


async def test_the_page_is_served(api: TestClient) -> None:
    resp = await api.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert "<html" in text.lower()


async def test_401_codes_carry_www_authenticate(api: TestClient) -> None:
    body = await login(api)
    await post_json(api, "/logout", body["token"])
    cases = [({}, "missing_token"), (bearer("x.y.z"), "invalid_token")]
    cases.append((bearer(body["token"]), "session_revoked"))
    for headers, code in cases:
        for method, path in (("GET", "/me"), ("GET", "/sessions"), ("POST", "/logout-all")):
            resp = await api.request(method, path, headers=headers)
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"] == challenge(code)
            assert (await resp.json(content_type=None))["code"] == code


async def test_bearer_scheme_is_case_insensitive(api: TestClient) -> None:
    token = (await login(api))["token"]
    resp = await api.get("/me", headers={"Authorization": f"bearer {token}"})
    assert resp.status == 200


async def test_a_corrupt_tombstone_is_a_plain_401(api: TestClient, rdb: aioredis.Redis) -> None:
    body = await login(api)
    await post_json(api, "/logout", body["token"])
    await rdb.set(keys.tombstone("alice", body["session"]["session_id"]), "{broken")
    problem = await get_json(api, "/me", body["token"], 401)
    assert problem["code"] == "session_revoked"
    assert "revoked" not in problem


async def test_a_corrupt_session_record_is_a_401_not_a_500(
    api: TestClient, rdb: aioredis.Redis
) -> None:
    body = await login(api)
    record = keys.session_record("alice", body["session"]["session_id"])
    await rdb.hset(record, "seen_ms", "not a number")
    problem = await get_json(api, "/me", body["token"], 401)
    assert problem["code"] == "session_revoked"


async def test_config_names_the_gateway(make_api: Callable[..., Any]) -> None:
    api = await make_api(gateway_port=9123)
    resp = await api.get("/config")
    assert resp.status == 200
    assert (await resp.json())["gateway_url"] == "ws://127.0.0.1:9123/ws"
    public = await make_api(gateway_public_url="wss://example.com/ws")
    assert (await (await public.get("/config")).json())["gateway_url"] == "wss://example.com/ws"


async def test_responses_match_their_published_schemas(api: TestClient) -> None:
    raw = await (await api.post("/login", json={"username": "alice", "password": PASSWORD})).read()
    body = msgspec.json.decode(raw, type=LoginResponse)
    auth = bearer(body.token)
    msgspec.json.decode(await (await api.get("/me", headers=auth)).read(), type=MeResponse)
    listed = await (await api.get("/sessions", headers=auth)).read()
    assert msgspec.json.decode(listed, type=SessionsResponse).sessions[0].current
    bad = await (await api.post("/login", json={"username": "alice"})).read()
    assert msgspec.json.decode(bad, type=Problem).errors
    out = await (await api.post("/logout", headers=auth)).read()
    assert msgspec.json.decode(out, type=RevokedResponse).revoked == [body.session.session_id]
    gone = await (await api.get("/me", headers=auth)).read()
    revoked = msgspec.json.decode(gone, type=Problem).revoked
    assert revoked is not None and revoked.reason == "logout"
