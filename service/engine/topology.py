"""Which Redis node owns what: one node for a single server, the slot map for a cluster.

The worker keeps one pub/sub connection per master and subscribes each user's channel on
the master that owns its slot; the store asks how many replicas a master has before it
waits for one; readiness asks whether every master answers. A single server is the
degenerate case (one master, every slot), so both run the same code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, ResponseError

from service.engine.connect import RedisClient

log = logging.getLogger(__name__)

SUBSCRIBE_CHUNK = 500  # channels per SSUBSCRIBE on a single server
REFRESH_EVERY = 0.1  # a storm of "refresh" requests becomes one CLUSTER SLOTS per this
REPLICAS_TTL = 5.0  # seconds a master's replica count is trusted


@dataclass(frozen=True, slots=True)
class Node:
    """A master, by address; stable across refreshes while it stays a master."""

    name: str  # "host:port", or the socket path


class Topology:
    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._replicas: dict[Node, tuple[float, int]] = {}

    # -- where things are ----------------------------------------------------------------

    def masters(self) -> list[Node]:
        if isinstance(self.client, RedisCluster):
            return [Node(node.name) for node in self.client.get_primaries()]
        return [self._single_node()]

    def node_of(self, key: str) -> Node:
        if isinstance(self.client, RedisCluster):
            return Node(self.client.get_node_from_key(key).name)
        return self._single_node()

    def slot_of(self, key: str) -> int:
        return key_slot(key.encode())

    def group(self, channels: Iterable[str]) -> list[list[str]]:
        """Channels in groups that one SSUBSCRIBE may carry: one slot each on a cluster
        (several slots in one command is a CROSSSLOT error), chunks on a single server."""
        if not self.cluster:
            names = list(channels)
            return [names[i : i + SUBSCRIBE_CHUNK] for i in range(0, len(names), SUBSCRIBE_CHUNK)]
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        return list(by_slot.values())

    def pubsub_connection(self, node: Node) -> AbstractConnection:
        """A new plain connection to `node` for sharded pub/sub.

        RESP2, because redis-py 8 speaks RESP3 by default and a plain connection then
        drops push messages (subscription confirmations, smessages) unless asked for them.
        """
        if isinstance(self.client, RedisCluster):
            cluster_node = self._cluster_node(node)
            return cluster_node.connection_class(
                **{**cluster_node.connection_kwargs, "protocol": 2}
            )
        pool = self.client.connection_pool
        return pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})

    # -- keeping the map fresh -----------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the slot map (a cluster's; nothing to do for one server). Concurrent
        callers share one reload, and reloads are at most one per REFRESH_EVERY."""
        if not isinstance(self.client, RedisCluster):
            return
        if self._refreshing is None:
            wait = max(0.0, self._refreshed_at + REFRESH_EVERY - time.monotonic())
            self._refreshing = asyncio.create_task(self._reload(wait))
        await asyncio.shield(self._refreshing)

    async def _reload(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            await self.client.nodes_manager.initialize()  # type: ignore[union-attr]
        finally:
            self._refreshed_at = time.monotonic()
            self._refreshing = None

    # -- health ----------------------------------------------------------------------------

    async def check(self) -> None:
        """Raise a REDIS_DOWN error unless every master answers and every slot is served."""
        if not isinstance(self.client, RedisCluster):
            await self.client.ping()
            return
        await self.client.ping(target_nodes=RedisCluster.PRIMARIES)
        info = await self.client.cluster_info(target_nodes=RedisCluster.RANDOM)
        if info.get("cluster_state") != "ok":
            raise_cluster_down(info)

    async def replicas(self, node: Node) -> int:
        """How many replicas are connected to `node` (cached for a few seconds)."""
        now = time.monotonic()
        seen = self._replicas.get(node)
        if seen is not None and now - seen[0] < REPLICAS_TTL:
            return seen[1]
        count = await self._count_replicas(node)
        self._replicas[node] = (now, count)
        return count

    async def _count_replicas(self, node: Node) -> int:
        try:
            if isinstance(self.client, RedisCluster):
                target = self._cluster_node(node)
                info: Any = await self.client.info("replication", target_nodes=target)
            else:
                info = await self.client.info("replication")
        except ResponseError:  # a server without INFO (fakeredis) has no replicas
            return 0
        return int(info.get("connected_slaves", 0))

    # -- details -----------------------------------------------------------------------

    def cluster_node(self, node: Node) -> ClusterNode:
        """The cluster client's own handle of a master (cluster only)."""
        return self._cluster_node(node)

    def _cluster_node(self, node: Node) -> ClusterNode:
        assert isinstance(self.client, RedisCluster)
        found = self.client.get_node(node_name=node.name)
        if found is None:
            raise NodeGone(node)
        return found

    def _single_node(self) -> Node:
        assert isinstance(self.client, redis.Redis)
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return Node(str(kwargs["path"]))
        return Node(f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")


class NodeGone(Exception):
    """The node is no longer in the cluster's map (it failed over or left)."""

    def __init__(self, node: Node) -> None:
        super().__init__(f"{node.name} is no longer a master")
        self.node = node


def raise_cluster_down(info: dict[str, Any]) -> None:
    raise ClusterDownError(
        f"cluster_state {info.get('cluster_state')}, "
        f"{info.get('cluster_slots_ok', '?')} of 16384 slots served"
    )
