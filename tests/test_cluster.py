"""What only a Redis Cluster can do to us: failover, slot moves, outages, pub/sub traffic.

Each destructive test gets a cluster of its own (3 masters, 3 replicas, node timeout 1 s).
Devices sign in through the store (any username, spread over the masters) and talk to an
in-process API and gateway; the cluster's processes are killed and moved for real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from service.api.app import create_app
from service.engine.batcher import ReadBatcher
from service.engine.connect import connected
from service.engine.factory import engine_for
from service.sessions import keys
from service.sessions.store import SessionStore
from service.settings import Settings
from service.users.directory import UserDirectory
from tests.conftest import bearer, free_port, login, make_settings, wait_ready
from tests.devices import Device, Login, connect, metric, sign_in, start_gateway
from tests.processes import process_env, running

if TYPE_CHECKING:
    from tests.rediscluster import LocalCluster

NOTICE_AFTER_SERVED = 2.0  # the contract: told within 2 s of the slot being served again


@dataclass
class Person:
    """A user with a device that controls (it revokes) and devices that listen."""

    controller: Login
    phones: list[tuple[Login, Device]]


@pytest.fixture
async def cluster_client(own_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    async with connected(make_settings(own_cluster.url)) as client:
        assert isinstance(client, RedisCluster)
        yield client


class System(NamedTuple):
    """The API and a gateway in process on the test's own cluster, and its store."""

    settings: Settings
    api: TestClient
    gw: TestClient
    store: SessionStore


StartSystem = Callable[..., Awaitable[System]]


@pytest.fixture
def start_system(
    own_cluster: LocalCluster,
    cluster_client: RedisCluster,
    aiohttp_client: AiohttpClient,
    shared_users: UserDirectory,
) -> StartSystem:
    async def start(**settings_overrides: Any) -> System:
        settings = make_settings(own_cluster.url, **settings_overrides)
        api = await api_on(aiohttp_client, settings, shared_users)
        gw = await start_gateway(aiohttp_client, settings)
        return System(settings, api, gw, SessionStore(cluster_client, settings))

    return start


def users_on(client: RedisCluster, port: int, count: int) -> list[str]:
    """`count` usernames whose keys and channel live on the master at `port`."""
    names = (f"user{i}" for i in range(10_000))
    on_port = (n for n in names if client.get_node_from_key(keys.channel(n)).port == port)
    return [name for name, _ in zip(on_port, range(count), strict=False)]


async def people(
    store: SessionStore, settings: Settings, gw: Any, names: list[str], phones: int
) -> dict[str, Person]:
    found = {}
    for name in names:
        controller = await sign_in(store, settings, name, "controller")
        listening = []
        for n in range(phones):
            login = await sign_in(store, settings, name, f"phone-{n}")
            listening.append((login, await connect(gw, login)))
        found[name] = Person(controller, listening)
    return found


async def api_on(
    aiohttp_client: AiohttpClient, settings: Settings, users: UserDirectory
) -> TestClient:
    return await aiohttp_client(create_app(settings, users=users))


async def told(device: Device, wait: float = 10) -> dict[str, Any]:
    """The session.revoked notice (after any news of sibling devices), then the 4501."""
    notice = await device.until("session.revoked", wait)
    assert await device.closed() == 4501
    return notice


async def revoke(api: TestClient, person: Person, login: Login, statuses: list[int]) -> None:
    """Revoke one device through the API, retrying 503s until it answers it is done."""
    while True:
        resp = await api.delete(f"/sessions/{login.sid}", headers=bearer(person.controller.token))
        statuses.append(resp.status)
        if resp.status in (200, 404):  # 404: a 503'd attempt had revoked it after all
            return
        await asyncio.sleep(0.05)


