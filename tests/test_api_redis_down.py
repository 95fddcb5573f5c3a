"""Redis stopped mid-test: 503 redis_unavailable where Redis is needed; recovery without restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio.connection import Connection

from service.runtime.appkeys import STORE
from service.users.passwords import PasswordChecker
from tests.conftest import PASSWORD, RedisServer, bearer, login, wait_ready

MakeApi = Callable[..., Awaitable[TestClient]]


async def test_redis_down_then_back(make_api: MakeApi, own_redis: RedisServer) -> None:
    api = await make_api(url=own_redis.url)
    mine = await login(api, device_name="Mine")
    other = await login(api, device_name="Other")
    auth = bearer(mine["token"])

    own_redis.stop()
    calls = [
        ("POST", "/login", {"json": {"username": "alice", "password": PASSWORD}}),
        ("POST", "/login", {"json": {"username": "alice", "password": "wrong"}}),
        ("POST", "/login", {"data": {"username": "bob", "password": PASSWORD}}),
        ("GET", "/me", {"headers": auth}),
        ("GET", "/sessions", {"headers": auth}),
        ("DELETE", f"/sessions/{other['session']['session_id']}", {"headers": auth}),
        ("POST", "/sessions/revoke-others", {"headers": auth}),
        (
            "PATCH",
            f"/sessions/{other['session']['session_id']}",
            {"headers": auth, "json": {"device_name": "Renamed"}},
        ),
        ("POST", "/logout-all", {"headers": auth}),
        ("POST", "/logout", {"headers": auth}),
        ("POST", "/socket-ticket", {"headers": auth}),
        ("GET", "/me", {"headers": {"Cookie": f"__Host-sessionwire={mine['token']}"}}),
        ("GET", "/readyz", {}),
    ]
    for method, path, kwargs in calls:
        resp = await api.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert resp.status == 503, (method, path, await resp.text())
        assert resp.content_type == "application/problem+json"
        body = await resp.json(content_type=None)
        assert body["code"] == "redis_unavailable"
        assert resp.headers["Retry-After"] == "1"
    # What needs no Redis still answers; a token problem is still a 401, not a 503.
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/openapi.json")).status == 200
    assert (await api.get("/")).status == 200
    assert (await api.get("/me")).status == 401
    assert (await api.post("/login", json={"username": 1})).status == 422
    metrics = await (await api.get("/metrics")).text()
    assert "sessionwire_redis_unavailable_total 12.0" in metrics

    own_redis.start()  # same port, empty: this server keeps nothing on disk
    await wait_ready(api)
    assert (await api.get("/me", headers=auth)).status == 401  # its data is gone
    fresh = await login(api)
    me = await api.get("/me", headers=bearer(fresh["token"]))
    assert me.status == 200
    assert (await me.json())["username"] == "alice"
    listed = await (await api.get("/sessions", headers=bearer(fresh["token"]))).json()
    assert [s["session_id"] for s in listed["sessions"]] == [fresh["session"]["session_id"]]
    logout = await api.post("/logout", headers=bearer(fresh["token"]))
    assert logout.status == 200


async def test_redis_restarted_between_requests_on_pooled_connections(
    make_api: MakeApi, own_redis: RedisServer, roomy_passwords: PasswordChecker
) -> None:
    # 8 sign-ins at once
    api = await make_api(url=own_redis.url, login_max_failures=8, passwords=roomy_passwords)
    await asyncio.gather(*(login(api, device_name=f"D{i}") for i in range(8)))
    own_redis.stop()
    own_redis.start()
    # The pool's connections all died; the next requests must not fail for it.
    fresh = await login(api)
    assert (await api.get("/me", headers=bearer(fresh["token"]))).status == 200


async def test_a_connection_that_breaks_inside_the_client_is_a_503(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's connections race while a node fails: one dropped by another task while it
    connects raises AttributeError from its vanished writer, inside redis-py (seen in a
    cluster failover). That is Redis unavailable, never a 500; the next request is served."""
    api = await make_api()
    signed_in = await login(api)
    store = api.app[STORE]

    async def vanished_writer(*args: Any) -> None:
        await Connection()._send_packed_command([b"PING"])  # the very line that raised

    monkeypatch.setattr(store, "check", vanished_writer)
    resp = await api.get("/me", headers=bearer(signed_in["token"]))
    assert (resp.status, (await resp.json())["code"]) == (503, "redis_unavailable")
    assert "unhandled error" not in caplog.text
    monkeypatch.undo()
    assert (await api.get("/me", headers=bearer(signed_in["token"]))).status == 200


async def test_production_warns_when_redis_does_not_persist(
    make_api: MakeApi, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.engine.connect")
    await make_api(url=own_redis.url, app_env="production")
    assert "Redis persistence (AOF) is off" in caplog.text
    caplog.clear()
    with redis.Redis(port=own_redis.port) as admin:
        admin.config_set("appendonly", "yes")
        admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-config"],
        )
    try:
        await make_api(url=own_redis.url, app_env="production")
        assert "persistence" not in caplog.text
        limited = f"redis://limited:pw@127.0.0.1:{own_redis.port}/0"
        await make_api(url=limited, app_env="production")
        assert "could not check Redis persistence (CONFIG GET refused" in caplog.text
        assert "is off" not in caplog.text
    finally:
        with redis.Redis(port=own_redis.port) as admin:
            admin.config_set("appendonly", "no")  # or its shutdown waits on the AOF


async def test_development_does_not_ask(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.engine.connect")
    await make_api()
    assert "persistence" not in caplog.text
