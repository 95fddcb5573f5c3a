"""The gateway's limits, through real sockets: slow readers, floods, sockets per session,
and the closing handshake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from pytest_aiohttp import AiohttpClient

from service.sessions import keys
from service.sessions.store import SessionStore
from service.settings import Settings
from tests.conftest import make_settings
from tests.devices import WAIT, Device, connect, metric, sign_in, start_gateway, wait_for
from tests.raw import UPGRADE, raw_request
from workers.guard import MAX_UNPROVEN_MESSAGES

Gateway = Callable[..., Awaitable[Any]]


@pytest.fixture
def many(redis_url: str) -> Settings:
    """Settings with room for many sessions per user."""
    return make_settings(redis_url, max_sessions_per_user=200)


@pytest.fixture
def store(rdb: redis.Redis, many: Settings) -> SessionStore:
    return SessionStore(rdb, many)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, many: Settings) -> Gateway:
    async def start(**kwargs: Any) -> Any:
        return await start_gateway(aiohttp_client, many, **kwargs)

    return start


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int:
    """Read (and skip) what is left until the server's close frame; its code."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)


async def test_a_client_that_stops_reading_is_closed_with_1013(
    gateway: Gateway, store: SessionStore, many: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway()
    stuck = await connect(gw, await sign_in(store, many, "alice", "stuck"))
    reader = await connect(gw, await sign_in(store, many, "alice", "reader"))
    # The stuck client never reads again, but sends pongs of its own to look alive, while
    # the gateway still reads from it: once the gateway has cut it (past 64 unread
    # messages), a frame more would arrive at a closed socket, whose reset may reach the
    # client before the close frame it has not read yet.
    for n in range(80):
        if n % 10 == 0 and n < MAX_UNPROVEN_MESSAGES - 10:
            await stuck.ws.pong(b"alive")
        await sign_in(store, many, "alice", f"extra-{n}")
        await reader.expect("sessions.changed", wait=1.0)  # the others are not held up
    assert await close_code(stuck.ws) == 1013
    assert "client not reading" in caplog.text
    assert await metric(gw, "sessionwire_slow_clients_closed_total") == 1.0
    await reader.ws.close()


async def test_a_frame_flood_is_cut_with_1008(
    gateway: Gateway, store: SessionStore, many: Settings
) -> None:
    gw = await gateway()
    flooder = await connect(gw, await sign_in(store, many, "alice", "flooder"))
    bob = await connect(gw, await sign_in(store, many, "bob", "laptop"))
    with contextlib.suppress(ConnectionError):
        for _ in range(2_000):
            await flooder.ws.ping(b"")
    assert await close_code(flooder.ws) == 1008
    await sign_in(store, many, "bob", "phone")  # another user's notice still comes
    await bob.expect("sessions.changed")
    await bob.ws.close()


async def test_sockets_per_session_are_capped_before_the_upgrade(
    gateway: Gateway, store: SessionStore, many: Settings
) -> None:
    gw = await gateway()
    alice = await sign_in(store, many, "alice")
    devices = [await connect(gw, alice) for _ in range(many.max_sockets_per_session)]
    protocols = ("sessionwire.v1", f"bearer.{alice.token}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/ws", protocols=protocols)
    assert refused.value.status == 429
    headers = {name: value.encode() for name, value in UPGRADE.items()}
    headers["Authorization"] = f"Bearer {alice.token}".encode()
    resp = await raw_request(gw.server.port, "GET", "/ws", headers)
    assert (resp.status, resp.json()["code"]) == (429, "too_many_connections")
    other = await connect(gw, await sign_in(store, many, "alice", "other"))  # its own count
    await devices.pop().ws.close()  # one closes: a new one may open
    while True:
        try:
            devices.append(await connect(gw, alice))
            break
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429  # the server has not seen the close yet
    for device in [*devices, other]:
        await device.ws.close()


async def test_every_revoked_client_sees_4501_not_1006(
    gateway: Gateway, store: SessionStore, many: Settings
) -> None:
    gw = await gateway()
    # 30: what a device read last may be unproven (up to a quarter of the bound, see
    # workers/guard.py), and the revoke's 30 notices come on top, within MAX_UNPROVEN_MESSAGES.
    logins = [await sign_in(store, many, "alice", f"device-{n}") for n in range(30)]
    devices = [await connect(gw, login) for login in logins]
    # Each device is told the others came online (29 notices): read them first, up to a
    # rename of a session without a socket (told after them), so only the revoke is unread.
    presence = keys.presence("alice")
    await wait_for(lambda: store.redis.zcard(presence), lambda n: n == len(devices))
    marker = await sign_in(store, many, "alice", "marker")
    await store.rename("alice", marker.sid, "marked", None)
    for device in devices:
        while (await device.until("sessions.changed"))["event"] != "renamed":
            pass
    await store.revoke("alice", "all", logins[0].sid, "logout_all", logins[0].session.as_actor())
    for device in devices:
        await device.until("session.revoked")
        msg = await asyncio.wait_for(device.ws.receive(), WAIT)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4501)


async def test_unsolicited_pongs_do_not_keep_a_dead_peer(
    gateway: Gateway, store: SessionStore, many: Settings
) -> None:
    gw = await gateway(heartbeat=0.2)
    alice = await sign_in(store, many, "alice")
    ws = await gw.ws_connect(
        "/ws", protocols=("sessionwire.v1", f"bearer.{alice.token}"), autoping=False
    )
    await Device(ws).ready()
    while True:  # answers none of the server's pings, only sends its own pongs
        await ws.pong(b"1")
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type is not aiohttp.WSMsgType.PING:
            break
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_each_socket_keeps_its_own_heartbeat(
    gateway: Gateway, store: SessionStore, many: Settings
) -> None:
    gw = await gateway(heartbeat=0.2)
    protocols = ("sessionwire.v1",)
    sockets = []
    for name in ("alice", "bob"):
        user = await sign_in(store, many, name)
        ws = await gw.ws_connect(
            "/ws", protocols=(*protocols, f"bearer.{user.token}"), autoping=False
        )
        await Device(ws).ready()
        sockets.append(ws)
    alive, dead = sockets
    for _ in range(4):  # pinged again and again while it answers, never dropped
        msg = await asyncio.wait_for(alive.receive(), WAIT)
        assert msg.type is aiohttp.WSMsgType.PING
        await alive.pong(msg.data)
    while (msg := await asyncio.wait_for(dead.receive(), WAIT)).type is aiohttp.WSMsgType.PING:
        pass  # answers none: dropped
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert not alive.closed