async def test_a_master_killed_while_devices_listen_and_revocations_continue(
    own_cluster: LocalCluster, cluster_client: RedisCluster, start_system: StartSystem
) -> None:
    settings, api, gw, store = await start_system(max_sessions_per_user=100)
    victim, spared_master, _ = own_cluster.masters()
    doomed = await people(store, settings, gw, users_on(cluster_client, victim, 3), phones=3)
    spared = await people(store, settings, gw, users_on(cluster_client, spared_master, 1), phones=1)
    statuses: list[int] = []
    revoked: set[str] = set()  # sessions the API said are revoked: never accepted again
    token_of = {login.sid: login.token for p in doomed.values() for login, _ in p.phones}
    # One device of each user is revoked before the failure: acknowledged by a replica,
    # so the promoted replica must not bring it back.
    for person in doomed.values():
        login, device = person.phones.pop(0)
        await revoke(api, person, login, statuses)
        revoked.add(login.sid)
        assert (await told(device))["session_id"] == login.sid
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            for sid in list(revoked):
                resp = await api.get("/sessions", headers=bearer(token_of[sid]))
                statuses.append(resp.status)
                assert resp.status in (401, 503), f"revoked session {sid} answered {resp.status}"
            await asyncio.sleep(0.02)

    async def keep_revoking(person: Person) -> list[float]:
        """Revoke the remaining phones one after another, through the failure."""
        done = []
        for login, _ in person.phones:
            await revoke(api, person, login, statuses)
            revoked.add(login.sid)
            done.append(time.monotonic())
        return done

    probing = asyncio.create_task(probe())
    await asyncio.to_thread(own_cluster.kill, victim)  # kill -9
    assert (await api.get("/readyz")).status == 503
    revoking = asyncio.gather(*(keep_revoking(p) for p in doomed.values()))
    await asyncio.to_thread(own_cluster.wait_for_failover, victim)
    served = time.monotonic()
    finished = await asyncio.wait_for(revoking, 30)
    for person, times in zip(doomed.values(), finished, strict=True):
        for (login, device), revoked_at in zip(person.phones, times, strict=True):
            notice = await told(device)
            arrived = time.monotonic()
            assert notice["session_id"] == login.sid and notice["reason"] == "revoked"
            assert arrived - max(served, revoked_at) < NOTICE_AFTER_SERVED
    stop.set()
    await probing
    assert 500 not in statuses and set(statuses) <= {200, 401, 404, 503}
    assert 503 in statuses  # the test did meet the failure
    # The spared user's master never went away: still signed in, still listening.
    ((login, device),) = next(iter(spared.values())).phones
    assert (await api.get("/sessions", headers=bearer(login.token))).status == 200
    await store.revoke(login.username, "one", login.sid, "revoked", None)
    assert (await told(device))["session_id"] == login.sid
    assert (await api.get("/readyz")).status == 200


async def test_a_slot_moved_while_a_device_listens(
    own_cluster: LocalCluster, start_system: StartSystem
) -> None:
    settings, api, gw, store = await start_system()
    laptop = await sign_in(store, settings, "alice", "laptop")
    laptop_ws = await connect(gw, laptop)
    slot = key_slot(keys.channel("alice").encode())
    owner = own_cluster.owner_of_slot(slot)
    target = next(port for port in own_cluster.masters() if port != owner)
    await asyncio.to_thread(own_cluster.reshard, slot, target)  # keys, log and channel move
    phone = await sign_in(store, settings, "alice", "phone")
    news = await laptop_ws.expect("sessions.changed")
    assert news["event"] == "created" and news["session"]["session_id"] == phone.sid
    resp = await api.delete(f"/sessions/{laptop.sid}", headers=bearer(phone.token))
    assert resp.status == 200
    assert (await told(laptop_ws))["reason"] == "revoked"
    assert (await api.get("/readyz")).status == 200


async def test_a_cluster_wide_outage_and_return(
    own_cluster: LocalCluster, start_system: StartSystem
) -> None:
    settings, api, gw, store = await start_system()
    logins = [await sign_in(store, settings, f"user{i}", "phone") for i in range(6)]
    devices = [await connect(gw, one) for one in logins]
    await asyncio.to_thread(own_cluster.stop_all)  # no persistence: every session is gone
    for one in logins[:2]:
        assert (await api.get("/sessions", headers=bearer(one.token))).status == 503
    assert (await api.get("/readyz")).status == 503
    assert (await gw.get("/readyz")).status == 503
    await asyncio.to_thread(own_cluster.start_all)
    back = time.monotonic()
    notices = await asyncio.gather(*(told(device) for device in devices))
    assert time.monotonic() - back < NOTICE_AFTER_SERVED
    for one, notice in zip(logins, notices, strict=True):
        assert notice["session_id"] == one.sid and notice["reason"] == "expired"
    for client in (api, gw):
        await wait_ready(client)
    assert (await api.get("/sessions", headers=bearer(logins[0].token))).status == 401


async def bus_counters(cluster: LocalCluster) -> tuple[int, int]:
    """Messages sent over the cluster bus for PUBLISH and for SPUBLISH, all nodes summed."""
    publish = shard = 0
    for url in cluster.urls:
        async with connected(make_settings(url, redis_cluster="no")) as node:
            stats = await node.execute_command("CLUSTER INFO")  # parsed into a dict
        publish += int(stats.get("cluster_stats_messages_publish_sent", 0))
        shard += int(stats.get("cluster_stats_messages_publishshard_sent", 0))
    return publish, shard


async def test_events_travel_on_their_shard_only(
    redis_cluster: LocalCluster, cluster_url: str
) -> None:
    settings = make_settings(cluster_url, max_sessions_per_user=100)
    async with connected(settings) as client:
        store = SessionStore(client, settings)
        publish_before, shard_before = await bus_counters(redis_cluster)
        for i in range(30):
            await sign_in(store, settings, f"user{i}", "phone")
        publish_after, shard_after = await bus_counters(redis_cluster)
    assert publish_after == publish_before  # plain PUBLISH would reach every node
    # Each event goes to its master's one replica, never to the other nodes: twice, on the
    # user's channel and on the slot's wake channel of events out (docs/EVENTS.md).
    assert (
        2 * 30
        <= shard_after - shard_before
        <= 2 * 30 * len(redis_cluster.replicas_of(redis_cluster.masters()[0]))
    )


