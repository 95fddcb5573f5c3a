"""The WebSocket gateway in process: auth, messages, reasons, fan-out, slow clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as redis
from pytest_aiohttp import AiohttpClient

from service.api.app import create_app
from service.runtime.appkeys import STORE
from service.sessions import eventlog, keys
from service.sessions.records import StoredSession
from service.sessions.store import SessionStore
from service.sessions.tokens import TokenCodec
from service.settings import Settings
from service.wire.schemas import Actor
from tests.conftest import ENGINES, login, make_settings, on_engine
from tests.devices import WAIT, Device, Login, connect, sign_in, start_gateway
from tests.test_api_input import challenge
from workers.app import create_gateway_app


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


Gateway = Callable[..., Awaitable[Any]]


@pytest.fixture
def client(rdb: redis.Redis) -> redis.Redis:
    """The per-test Redis (conftest's `rdb`), under the name these tests use."""
    return rdb


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, settings: Settings) -> Gateway:
    """Start a gateway app (default settings unless given) and wait for its pub/sub."""

    async def start(app_settings: Settings = settings, **kwargs: Any) -> Any:
        return await start_gateway(aiohttp_client, app_settings, **kwargs)

    return start


@pytest.fixture
def store(client: redis.Redis, settings: Settings) -> SessionStore:
    return SessionStore(client, settings)


def actor(login: Login) -> Actor:
    return login.session.as_actor()


