"""Expiry: idle or too old sessions end as `expired`, once, promptly, with a notice."""

from __future__ import annotations

import pytest
import redis.asyncio as redis
from pytest_aiohttp import AiohttpClient

from service.sessions import eventlog, keys
from service.sessions.lease import sweeper_lease
from service.sessions.store import SessionStore
from service.settings import Settings
from tests.conftest import ENGINES, ManualClock, RedisServer, make_settings, on_engine
from tests.devices import connect, metric, sign_in, start_gateway, wait_for


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


@pytest.fixture
def client(rdb: redis.Redis) -> redis.Redis:
    """The per-test Redis (conftest's `rdb`), under the name these tests use."""
    return rdb


IDLE = 60  # seconds; the tests move the clock past it rather than wait


@pytest.fixture
def short(redis_url: str) -> Settings:
    # An open socket is activity (its worker's presence report moves last seen on): here
    # only the report on connect does, none later, so a session can idle out under a socket.
    return make_settings(
        redis_url, session_idle_timeout=IDLE, max_sessions_per_user=100, presence_refresh=3600.0
    )


async def revoked_events(client: redis.Redis, user: str) -> list[str]:
    """Session ids of every session.revoked event in the user's log."""
    entries = await client.xrange(keys.event_log(user))
    events = [eventlog.decode_entry(entry_id, fields) for entry_id, fields in entries]
    return [e.session_id for e in events if e.type == "session.revoked"]


async def test_sweeper_expires_idle_session_with_notice(
    aiohttp_client: AiohttpClient, short: Settings, client: redis.Redis, clock: ManualClock
) -> None:
    gw = await start_gateway(aiohttp_client, short, clock=clock)
    store = SessionStore(client, short, clock)
    phone = await sign_in(store, short, "alice", "phone")
    device = await connect(gw, phone)  # the check at connect counts as activity
    clock.advance(IDLE)
    notice = await device.revoked()
    assert notice["reason"] == "expired" and notice["by"] is None
    tomb = await store.tombstone("alice", phone.sid)
    assert tomb is not None and tomb.at == clock.now
    # The sweeper drops the entry once the script (acknowledged by a replica) is done:
    # the notice, published by the script, may come first.
    await wait_for(lambda: client.zcard(keys.due_index_of("alice")), lambda n: n == 0)
    await wait_for(lambda: metric(gw, "sessionwire_sessions_expired_total"), lambda n: n == 1)


async def test_sweeper_reschedules_an_active_session(
    aiohttp_client: AiohttpClient, short: Settings, client: redis.Redis, clock: ManualClock
) -> None:
    gw = await start_gateway(aiohttp_client, short, clock=clock)
    store = SessionStore(client, short, clock)
    login = await sign_in(store, short, "alice", "phone")
    member = keys.due_member("alice", login.sid)
    due_index = keys.due_index_of("alice")
    first = await client.zscore(due_index, member)
    clock.advance(IDLE / 2)
    device = await connect(gw, login)  # activity moves the deadline on, not the index
    presence = keys.presence("alice")
    await wait_for(lambda: client.zcard(presence), lambda n: n == 1)  # reported, at IDLE / 2
    clock.advance(IDLE / 2)  # the first deadline: the sweeper looks, and reschedules
    await wait_for(lambda: client.zscore(due_index, member), lambda due: due != first)
    assert await client.zscore(due_index, member) == first + IDLE / 2 * 1000
    clock.advance(IDLE / 2)
    assert (await device.revoked())["reason"] == "expired"


async def test_sweeper_two_workers_never_double_notify(
    aiohttp_client: AiohttpClient, short: Settings, client: redis.Redis, clock: ManualClock
) -> None:
    workers = [await start_gateway(aiohttp_client, short, clock=clock) for _ in range(2)]
    store = SessionStore(client, short, clock)
    logins = [
        await sign_in(store, short, user, f"{user}-{n}")
        for user in ("alice", "bob", "carol")
        for n in range(2)
    ]
    devices = [await connect(workers[n % 2], login) for n, login in enumerate(logins)]
    clock.advance(IDLE)
    for login, device in zip(logins, devices, strict=True):
        notice = await device.until("session.revoked")
        assert notice["session_id"] == login.sid and notice["reason"] == "expired"
        assert await device.closed() == 4501
    for user in ("alice", "bob", "carol"):
        ids = await revoked_events(client, user)
        assert sorted(ids) == sorted(lg.sid for lg in logins if lg.username == user)

    async def swept() -> float:  # counted once each script is acknowledged by a replica
        return sum([await metric(gw, "sessionwire_sessions_expired_total") for gw in workers])

    assert await wait_for(swept, lambda n: n >= len(logins)) == len(logins)


async def test_sweeper_survives_bad_entries(
    aiohttp_client: AiohttpClient, short: Settings, client: redis.Redis, clock: ManualClock
) -> None:
    await client.zadd(keys.due_index(0), {"no-space-here": 0, "ghost unknown-session": 0})
    await client.set(keys.session_index("broken"), "not a zset")  # the script will fail
    await client.zadd(keys.due_index_of("broken"), {keys.due_member("broken", "x"): 0})
    gw = await start_gateway(aiohttp_client, short, clock=clock)
    store = SessionStore(client, short, clock)
    login = await sign_in(store, short, "alice", "phone")
    device = await connect(gw, login)
    clock.advance(IDLE)
    assert (await device.revoked())["reason"] == "expired"
    # The broken entry is put off, not retried in a tight loop; the others are gone.
    broken = await client.zscore(keys.due_index_of("broken"), keys.due_member("broken", "x"))
    assert broken is not None and broken > clock.now + 30_000
    assert await client.zscore(keys.due_index(0), "ghost unknown-session") is None


async def test_sweeper_lease_has_one_holder(client: redis.Redis) -> None:
    first, second = sweeper_lease(client), sweeper_lease(client)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # renewed by its owner only
    assert await client.get(keys.SWEEPER_LEASE) == first.token
    await second.release()  # not the owner: no effect
    assert await client.get(keys.SWEEPER_LEASE) == first.token
    await first.release()
    assert await second.acquire()
    assert not await first.acquire()


async def test_sweeper_survives_a_redis_outage(
    aiohttp_client: AiohttpClient, own_redis: RedisServer, clock: ManualClock
) -> None:
    settings = make_settings(own_redis.url, session_idle_timeout=IDLE)
    gw = await start_gateway(aiohttp_client, settings, clock=clock)
    own_redis.stop()  # the sweeper's passes fail meanwhile; it must keep going
    own_redis.start()
    admin = redis.Redis.from_url(own_redis.url, decode_responses=True)
    store = SessionStore(admin, settings, clock)
    login = await sign_in(store, settings, "alice", "phone")
    device = await connect(gw, login)
    clock.advance(IDLE)
    assert (await device.revoked(wait=6))["reason"] == "expired"
    await admin.aclose()