async def test_revocations_are_acknowledged_by_a_replica(
    own_cluster: LocalCluster,
    cluster_client: RedisCluster,
    aiohttp_client: AiohttpClient,
    shared_users: UserDirectory,
) -> None:
    settings = make_settings(own_cluster.url, max_sessions_per_user=100)
    api = await api_on(aiohttp_client, settings, shared_users)
    store = SessionStore(cluster_client, settings)
    unacknowledged = "sessionwire_revocations_unacknowledged_total"
    phone = await sign_in(store, settings, "alice", "phone")
    laptop = await sign_in(store, settings, "alice", "laptop")
    resp = await api.delete(f"/sessions/{phone.sid}", headers=bearer(laptop.token))
    assert resp.status == 200
    assert await metric(api, unacknowledged) == 0
    (replica,) = own_cluster.replicas_of(own_cluster.node_for_key(keys.channel("alice")))
    await asyncio.to_thread(own_cluster.kill, replica)
    tablet = await sign_in(store, settings, "alice", "tablet")
    resp = await api.delete(f"/sessions/{tablet.sid}", headers=bearer(laptop.token))
    assert resp.status == 200  # still revoked, only not acknowledged
    assert (await api.get("/sessions", headers=bearer(tablet.token))).status == 401
    assert await metric(api, unacknowledged) == 1


async def test_256_concurrent_requests_on_a_cluster(
    cluster_url: str, aiohttp_client: AiohttpClient, shared_users: UserDirectory
) -> None:
    settings = make_settings(cluster_url, max_sessions_per_user=100)
    api = await api_on(aiohttp_client, settings, shared_users)
    async with connected(settings) as client:
        store = SessionStore(client, settings)
        logins = [await sign_in(store, settings, f"user{i}", "phone") for i in range(32)]
    requests = [
        api.get("/sessions", headers=bearer(logins[n % len(logins)].token)) for n in range(256)
    ]
    statuses = [resp.status for resp in await asyncio.gather(*requests)]
    assert statuses == [200] * 256


@pytest.mark.parametrize("setting", ["auto", "yes"])
async def test_the_cluster_is_recognized(
    cluster_url: str, aiohttp_client: AiohttpClient, shared_users: UserDirectory, setting: str
) -> None:
    api = await api_on(
        aiohttp_client, make_settings(cluster_url, redis_cluster=setting), shared_users
    )
    assert (await api.get("/readyz")).status == 200
    logins = [await login(api, name) for name in ("alice", "bob", "carol")]
    for body in logins:  # users on different slots, through one client
        assert (await api.get("/sessions", headers=bearer(body["token"]))).status == 200


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_an_idle_worker_on_a_cluster_rests_and_stops_when_told(
    cluster_url: str, tmp_path: Path
) -> None:
    with running("workers", cluster_url, tmp_path) as worker:
        assert worker.proc is not None
        before = cpu_seconds(worker.proc.pid)
        await asyncio.sleep(0.9)  # nothing subscribed: its readers must wait, not spin
        assert cpu_seconds(worker.proc.pid) - before < 0.3  # a spinning loop burns ~0.9
        started = time.monotonic()
        assert worker.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 3
    said = worker.log()  # once, and rightly
    assert said.count("connected to") == 1, said
    assert "connected to a Redis Cluster of 3 masters at redis://127.0.0.1:" in said


def test_a_cluster_url_naming_another_database_is_refused(cluster_url: str) -> None:
    env = process_env(cluster_url.replace("/0", "/2"), GATEWAY_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "workers"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "sessionwire worker: configuration error: REDIS_URL names a database other than 0;"
        " a Redis Cluster has only 0"
    )
    assert "Traceback" not in done.stderr


async def test_read_batches_split_by_master_and_follow_a_moved_slot(
    own_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    """One batch of reads for users on every master: each request gets its own reply,
    before and after one user's slot moves to another master."""
    names = [name for port in own_cluster.masters() for name in users_on(cluster_client, port, 4)]
    for name in names:
        await cluster_client.hset(f"sw:{{u:{name}}}:s:x", mapping={"n": name})
    batcher = ReadBatcher(engine_for(cluster_client))

    async def read_all() -> list[str]:
        reads = (batcher.execute("HGETALL", f"sw:{{u:{name}}}:s:x") for name in names)
        replies = await asyncio.wait_for(asyncio.gather(*reads), 10)
        return [reply["n"] for reply in replies]

    assert await read_all() == names
    assert batcher.batches_sent == 1  # one batch, split into a pipeline per master
    moved = names[0]
    slot = key_slot(f"sw:{{u:{moved}}}:s:x".encode())
    target = next(port for port in own_cluster.masters() if port != own_cluster.owner_of_slot(slot))
    await asyncio.to_thread(own_cluster.reshard, slot, target)
    assert await read_all() == names  # the stale map's MOVED is followed
