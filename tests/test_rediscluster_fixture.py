"""The Redis Cluster fixture does what tests rely on: routing, failover, reshard, outage."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

if TYPE_CHECKING:
    from tests.rediscluster import LocalCluster


def plain(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True)


async def test_shared_cluster_routes_keys(cluster_url: str, redis_cluster: LocalCluster) -> None:
    assert len(redis_cluster.masters()) == 3
    assert len(redis_cluster.replicas()) == 3
    client = aioredis.RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        assert await client.dbsize() == 0  # emptied for this test
        users = [f"{{u:user{i}}}:sessions" for i in range(30)]
        for key in users:
            await client.set(key, "x")
        owners = {redis_cluster.node_for_key(key) for key in users}
        assert owners == set(redis_cluster.masters())  # 30 keys land on every master
        for key in users:
            with plain(redis_cluster.node_for_key(key)) as node:
                assert node.get(key) == "x"
    finally:
        await client.aclose()


async def test_shared_cluster_is_flushed_between_tests(cluster_url: str) -> None:
    client = aioredis.RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        assert await client.dbsize() == 0
        await client.set("{u:alice}:left-behind", "1")
    finally:
        await client.aclose()


async def test_kill_failover_and_restart(own_cluster: LocalCluster) -> None:
    key = "{u:alice}:session"
    master = own_cluster.node_for_key(key)
    [replica] = own_cluster.replicas_of(master)
    with plain(master) as node:
        node.set(key, "kept")
        assert node.wait(1, 1000) == 1  # on the replica before the kill

    started = time.monotonic()
    await asyncio.to_thread(own_cluster.kill, master)
    promoted = await asyncio.to_thread(own_cluster.wait_for_failover, master)
    assert promoted == replica
    assert time.monotonic() - started < 10
    assert own_cluster.node_for_key(key) == replica
    assert master not in own_cluster.masters() + own_cluster.replicas()

    client = aioredis.RedisCluster.from_url(own_cluster.url, decode_responses=True)
    try:
        assert await client.get(key) == "kept"
    finally:
        await client.aclose()

    await asyncio.to_thread(own_cluster.restart, master)
    assert own_cluster.replicas_of(replica) == [master]  # back, as the replica
    assert len(own_cluster.masters()) == 3


async def test_reshard_one_slot_then_outage(own_cluster: LocalCluster) -> None:
    keys = [f"{{u:bob}}:{i}" for i in range(250)]  # more than one MIGRATE batch
    slot = key_slot(keys[0].encode())
    source = own_cluster.owner_of_slot(slot)
    target = next(port for port in own_cluster.masters() if port != source)
    client = aioredis.RedisCluster.from_url(own_cluster.url, decode_responses=True)
    try:
        for key in keys:
            await client.set(key, key)

        await asyncio.to_thread(own_cluster.reshard, slot, target)
        assert own_cluster.owner_of_slot(slot) == target
        with plain(target) as node:
            assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
        assert await client.get(keys[-1]) == keys[-1]  # the client follows the MOVED

        url = own_cluster.url
        masters = set(own_cluster.masters())
        await asyncio.to_thread(own_cluster.stop_all)
        assert own_cluster.live_ports == []
        await asyncio.to_thread(own_cluster.start_all)
        assert set(own_cluster.masters()) == masters  # same cluster, same roles
        assert own_cluster.url == url
        assert own_cluster.owner_of_slot(slot) == target  # the reshard survived in nodes.conf
        # No persistence: an outage loses the data, and the client finds the nodes again.
        assert await client.get(keys[0]) is None
    finally:
        await client.aclose()
