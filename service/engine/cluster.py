"""A Redis Cluster: masters by the slot map, which is refreshed when it turns out stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, ResponseError

from service.engine.base import Command, Engine, Node, NodeGone

REFRESH_EVERY = 0.1  # a storm of "refresh" requests becomes one CLUSTER SLOTS per this


class ClusterEngine(Engine):
    expects_replicas = True

    def __init__(self, client: RedisCluster) -> None:
        super().__init__(client)
        self.cluster = client
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    def masters(self) -> list[Node]:
        return [Node(node.name) for node in self.cluster.get_primaries()]

    def node_of(self, key: str) -> Node:
        return Node(self.cluster.get_node_from_key(key).name)

    def group(self, channels: Iterable[str]) -> list[list[str]]:
        """One slot per group: several slots in one SSUBSCRIBE is a CROSSSLOT error."""
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        return list(by_slot.values())

    def pubsub_connection(self, node: Node) -> AbstractConnection:
        handle = self._handle(node)
        return handle.connection_class(**{**handle.connection_kwargs, "protocol": 2})

    async def run_on(
        self, node: Node, commands: list[Command], *, repeatable: bool = False
    ) -> list[Any]:
        """On one connection of the master itself: the cluster client's pipeline would
        refuse EVALSHA, send WAIT to any node, and retry a dead node for seconds (closing
        every connection of the client each time) where a request must get its 503 at once.
        Replies lost with a broken connection come back as ConnectionErrors."""
        pipeline = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
        await self._handle(node).execute_pipeline(pipeline)
        return [c.result for c in pipeline]

    async def run_routed(self, command: Command) -> Any:
        return await self.cluster.execute_command(*command)

    async def refresh(self) -> None:
        """Concurrent callers share one reload, and reloads are at most one per
        REFRESH_EVERY."""
        if self._refreshing is None:
            wait = max(0.0, self._refreshed_at + REFRESH_EVERY - time.monotonic())
            self._refreshing = asyncio.create_task(self._reload(wait))
        await asyncio.shield(self._refreshing)

    async def _reload(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            await self.cluster.nodes_manager.initialize()
        finally:
            self._refreshed_at = time.monotonic()
            self._refreshing = None

    async def check(self) -> None:
        """PING on a cluster client reaches one node: ask every master, then the state."""
        await self.cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        info = await self.cluster.cluster_info(target_nodes=RedisCluster.RANDOM)
        if info.get("cluster_state") != "ok":
            raise ClusterDownError(
                f"cluster_state {info.get('cluster_state')}, "
                f"{info.get('cluster_slots_ok', '?')} of 16384 slots served"
            )

    async def _count_replicas(self, node: Node) -> int:
        try:
            info: Any = await self.cluster.info("replication", target_nodes=self._handle(node))
        except ResponseError:
            return 0
        return int(info.get("connected_slaves", 0))

    def _handle(self, node: Node) -> ClusterNode:
        """The cluster client's own handle of a master."""
        found = self.cluster.get_node(node_name=node.name)
        if found is None:
            raise NodeGone(node)
        return found
