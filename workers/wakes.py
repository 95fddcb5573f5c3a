"""Wake-ups for the delivery duty: the wake channels of its slots, on their masters.

Each session script publishes on its slot's wake channel (sharded pub/sub, so only the
slot's master carries it). One connection per master subscribes the channels of the slots
this process delivers that the master owns. Pub/sub is at-most-once: each time a node's
subscriptions are (re)confirmed, after a start, a lost connection, a failover or a slot
that moved, its slots are handed to `subscribed` to be read in full, so nothing published
while unheard is missed for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.exceptions import AskError, RedisError

from service.backoff import Backoff
from service.engine.base import Engine, Node, NodeGone
from service.engine.errors import REDIS_DOWN
from service.engine.pubsub import ShardConnection
from service.sessions import keys
from workers.shard_reader import BACKOFF, PING_DEADLINE, PING_EVERY, READ_TIMEOUT, NodeHangs
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

RECHECK_EVERY = 5.0  # seconds between looks at the slot map when nothing asks for one


class SlotsMoved(Exception):
    """The node no longer owns a slot it was asked for."""


class Wakes:
    def __init__(
        self,
        engine: Engine,
        woken: Callable[[int, str], None],
        subscribed: Callable[[list[int]], None],
    ) -> None:
        self.engine, self.woken, self.subscribed = engine, woken, subscribed
        self.slots: frozenset[int] = frozenset()
        self._readers: dict[Node, tuple[frozenset[int], asyncio.Task[None]]] = {}
        self._look = asyncio.Event()

    def want(self, slots: set[int]) -> None:
        """Listen for these slots (and only these) from now on."""
        if slots != self.slots:
            self.slots = frozenset(slots)
            self._look.set()

    async def run(self) -> None:
        """Keep one reader on each master that owns some of the slots; never die."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._look.wait(), RECHECK_EVERY)
                self._look.clear()
                try:
                    await self.engine.refresh()
                except REDIS_DOWN as exc:
                    raise_if_cancelling()
                    log.warning("wake-ups: cannot read the slot map (%s); retrying", exc)
                    self._look.set()
                    await asyncio.sleep(BACKOFF[1])
                    continue
                self._place()
        finally:
            tasks = [task for _, task in self._readers.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _place(self) -> None:
        by_node: dict[Node, set[int]] = {}
        for slot in self.slots:
            by_node.setdefault(self.engine.node_of(keys.outbox_wake(slot)), set()).add(slot)
        for node, (slots, task) in list(self._readers.items()):
            if by_node.get(node) != slots or task.done():
                task.cancel()
                del self._readers[node]
        for node, slots in by_node.items():
            if node not in self._readers:
                task = asyncio.create_task(self._read(node, frozenset(slots)))
                self._readers[node] = (frozenset(slots), task)

    async def _read(self, node: Node, slots: frozenset[int]) -> None:
        backoff = Backoff(*BACKOFF)
        while True:
            try:
                await self._session(node, slots, backoff)
            except (RedisError, *REDIS_DOWN, OSError, NodeHangs, NodeGone, SlotsMoved) as exc:
                log.warning("wake-ups from %s lost (%s); again", node.name, exc)
                self._look.set()  # failed over or moved, maybe: the map is worth a look
            raise_if_cancelling()
            await backoff.wait()

    async def _session(self, node: Node, slots: frozenset[int], backoff: Backoff) -> None:
        conn = ShardConnection(self.engine, node)
        try:
            await conn.open()
            await conn.subscribe(keys.outbox_wake(slot) for slot in slots)
            await self._confirmations(conn, len(slots))
            backoff.reset()
            self.subscribed(sorted(slots))
            await self._listen(conn)
        finally:
            await conn.close()

    async def _confirmations(self, conn: ShardConnection, expected: int) -> None:
        confirmed = 0
        deadline = time.monotonic() + 10
        while confirmed < expected:
            try:
                push = await conn.read(READ_TIMEOUT)
            except AskError as moved:
                raise SlotsMoved(f"slot {moved.slot_id} is served elsewhere") from None
            if push is None:
                if time.monotonic() > deadline:
                    raise NodeHangs("subscriptions not confirmed in 10 s")
            elif push.kind == "ssubscribe":
                confirmed += 1
            elif push.kind == "smessage":
                self.woken(keys.slot_of_wake(push.channel), push.data)

    async def _listen(self, conn: ShardConnection) -> None:
        heard = pinged = time.monotonic()
        ping, pings = "", 0
        while True:
            try:
                push = await conn.read(READ_TIMEOUT)
            except AskError as moved:
                raise SlotsMoved(f"slot {moved.slot_id} is served elsewhere") from None
            now = time.monotonic()
            if push is not None:
                heard = now
                if push.kind == "smessage":
                    self.woken(keys.slot_of_wake(push.channel), push.data)
                elif push.kind == "sunsubscribe":  # unasked: the slot moved away
                    raise SlotsMoved(f"{push.channel} moved away")
                elif push.kind == "pong" and push.data == ping:
                    ping = ""
            elif ping and now - pinged > PING_DEADLINE:
                raise NodeHangs(f"no answer to a ping in {PING_DEADLINE}s")
            if not ping and now - heard > PING_EVERY:
                pings += 1
                ping, pinged = f"wake{pings}", now
                await conn.ping(ping)
