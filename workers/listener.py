"""The worker's live feed: one sharded pub/sub reader per master, each user on the master
that owns the slot of the user's channel.

Pub/sub is at-most-once; what a reader misses (a lost connection, a failover, a slot that
moved) is replayed from the users' logs by `CatchUp`, for that node's users only. The
listener follows the engine: a reader for every master, and a user whose slot moved is
subscribed on its new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.engine.base import Engine, Node
from service.engine.errors import REDIS_DOWN
from service.sessions import keys
from workers.catchup import CatchUp
from workers.conn import Conn
from workers.hub import Hub
from workers.metrics import Metrics
from workers.shard_reader import BACKOFF, ShardReader
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

RECHECK_EVERY = 5.0  # seconds between engine checks when nothing asks for one


class Listener:
    """`join`/`leave` are called for every socket; `run` follows the engine."""

    def __init__(self, engine: Engine, hub: Hub, catch_up: CatchUp, metrics: Metrics):
        self.engine, self.hub, self.catch_up, self.metrics = engine, hub, catch_up, metrics
        self.readers: dict[Node, ShardReader] = {}
        self._tasks: dict[Node, asyncio.Task[None]] = {}
        self._home: dict[str, Node] = {}  # user -> the node whose reader holds the user
        self._replace: set[str] = set()  # users whose subscription went away unasked
        self._look = asyncio.Event()  # the engine may have changed: look again

    @property
    def ready(self) -> bool:
        """Every master has a live pub/sub connection."""
        masters = self.engine.masters()
        return bool(masters) and all(
            node in self.readers and self.readers[node].connected.is_set() for node in masters
        )

    def join(self, conn: Conn) -> None:
        """Register a socket; subscribe for the user's first, then catch it up."""
        if self.hub.add(conn):
            self._place(conn.username)
        elif self.hub.users[conn.username].confirmed:
            self.catch_up.want(conn.username)

    def leave(self, conn: Conn) -> None:
        """Unregister a socket; unsubscribe when it was the user's last."""
        if self.hub.remove(conn) and not self.hub.closing:
            node = self._home.pop(conn.username, None)
            if node in self.readers:
                self.readers[node].remove(conn.username)

    async def run(self) -> None:
        """Keep a reader on every master and every user on its slot's owner; never die."""
        try:
            self._rebalance()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._look.wait(), RECHECK_EVERY)
                self._look.clear()
                try:
                    await self.engine.refresh()
                except REDIS_DOWN as exc:
                    raise_if_cancelling()
                    log.warning("cannot read the cluster's slot map (%s); retrying", exc)
                    self._look.set()
                    await asyncio.sleep(BACKOFF[1])
                    continue
                self._rebalance()
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _place(self, username: str) -> None:
        node = self.engine.node_of(keys.channel(username))
        self._home[username] = node
        self._reader(node).add(username)

    def _reader(self, node: Node) -> ShardReader:
        reader = self.readers.get(node)
        if reader is None:
            reader = self.readers[node] = ShardReader(
                node,
                self.engine,
                self.hub,
                confirmed=self._confirmed,
                lost=self._lost,
                unreachable=self._look.set,
                moved=self._moved,
            )
            self._tasks[node] = asyncio.create_task(reader.run(), name=f"pubsub {node.name}")
        return reader

    def _rebalance(self) -> None:
        """Follow the map: new masters get a reader, users move to their slot's owner,
        and readers of nodes that are no longer masters (and hold no one) stop."""
        masters = set(self.engine.masters())
        for node in masters:
            self._reader(node)
        replace, self._replace = self._replace, set()
        for user, home in list(self._home.items()):
            owner = self.engine.node_of(keys.channel(user))
            if owner != home:
                log.info("subscribing %s on %s (was %s)", user, owner.name, home.name)
                self.readers[home].remove(user)
                self.hub.resync([user])
                self._home[user] = owner
                self._reader(owner).add(user)
            elif user in replace:  # not moved as far as the map knows: ask its owner again
                self.readers[home].add(user)
        for node in set(self.readers) - masters:
            if not self.readers[node].users:
                self._tasks.pop(node).cancel()
                del self.readers[node]

    def _confirmed(self, username: str) -> None:
        state = self.hub.users.get(username)
        if state is not None:
            state.confirmed = True
            self.catch_up.want(username)

    def _lost(self, reader: ShardReader) -> None:
        """A node's connection failed: its users catch up once subscribed again, on it or
        on whichever node the map names by then."""
        self.metrics.reconnects.inc()
        self.hub.resync(reader.users)
        self._look.set()

    def _moved(self, usernames: list[str]) -> None:
        self.hub.resync(usernames)
        self._replace.update(usernames)
        self._look.set()
