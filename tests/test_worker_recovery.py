"""Nothing lost: pub/sub killed, Redis restarted, the log trimmed, while sessions end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import redis.asyncio as redis
from pytest_aiohttp import AiohttpClient
from redis.asyncio.cluster import RedisCluster

from service.sessions import keys
from service.sessions.store import SessionStore
from service.settings import Settings
from tests.conftest import ENGINES, RedisServer, make_settings, on_engine
from tests.devices import Device, Login, connect, metric, sign_in, start_gateway


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


USERS = ("alice", "bob", "carol")


@pytest.fixture
def client(rdb: redis.Redis) -> redis.Redis:
    """The per-test Redis (conftest's `rdb`), under the name these tests use."""
    return rdb


async def devices_for(
    gw: Any, store: SessionStore, settings: Settings, per_user: int
) -> list[tuple[Login, Device]]:
    """Each user signs in `per_user` devices, then connects them all."""
    pairs = []
    for user in USERS:
        logins = [await sign_in(store, settings, user, f"{user}-{n}") for n in range(per_user)]
        for login in logins:
            pairs.append((login, await connect(gw, login)))
    return pairs


async def kill_feed(client: redis.Redis | RedisCluster, username: str) -> int:
    """Kill the pub/sub connections on the node that carries the user's channel."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(keys.channel(username))
        return int(await client.client_kill_filter(_type="pubsub", target_nodes=node))
    return int(await client.client_kill_filter(_type="pubsub"))


async def test_worker_pubsub_killed_while_sessions_end(
    aiohttp_client: AiohttpClient, settings: Settings, client: redis.Redis
) -> None:
    gw = await start_gateway(aiohttp_client, settings)
    store = SessionStore(client, settings)
    pairs = await devices_for(gw, store, settings, per_user=3)
    # Kill the worker's subscriber, and end a session while it reconnects; again and again.
    # Each notice proves the worker came back, so the next kill finds its new connection.
    victims = [pairs[0], pairs[3], pairs[6], pairs[1]]
    for login, device in victims:
        assert await kill_feed(client, login.username) == 1
        await store.revoke(login.username, "one", login.sid, "revoked", None)
        notice = await device.until("session.revoked")  # after news of earlier victims
        assert notice["session_id"] == login.sid and notice["reason"] == "revoked"
        assert await device.closed() == 4501
    # Survivors hear about each ended session of their user exactly once.
    for login, device in pairs:
        if (login, device) in victims:
            continue
        expected = {v.sid for v, _ in victims if v.username == login.username}
        seen = []
        for _ in expected:
            message = await device.change()  # presence notices come and go meanwhile
            seen.append(message["session"]["session_id"])
        assert sorted(seen) == sorted(expected)
    # Live again, and nothing was sent twice: the next message is the next event.
    login, device = pairs[2]
    await store.revoke(login.username, "one", login.sid, "logout", None)
    assert (await device.revoked())["reason"] == "logout"
    assert await metric(gw, "sessionwire_pubsub_reconnects_total") >= len(victims)


async def test_worker_log_trimmed_during_outage_uses_tombstone(
    aiohttp_client: AiohttpClient, settings: Settings, client: redis.Redis
) -> None:
    gw = await start_gateway(aiohttp_client, settings)
    store = SessionStore(client, settings)
    laptop = await sign_in(store, settings, "alice", "laptop")
    phone = await sign_in(store, settings, "alice", "phone")
    phone_ws = await connect(gw, phone)
    assert await kill_feed(client, "alice") == 1
    await store.revoke("alice", "one", phone.sid, "revoked", laptop.session.as_actor())
    await client.xtrim(keys.event_log("alice"), maxlen=0)  # the log can't replay it now
    notice = await phone_ws.revoked()
    assert notice["reason"] == "revoked"
    assert notice["by"]["session_id"] == laptop.sid


async def test_worker_redis_restart_while_sessions_end(
    aiohttp_client: AiohttpClient, own_redis: RedisServer
) -> None:
    settings = make_settings(own_redis.url)
    gw = await start_gateway(aiohttp_client, settings)
    admin = redis.Redis.from_url(own_redis.url, decode_responses=True)
    store = SessionStore(admin, settings)
    pairs = await devices_for(gw, store, settings, per_user=1)
    # Restart with the data kept (SHUTDOWN SAVE, then the same directory).
    with contextlib.suppress(redis.ConnectionError):
        await admin.shutdown(save=True)
    assert own_redis.proc is not None
    own_redis.proc.wait(timeout=10)
    own_redis.start()
    back = time.monotonic()
    for login, _ in pairs:  # sessions end before the worker is back on pub/sub
        await store.revoke(login.username, "one", login.sid, "revoked", None)
    for login, device in pairs:
        assert (await device.revoked())["session_id"] == login.sid
    assert time.monotonic() - back < 2.0
    await admin.aclose()


async def test_worker_redis_restarted_empty_tells_every_device(
    aiohttp_client: AiohttpClient, own_redis: RedisServer
) -> None:
    settings = make_settings(own_redis.url)
    gw = await start_gateway(aiohttp_client, settings)
    admin = redis.Redis.from_url(own_redis.url, decode_responses=True)
    store = SessionStore(admin, settings)
    pairs = await devices_for(gw, store, settings, per_user=1)
    await admin.aclose()
    own_redis.stop()  # no persistence: every session is gone
    own_redis.start()
    back = time.monotonic()
    notices = await asyncio.gather(*(device.revoked() for _, device in pairs))
    assert time.monotonic() - back < 2.0
    for (login, _), notice in zip(pairs, notices, strict=True):
        assert notice["session_id"] == login.sid
        assert notice["reason"] == "expired" and notice["by"] is None
