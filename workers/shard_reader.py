"""One master's pub/sub connection: the users whose channels live there, read and kept alive.

A user's (un)subscriptions are queued and sent in batches by one task, so a connect storm
becomes a few writes and a user who leaves and comes back stays subscribed. A ping with a
deadline finds a node that hangs without closing its socket; the reader then reconnects,
and whatever its users may have missed is replayed from their logs (see CatchUp).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import msgspec
from redis.exceptions import AskError, RedisError

from service.backoff import Backoff
from service.engine.base import Engine, Node
from service.engine.errors import REDIS_DOWN
from service.engine.pubsub import Push, ShardConnection
from service.sessions import keys
from service.sessions.records import event_decoder
from workers.hub import Hub
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

READ_TIMEOUT = 0.5  # how long one read waits; also how often the health check looks
PING_EVERY = 3.0  # seconds of silence before a ping
PING_DEADLINE = 2.0  # a ping unanswered this long means the node hangs
BACKOFF = (0.05, 0.5)  # kept short: a failed-over slot must be listened to again in time


class NodeHangs(Exception):
    """The node stopped answering without closing the connection."""


class ShardReader:
    def __init__(
        self,
        node: Node,
        engine: Engine,
        hub: Hub,
        *,
        confirmed: Callable[[str], None],
        lost: Callable[[ShardReader], None],
        unreachable: Callable[[], None],
        moved: Callable[[list[str]], None],
    ) -> None:
        self.node, self.engine, self.hub = node, engine, hub
        self._confirmed, self._lost, self._moved = confirmed, lost, moved
        self._unreachable = unreachable
        self.users: set[str] = set()  # users whose channels should be subscribed here
        self.connected = asyncio.Event()
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._changed = asyncio.Event()
        self._subscribing: dict[str, int] = {}  # channel -> SSUBSCRIBEs not yet confirmed
        self._unsubscribing: dict[str, int] = {}  # channel -> SUNSUBSCRIBEs not yet confirmed
        self._pings = itertools.count()

    def add(self, username: str) -> None:
        self.users.add(username)
        self._to_unsubscribe.discard(username)
        self._to_subscribe.add(username)
        self._changed.set()

    def remove(self, username: str) -> None:
        self.users.discard(username)
        self._to_subscribe.discard(username)
        self._to_unsubscribe.add(username)
        self._changed.set()

    async def run(self) -> None:
        """Stay subscribed for as long as this node is a master: reconnect, never die."""
        backoff = Backoff(*BACKOFF)
        while True:
            try:
                await self._session(backoff)
            except (RedisError, *REDIS_DOWN, OSError, NodeHangs) as exc:
                log.warning("pub/sub of %s lost (%s); reconnecting", self.node.name, exc)
            except Exception:
                log.exception("pub/sub of %s failed; reconnecting", self.node.name)
            raise_if_cancelling()
            if self.connected.is_set():
                self.connected.clear()
                self._lost(self)
            else:  # still down: maybe failed over by now, so the map is worth another look
                self._unreachable()
            await backoff.wait()

    async def _session(self, backoff: Backoff) -> None:
        conn = ShardConnection(self.engine, self.node)
        try:
            await conn.open()
            # A new connection has no subscriptions: every user of the node is (re)sent.
            self._subscribing.clear()
            self._unsubscribing.clear()
            self._to_unsubscribe.clear()
            self._to_subscribe = set(self.users)
            self._changed.set()
            self.connected.set()
            backoff.reset()
            sender = asyncio.create_task(self._send_changes(conn))
            try:
                await self._read(conn, sender)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        finally:
            await conn.close()

    async def _read(self, conn: ShardConnection, sender: asyncio.Task[None]) -> None:
        heard, ping, pinged = time.monotonic(), None, 0.0
        while True:
            try:
                push = await conn.read(READ_TIMEOUT)
            except AskError as moved:  # an SSUBSCRIBE for a slot this node no longer owns
                self._slot_moved(moved.slot_id)
                continue
            now = time.monotonic()
            if push is not None:
                heard = now
                if push.kind == "pong" and push.data == ping:
                    ping = None
                self._handle(push)
            # The deadline runs from the ping, not from the last push: the ping leaves after
            # PING_EVERY of silence, so timing it from then gave a pong one read (0.5 s).
            elif ping is not None and now - pinged > PING_DEADLINE:
                raise NodeHangs(f"no answer to a ping in {PING_DEADLINE}s")
            if ping is None and now - heard > PING_EVERY:
                ping, pinged = f"hb{next(self._pings)}", now
                await conn.ping(ping)
            if sender.done():
                sender.result()  # a failed write: the connection is broken
            raise_if_cancelling()  # a read that took a cancellation for its own timeout

    def _handle(self, push: Push) -> None:
        if push.kind == "smessage":
            try:
                event = event_decoder.decode(push.data)
            except msgspec.DecodeError as exc:  # one bad event never stops the loop
                log.error("skipping an undecodable event on %s: %s", push.channel, exc)
                return
            self.hub.dispatch(event)
        elif push.kind == "ssubscribe":
            if _settle(self._subscribing, push.channel) == "last":
                user = keys.username_from_channel(push.channel)
                if user in self.users:
                    self._confirmed(user)
        elif push.kind == "sunsubscribe" and _settle(self._unsubscribing, push.channel) is None:
            # Unasked for: the slot moved to another node (or this one was demoted).
            user = keys.username_from_channel(push.channel)
            if user in self.users:
                log.info("%s: %s moved away; following it", self.node.name, push.channel)
                self._moved([user])

    def _slot_moved(self, slot: int) -> None:
        users = [u for u in self.users if self.engine.slot_of(keys.channel(u)) == slot]
        log.info(
            "%s: slot %d is served elsewhere; moving %d users", self.node.name, slot, len(users)
        )
        for user in users:
            self._subscribing.pop(keys.channel(user), None)
        self._moved(users)

    async def _send_changes(self, conn: ShardConnection) -> None:
        """Send the pending SUNSUBSCRIBEs and SSUBSCRIBEs, many channels per write."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            # Whoever came back, or left, since being queued is filtered out here.
            gone = [keys.channel(u) for u in self._to_unsubscribe if u not in self.users]
            new = [keys.channel(u) for u in self._to_subscribe if u in self.users]
            self._to_unsubscribe.clear()
            self._to_subscribe.clear()
            for channel in gone:
                self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
            await conn.unsubscribe(gone)
            for channel in new:
                self._subscribing[channel] = self._subscribing.get(channel, 0) + 1
            await conn.subscribe(new)


def _settle(pending: dict[str, int], channel: str) -> str | None:
    """Count one confirmation: "last" when no more are awaited for `channel`, "more" when
    some are, None when none was awaited at all (the server sent it unasked)."""
    awaited = pending.get(channel, 0)
    if awaited == 0:
        return None
    if awaited > 1:
        pending[channel] = awaited - 1
        return "more"
    del pending[channel]
    return "last"