async def test_gateway_ready_echoes_only_the_protocol(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    alice = await sign_in(store, settings, "alice")
    ws = await gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{alice.token}"))
    assert ws.protocol == "sessionwire.v1"
    assert await Device(ws).next() == {
        "type": "ready",
        "session_id": alice.sid,
        "username": "alice",
    }
    await ws.close()


async def test_gateway_accepts_authorization_header(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    alice = await sign_in(store, settings, "alice")
    ws = await gw.ws_connect("/ws", headers={"Authorization": f"Bearer {alice.token}"})
    assert (await Device(ws).ready())["username"] == "alice"
    await ws.close()


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic abc"}, "invalid_token"),
        ({"Sec-WebSocket-Protocol": "sessionwire.v1, bearer.not-a-jwt"}, "invalid_token"),
        ("expired", "token_expired"),
    ],
)
async def test_gateway_refuses_bad_tokens_before_upgrade(
    gateway: Gateway, settings: Settings, headers: Any, code: str
) -> None:
    gw = await gateway()
    if headers == "expired":
        past = int(time.time() * 1000) - 10_000
        token = TokenCodec(settings).issue("alice", "sid", past - 1000, past)
        headers = {"Authorization": f"Bearer {token}"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/ws", headers=headers)
    assert refused.value.status == 401
    resp = await gw.get("/ws", headers=headers)  # the same refusal, read as a plain response
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == challenge(code)
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == code and body["status"] == 401 and body["title"] and body["detail"]
    assert "not-a-jwt" not in body["detail"]


async def test_gateway_plain_get_gets_426(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    alice = await sign_in(store, settings, "alice")
    resp = await gw.get("/ws", headers={"Authorization": f"Bearer {alice.token}"})
    assert resp.status == 426 and resp.headers["Upgrade"] == "websocket"
    assert (await resp.json())["code"] == "upgrade_required"


async def test_gateway_checks_origin(gateway: Gateway, store: SessionStore, redis_url: str) -> None:
    settings = make_settings(redis_url, allowed_origins=("https://app.example",))
    gw = await gateway(settings)
    alice = await sign_in(store, settings, "alice")
    protocols = ("sessionwire.v1", f"bearer.{alice.token}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/ws", protocols=protocols, origin="https://evil.example")
    assert refused.value.status == 403
    resp = await gw.get("/ws", headers={"Origin": "https://evil.example"})
    assert (await resp.json())["code"] == "origin_not_allowed"
    ws = await gw.ws_connect("/ws", protocols=protocols, origin="https://app.example")
    await Device(ws).ready()
    await ws.close()


async def test_gateway_revoked_session_at_connect(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    phone = await sign_in(store, settings, "alice", "phone")
    laptop = await sign_in(store, settings, "alice", "laptop")
    await store.revoke("alice", "one", phone.sid, "revoked", actor(laptop))
    ws = await gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{phone.token}"))
    assert ws.protocol == "sessionwire.v1"
    notice = await Device(ws).revoked()
    assert notice["session_id"] == phone.sid and notice["reason"] == "revoked"
    assert notice["by"] == {"session_id": laptop.sid, "device_name": "laptop", "ip": "127.0.0.1"}
    assert notice["at"].endswith("Z") or "+00:00" in notice["at"]


async def test_gateway_sessions_changed_reaches_other_devices(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    laptop = await sign_in(store, settings, "alice", "laptop")
    laptop_ws = await connect(gw, laptop)
    phone = await sign_in(store, settings, "alice", "phone")
    created = await laptop_ws.expect("sessions.changed")
    assert created["event"] == "created" and created["session"]["session_id"] == phone.sid
    assert created["session"]["device_name"] == "phone"
    phone_ws = await connect(gw, phone)
    await store.revoke("alice", "one", phone.sid, "revoked", actor(laptop))
    notice = await phone_ws.revoked()
    assert notice["by"]["session_id"] == laptop.sid
    changed = await laptop_ws.expect("sessions.changed")
    assert changed["event"] == "revoked" and changed["session"]["session_id"] == phone.sid
    await laptop_ws.ws.close()


async def test_gateway_other_users_see_nothing(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    bob = await connect(gw, await sign_in(store, settings, "bob"))
    alice = await sign_in(store, settings, "alice")
    alice_ws = await connect(gw, alice)
    await store.revoke("alice", "one", alice.sid, "logout", actor(alice))
    await alice_ws.revoked()
    bob2 = await sign_in(store, settings, "bob", "second")
    changed = await bob.expect("sessions.changed")  # bob's first message is his own
    assert changed["session"]["session_id"] == bob2.sid
    await bob.ws.close()


async def api_login(api: Any, device: str, device_id: str | None = None) -> Login:
    """alice signs in through the API, as a Login the socket helpers take."""
    ids = {"device_id": device_id} if device_id else {}
    answer = await login(api, device_name=device, **ids)
    session = StoredSession(
        session_id=answer["session"]["session_id"], device_name=device, ip=answer["session"]["ip"]
    )
    return Login("alice", session, answer["token"])


REASON_CALLS = {  # reason -> (who calls, method, path); None: a third sign-in does it
    "logout": ("phone", "POST", "/logout"),
    "revoked": ("laptop", "DELETE", "/sessions/{phone}"),
    "revoke_others": ("laptop", "POST", "/sessions/revoke-others"),
    "logout_all": ("laptop", "POST", "/logout-all"),
    "evicted": None,
    "replaced": None,
}


@pytest.mark.parametrize("reason", list(REASON_CALLS))
async def test_gateway_each_reason_has_its_by(
    gateway: Gateway, aiohttp_client: AiohttpClient, redis_url: str, reason: str
) -> None:
    """Every way a session ends, through the API, reaches the device with reason and by."""
    settings = make_settings(redis_url, max_sessions_per_user=2)
    api = await aiohttp_client(create_app(settings))
    gw = await gateway(settings)
    phone = await api_login(api, "phone", device_id="phone-1")
    laptop = await api_login(api, "laptop")
    phone_ws, laptop_ws = await connect(gw, phone), await connect(gw, laptop)
    devices = {"phone": phone, "laptop": laptop}
    call = REASON_CALLS[reason]
    if call is not None:
        caller, method, path = call
        by = devices[caller]
        resp = await api.request(
            method, path.format(phone=phone.sid), headers={"Authorization": f"Bearer {by.token}"}
        )
        assert resp.status == 200, await resp.text()
    else:  # the phone is now least recently seen; or the same device id signs in again
        assert (await api.get("/me", headers={"Authorization": f"Bearer {laptop.token}"})).ok
        by = await api_login(api, "tablet", "phone-1" if reason == "replaced" else "tab-1")
    notice = await phone_ws.revoked()
    assert notice["reason"] == reason and notice["session_id"] == phone.sid
    assert notice["by"] == {
        "session_id": by.sid,
        "device_name": by.session.device_name,
        "ip": "127.0.0.1",
    }
    if reason == "logout_all":
        assert (await laptop_ws.until("session.revoked"))["reason"] == "logout_all"
        assert await laptop_ws.closed() == 4501
        return
    news = [await laptop_ws.expect("sessions.changed") for _ in range(1 if call else 2)]
    assert ("revoked", phone.sid) in {(m["event"], m["session"]["session_id"]) for m in news}
    await laptop_ws.ws.close()


async def test_gateway_duplicate_event_is_delivered_once(
    gateway: Gateway, store: SessionStore, settings: Settings, client: redis.Redis
) -> None:
    gw = await gateway()
    laptop_ws = await connect(gw, await sign_in(store, settings, "alice", "laptop"))
    first = await sign_in(store, settings, "alice", "first")
    assert (await laptop_ws.expect("sessions.changed"))["session"]["session_id"] == first.sid
    # Publish the same event again, as a replay after a reconnect would.
    [(entry_id, fields)] = await client.xrevrange(keys.event_log("alice"), count=1)
    again = msgspec.json.encode(eventlog.decode_entry(entry_id, fields))
    await client.spublish(keys.channel("alice"), again)
    second = await sign_in(store, settings, "alice", "second")
    assert (await laptop_ws.expect("sessions.changed"))["session"]["session_id"] == second.sid
    await laptop_ws.ws.close()


async def test_gateway_health_and_metrics(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway()
    assert (await gw.get("/healthz")).status == 200
    assert (await gw.get("/readyz")).status == 200
    alice = await sign_in(store, settings, "alice")
    device = await connect(gw, alice)
    await store.revoke("alice", "one", alice.sid, "logout", actor(alice))
    await device.revoked()
    text = await (await gw.get("/metrics")).text()
    for name in (
        "sessionwire_gateway_sockets",
        "sessionwire_notice_latency_seconds_bucket",
        'sessionwire_gateway_notices_total{type="session.revoked"} 1.0',
        "sessionwire_pubsub_reconnects_total",
    ):
        assert name in text


async def test_gateway_readyz_when_redis_is_down(
    aiohttp_client: AiohttpClient, own_redis: Any
) -> None:
    app = create_gateway_app(make_settings(own_redis.url))
    gw = await aiohttp_client(app)
    own_redis.stop()
    resp = await gw.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["code"] == "redis_unavailable"
    resp = await gw.get("/ws", headers={"Authorization": "Bearer x"})
    assert resp.status == 401  # the token is checked before Redis is needed
    own_redis.start()


async def test_gateway_drops_a_dead_peer(
    gateway: Gateway, store: SessionStore, settings: Settings
) -> None:
    gw = await gateway(heartbeat=0.2)
    alice = await sign_in(store, settings, "alice")
    # A peer that never answers pings looks like one whose network went away.
    ws = await gw.ws_connect(
        "/ws", protocols=("sessionwire.v1", f"bearer.{alice.token}"), autoping=False
    )
    device = Device(ws)
    await device.ready()
    while True:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type != aiohttp.WSMsgType.PING:
            break
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)  # dropped


async def test_gateway_event_between_check_and_subscribe_is_caught_up(
    gateway: Gateway, store: SessionStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await gateway()
    phone = await sign_in(store, settings, "alice", "phone")
    laptop = await sign_in(store, settings, "alice", "laptop")
    gateway_store = gw.app[STORE]
    check = gateway_store.check_with_cursor
    trips_before = gateway_store.reads.batches_sent

    async def check_then_revoke(user: str, sid: str) -> Any:
        # The session ends after the check passed but before the subscription exists:
        # its pub/sub message is gone for this worker, so only the log can tell.
        checked = await check(user, sid)
        await store.revoke("alice", "one", phone.sid, "revoked", actor(laptop))
        return checked

    monkeypatch.setattr(gateway_store, "check_with_cursor", check_then_revoke)
    ws = await gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{phone.token}"))
    device = Device(ws)
    await device.ready()
    notice = await device.revoked()
    assert notice["reason"] == "revoked" and notice["by"]["session_id"] == laptop.sid
    # The log's position and the session were read in one trip to Redis.
    assert gateway_store.reads.batches_sent == trips_before + 1


async def test_gateway_skips_a_bad_message(
    gateway: Gateway,
    store: SessionStore,
    settings: Settings,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await gateway()
    laptop_ws = await connect(gw, await sign_in(store, settings, "alice", "laptop"))
    await client.spublish(keys.channel("alice"), "{not json")
    await client.spublish(keys.channel("alice"), '{"id": "1-0", "type": "unknown"}')
    phone = await sign_in(store, settings, "alice", "phone")
    changed = await laptop_ws.expect("sessions.changed")
    assert changed["session"]["session_id"] == phone.sid
    assert caplog.text.count("skipping an undecodable event") == 2
    await laptop_ws.ws.close()


@pytest.mark.parametrize("offer", ["bearer.{token}", "chat, bearer.{token}", "," * 2000])
async def test_gateway_refuses_an_offer_without_its_subprotocol(
    gateway: Gateway, store: SessionStore, settings: Settings, offer: str
) -> None:
    gw = await gateway()
    alice = await sign_in(store, settings, "alice")
    headers = {
        "Sec-WebSocket-Protocol": offer.format(token=alice.token),
        "Authorization": f"Bearer {alice.token}",
    }
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/ws", headers=headers)
    assert refused.value.status == 400
    resp = await gw.get("/ws", headers=headers)
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["code"] == "bad_request"
    # Offered with ours, the same socket opens.
    ws = await gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{alice.token}"))
    assert ws.protocol == "sessionwire.v1"
    await ws.close()
