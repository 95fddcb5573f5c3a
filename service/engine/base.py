"""The engine: which Redis node owns what, and how to talk to one node directly.

One interface, two implementations (service/engine/single.py, service/engine/cluster.py),
as broadcaster does with its backends: the worker keeps one pub/sub connection per master
and subscribes each user's channel on the master that owns its slot; the read batcher and
the acknowledged writes send commands straight to the node that holds their key; the store
asks how many replicas a master has before it waits for one; readiness asks whether every
master answers. A single server is the degenerate case: one master, every slot.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from service.engine.connect import RedisClient

REPLICAS_TTL = 5.0  # seconds a master's replica count is trusted

Command = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Node:
    """A master, by address; stable across refreshes while it stays a master."""

    name: str  # "host:port", or the socket path


class NodeGone(Exception):
    """The node is no longer in the cluster's map (it failed over or left)."""

    def __init__(self, node: Node) -> None:
        super().__init__(f"{node.name} is no longer a master")
        self.node = node


class Engine(ABC):
    """One Redis server or a Redis Cluster, as the rest of the code needs to know it."""

    # A cluster master is expected to have a replica; without one it is degraded.
    expects_replicas = False

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._replicas: dict[Node, tuple[float, int]] = {}

    # -- where things are ----------------------------------------------------------------

    @abstractmethod
    def masters(self) -> list[Node]: ...

    @abstractmethod
    def node_of(self, key: str) -> Node: ...

    def slot_of(self, key: str) -> int:
        return key_slot(key.encode())

    @abstractmethod
    def group(self, channels: Iterable[str]) -> list[list[str]]:
        """Channels in groups that one SSUBSCRIBE may carry."""

    @abstractmethod
    def pubsub_connection(self, node: Node) -> AbstractConnection:
        """A new plain connection to `node`, for sharded pub/sub.

        RESP2, because redis-py 8 speaks RESP3 by default and a plain connection then
        drops push messages (subscription confirmations, smessages) unless asked for them.
        """

    # -- talking to one node ---------------------------------------------------------------

    @abstractmethod
    async def run_on(
        self, node: Node, commands: list[Command], *, repeatable: bool = False
    ) -> list[Any]:
        """Send `commands` in one write on one connection of `node`; their replies in order.

        An error the node answers to a command is that command's reply (MOVED/ASK are
        `AskError`s); a connection that fails raises, or is a `ConnectionError` reply for
        the commands whose answers it lost. `repeatable` commands (reads) are sent once
        more on a fresh connection when the first one breaks. NodeGone if `node` left.
        """

    @abstractmethod
    async def run_routed(self, command: Command) -> Any:
        """One command the client's own way: it follows redirects and retries."""

    # -- keeping the map fresh, health -----------------------------------------------------

    @abstractmethod
    async def refresh(self) -> None:
        """Reload the slot map (a cluster's; nothing to do for one server)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise a REDIS_DOWN error unless every master answers and every slot is served."""

    async def replicas(self, node: Node) -> int:
        """How many replicas are connected to `node` (cached for a few seconds)."""
        now = time.monotonic()
        seen = self._replicas.get(node)
        if seen is not None and now - seen[0] < REPLICAS_TTL:
            return seen[1]
        count = await self._count_replicas(node)
        self._replicas[node] = (now, count)
        return count

    @abstractmethod
    async def _count_replicas(self, node: Node) -> int: ...
