"""Presence: which sessions hold a live socket, on one Redis and on a cluster, through the
HTTP API and the gateway; the notices the user's other devices get; a worker killed -9."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from service.sessions import keys
from service.sessions import presence as presence_core
from service.settings import Settings
from tests.conftest import (
    ENGINES,
    TEST_USERS,
    ManualClock,
    bearer,
    login,
    make_settings,
    on_engine,
)
from tests.devices import Device, start_gateway, wait_for
from tests.processes import running

MakeApi = Callable[..., Awaitable[TestClient]]
ONLINE_WITHIN = 2.0  # the contract: online or offline within 2 s of a connect or close


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


def fast(redis_url: str, **overrides: Any) -> Settings:
    """Reports every 0.2 s; notices unthrottled unless a test asks."""
    return make_settings(
        redis_url,
        presence_refresh=0.2,
        presence_notice_interval=overrides.pop("presence_notice_interval", 0.0),
        **overrides,
    )


class World:
    """The API and a gateway on one Redis, sharing a clock."""

    def __init__(self, api: TestClient, gw: Any) -> None:
        self.api, self.gw = api, gw

    async def online(self, token: str) -> dict[str, bool]:
        body = await (await self.api.get("/sessions", headers=bearer(token))).json()
        return {s["session_id"]: s["online"] for s in body["sessions"]}

    async def socket(self, token: str) -> Device:
        ws = await self.gw.ws_connect("/ws", protocols=("sessionwire.v1", f"bearer.{token}"))
        device = Device(ws)
        await device.ready()
        return device


@pytest.fixture
async def world(
    make_api: MakeApi, aiohttp_client: AiohttpClient, redis_url: str, clock: ManualClock
) -> Callable[..., Awaitable[World]]:
    async def make(**overrides: Any) -> World:
        settings = fast(redis_url, **overrides)
        api = await make_api(clock=clock, **{k: getattr(settings, k) for k in overrides})
        gw = await start_gateway(aiohttp_client, settings, clock=clock)
        return World(api, gw)

    return make


def session_id(body: dict[str, Any]) -> str:
    return str(body["session"]["session_id"])


async def test_online_while_a_socket_is_open_and_tabs_share_a_session(
    world: Callable[..., Awaitable[World]], rdb: redis.Redis
) -> None:
    w = await world()
    laptop, phone = await login(w.api, device_name="Laptop"), await login(w.api)
    sid, token = session_id(laptop), laptop["token"]
    assert (await w.online(token))[sid] is False
    tab1 = await w.socket(token)
    await wait_for(lambda: w.online(token), lambda seen: seen[sid], ONLINE_WITHIN)
    assert (await w.online(token))[session_id(phone)] is False
    me = await (await w.api.get("/me", headers=bearer(token))).json()
    assert me["session"]["online"] is True

    tab2 = await w.socket(token)  # a second tab: the same cookie, the same session
    presence = keys.presence("alice")
    await wait_for(lambda: rdb.zcard(presence), lambda n: n == 2, ONLINE_WITHIN)
    await tab1.ws.close()
    await wait_for(lambda: rdb.zcard(presence), lambda n: n == 1, ONLINE_WITHIN)
    assert (await w.online(token))[sid] is True  # one tab closed: still online
    await tab2.ws.close()
    await wait_for(lambda: w.online(token), lambda seen: not seen[sid], ONLINE_WITHIN)


async def test_a_rename_reaches_every_tab_of_the_renamed_device(
    world: Callable[..., Awaitable[World]],
) -> None:
    w = await world()
    laptop = await login(w.api, device_name="Laptop")
    sid, token = session_id(laptop), laptop["token"]
    tab1, tab2 = await w.socket(token), await w.socket(token)
    resp = await w.api.patch(
        f"/sessions/{sid}", json={"device_name": "Work"}, headers=bearer(token)
    )
    assert resp.status == 200
    for tab in (tab1, tab2):
        renamed = await tab.change()
        assert (renamed["event"], renamed["session"]["session_id"]) == ("renamed", sid)
        assert renamed["session"]["device_name"] == "Work"


async def test_other_devices_are_told_online_and_offline(
    world: Callable[..., Awaitable[World]],
) -> None:
    w = await world()
    laptop, phone = await login(w.api, device_name="Laptop"), await login(w.api, device_name="P")
    watcher = await w.socket(laptop["token"])
    device = await w.socket(phone["token"])
    online = await watcher.until("sessions.changed")
    assert (online["event"], online["session"]["session_id"]) == ("online", session_id(phone))
    assert online["session"]["online"] is True
    assert online["session"]["device_name"] == "P"
    await device.ws.close()
    offline = await watcher.until("sessions.changed")
    assert (offline["event"], offline["session"]["session_id"]) == ("offline", session_id(phone))
    assert offline["session"]["online"] is False
    await watcher.ws.close()


async def test_a_flapping_device_is_told_at_most_once_per_interval(
    world: Callable[..., Awaitable[World]], clock: ManualClock
) -> None:
    w = await world(presence_notice_interval=5.0)
    laptop, phone = await login(w.api), await login(w.api)
    watcher = await w.socket(laptop["token"])
    first = await w.socket(phone["token"])
    online = await watcher.until("sessions.changed")
    assert (online["event"], online["session"]["session_id"]) == ("online", session_id(phone))
    # Within the interval: closes and reconnects, many times. None is told yet...
    await first.ws.close()
    for _ in range(5):
        again = await w.socket(phone["token"])
        await again.ws.close()
    await wait_for(
        lambda: w.online(phone["token"]), lambda seen: not seen[session_id(phone)], ONLINE_WITHIN
    )
    clock.advance(5)
    # ...then only the latest state, offline, once: a rename marks where the notices stop
    # (without the limit, the reconnects' online and offline would come next).
    offline = await watcher.until("sessions.changed")
    assert (offline["event"], offline["session"]["session_id"]) == ("offline", session_id(phone))
    path = f"/sessions/{session_id(phone)}"
    renamed = await w.api.patch(path, json={"device_name": "P"}, headers=bearer(laptop["token"]))
    assert renamed.status == 200
    assert (await watcher.until("sessions.changed"))["event"] == "renamed"
    back = await w.socket(phone["token"])  # the next change, past the interval, is told
    clock.advance(5)
    online = await watcher.until("sessions.changed")
    assert (online["event"], online["session"]["session_id"]) == ("online", session_id(phone))
    await back.ws.close()
    await watcher.ws.close()


async def test_last_seen_moves_while_the_socket_is_open(
    world: Callable[..., Awaitable[World]], clock: ManualClock
) -> None:
    w = await world()
    body, other = await login(w.api), await login(w.api)
    sid = session_id(body)
    device = await w.socket(body["token"])
    before = body["session"]["last_seen_at"]
    clock.advance(120)  # past the touch interval (60 s), with no request of that session

    async def last_seen() -> str:  # asked by the other session: a request touches its own
        listed = await (await w.api.get("/sessions", headers=bearer(other["token"]))).json()
        return str({s["session_id"]: s for s in listed["sessions"]}[sid]["last_seen_at"])

    await wait_for(last_seen, lambda seen: seen != before, ONLINE_WITHIN)
    await device.ws.close()


async def test_a_killed_worker_leaves_its_sessions_offline_within_the_ttl(
    make_api: MakeApi, aiohttp_client: AiohttpClient, redis_url: str, tmp_path: Path
) -> None:
    api = await make_api()
    watcher_gw = await start_gateway(aiohttp_client, fast(redis_url))
    laptop, phone = await login(api, device_name="Laptop"), await login(api, device_name="Phone")
    watcher = Device(
        await watcher_gw.ws_connect(
            "/ws", protocols=("sessionwire.v1", f"bearer.{laptop['token']}")
        )
    )
    await watcher.ready()
    env = {"PRESENCE_TTL": "3", "PRESENCE_REFRESH": "0.5", "PRESENCE_NOTICE_INTERVAL": "0"}
    with running("workers", redis_url, tmp_path, wait_for="/readyz", **env) as worker:
        async with aiohttp.ClientSession() as http:
            phone_socket = await Device.connect(
                http, f"ws://127.0.0.1:{worker.port}/ws", phone["token"]
            )
            await phone_socket.ready()
            online = await watcher.until("sessions.changed")
            assert (online["event"], online["session"]["device_name"]) == ("online", "Phone")

            async def phone_online() -> bool:
                body = await (await api.get("/sessions", headers=bearer(laptop["token"]))).json()
                return bool({s["device_name"]: s["online"] for s in body["sessions"]}["Phone"])

            assert await phone_online()
            worker.stop(signal.SIGKILL)
            # No close was reported: the presence runs out (3 s), and the watcher's own
            # worker, reporting its user, tells the laptop.
            offline = await watcher.until("sessions.changed", wait=3 + 2 * 0.5 + 3)
            assert (offline["event"], offline["session"]["device_name"]) == ("offline", "Phone")
            assert not await phone_online()
            await phone_socket.ws.close()
    await watcher.ws.close()


async def test_presence_survives_redis_trouble_between_reports(
    world: Callable[..., Awaitable[World]], rdb: redis.Redis
) -> None:
    """Presence lost from Redis (flushed, failed over) comes back with the next report."""
    w = await world()
    body = await login(w.api)
    device = await w.socket(body["token"])
    presence = keys.presence("alice")
    await wait_for(lambda: rdb.zcard(presence), lambda n: n == 1, ONLINE_WITHIN)
    await rdb.delete(presence)
    await wait_for(lambda: rdb.zcard(presence), lambda n: n == 1, ONLINE_WITHIN)
    await device.ws.close()
    await asyncio.sleep(0)


async def test_a_refresh_in_several_parts_reports_every_user(
    world: Callable[..., Awaitable[World]], rdb: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full refresh is grouped and sent a few users at a time; each of them is reported."""
    monkeypatch.setattr(presence_core, "MAX_PIPELINE", 1)
    monkeypatch.setattr(presence_core, "GROUPED_PER_TURN", 1)
    w = await world()
    devices = [await w.socket((await login(w.api, user))["token"]) for user in TEST_USERS]
    held = [keys.presence(user) for user in TEST_USERS]

    async def counts() -> list[int]:
        return [await rdb.zcard(key) for key in held]

    await wait_for(counts, lambda found: found == [1] * len(held), ONLINE_WITHIN)
    await rdb.delete(*held)  # lost: only the refreshes, a pipeline per user, bring it back
    await wait_for(counts, lambda found: found == [1] * len(held), ONLINE_WITHIN)
    for device in devices:
        await device.ws.close()
