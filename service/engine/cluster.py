"""A Redis Cluster: masters by the slot map, which is refreshed when it turns out stale."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        Replies lost with a broken connection come back as ConnectionErrors (or, past the
        connection's socket timeout, TimeoutErrors). Unlike the node's own
        `execute_pipeline`, the batch has one timer, not one per reply."""
        handle = self._handle(node)
        conn = handle.acquire_connection()
        try:
            await handle.disconnect_if_needed(conn)
            await conn.send_packed_command(conn.pack_commands(commands))
            return await _replies(conn, commands, handle.response_callbacks, node)
        finally:
            try:
                await handle.disconnect_if_needed(conn)
            finally:
                handle.release(conn)

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


async def _replies(
    conn: AbstractConnection,
    commands: list[Command],
    callbacks: dict[str, Callable[..., Any]],
    node: Node,
) -> list[Any]:
    """Each command's reply (through the client's response callback), or its error."""
    results: list[Any] = []
    try:
        async with asyncio.timeout(conn.socket_timeout):
            for command in commands:
                try:
                    reply = await conn.read_response(timeout=math.inf)
                except (RedisError, OSError) as exc:  # this command's answer, or a lost one
                    results.append(exc)
                    continue
                callback = callbacks.get(str(command[0]).upper())
                results.append(callback(reply) if callback else reply)
    except TimeoutError:
        await conn.disconnect()
        lost = RedisTimeoutError(f"Timeout reading from {node.name}")
        results += [lost] * (len(commands) - len(results))
    return results
