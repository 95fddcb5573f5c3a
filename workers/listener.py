"""The worker's one pub/sub connection, reference-counted subscriptions, and catch-up.

Pub/sub is at-most-once, so the event log is the source of truth: a socket that joins, and
every socket after the subscription was lost, replays the user's log from its cursor once
the (re)subscription is confirmed. After a loss each session is also re-checked, because a
trimmed log or a Redis that restarted empty cannot replay what happened.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from service import keys
from service.redis_conn import REDIS_DOWN
from service.store import Event, decode_tombstone, event_decoder
from workers.hub import ZERO_ID, Conn, Hub, format_id
from workers.metrics import Metrics
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

READ_TIMEOUT = 1.0  # get_message's wait: also how often the health check gets a chance
BACKOFF_START, BACKOFF_MAX = 0.05, 1.0
SUBSCRIBE_CHUNK = 500
CATCH_UP_BATCH = 500


class PubSubReconnected(Exception):
    """redis-py reconnected the pub/sub socket by itself; what it missed must be replayed."""


class Listener:
    """Owns the pub/sub connection; `join`/`leave` are called for every socket."""

    def __init__(self, client: redis.Redis, hub: Hub, metrics: Metrics) -> None:
        self.redis, self.hub, self.metrics = client, hub, metrics
        self._pubsub: PubSub | None = None
        self._outstanding: dict[str, int] = {}  # channel -> SUBSCRIBEs not yet confirmed
        self._wanted: set[str] = set()  # users whose syncing sockets await catch-up
        self._wake = asyncio.Event()
        # Users to (un)subscribe, sent in batches by one task: a connect storm becomes a few
        # SUBSCRIBEs of many channels, and one sender keeps the commands in order.
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._subscriptions_changed = asyncio.Event()
        self._epoch = 0  # bumped on every lost connection; stale catch-ups are dropped
        self.connected = asyncio.Event()

    # -- sockets --------------------------------------------------------------------------

    def join(self, conn: Conn) -> None:
        """Register a socket; subscribe for the user's first, then catch it up."""
        if self.hub.add(conn):
            self._to_unsubscribe.discard(conn.username)
            self._to_subscribe.add(conn.username)
            self._subscriptions_changed.set()
        elif self.hub.users[conn.username].confirmed:
            self._want(conn.username)

    def leave(self, conn: Conn) -> None:
        """Unregister a socket; unsubscribe when it was the user's last."""
        if self.hub.remove(conn) and not self.hub.closing:
            self._to_subscribe.discard(conn.username)
            self._to_unsubscribe.add(conn.username)
            self._subscriptions_changed.set()

    async def run_subscriptions(self) -> None:
        """Send the pending UNSUBSCRIBEs and SUBSCRIBEs, many channels per command."""
        while True:
            await self._subscriptions_changed.wait()
            self._subscriptions_changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the next connection subscribes every local user
            # Whoever came back, or left, since being queued is filtered out here.
            gone = [u for u in self._to_unsubscribe if u not in self.hub.users]
            new = [u for u in self._to_subscribe if u in self.hub.users]
            self._to_unsubscribe.clear()
            self._to_subscribe.clear()
            try:
                for start in range(0, len(gone), SUBSCRIBE_CHUNK):
                    chunk = gone[start : start + SUBSCRIBE_CHUNK]
                    await pubsub.unsubscribe(*map(keys.channel, chunk))
                for start in range(0, len(new), SUBSCRIBE_CHUNK):
                    if self._pubsub is not pubsub:
                        break  # replaced: the new connection subscribes every local user
                    channels = [keys.channel(u) for u in new[start : start + SUBSCRIBE_CHUNK]]
                    for channel in channels:
                        self._outstanding[channel] = self._outstanding.get(channel, 0) + 1
                    await pubsub.subscribe(*channels)
            except Exception as exc:  # a broken connection: the listener resubscribes all
                raise_if_cancelling()
                log.warning("(un)subscribe failed (%s); the listener will reconnect", exc)

    # -- the pub/sub loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Listen forever: reconnect with backoff, resubscribe, catch up; never die."""
        delay, first = BACKOFF_START, True
        while True:
            try:
                await self._listen(first)
            except (RedisError, *REDIS_DOWN, PubSubReconnected) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting in %.2fs", exc, delay)
            except Exception:
                log.exception("pub/sub loop failed; reconnecting in %.2fs", delay)
            raise_if_cancelling()
            was_connected = self.connected.is_set()
            self._epoch += 1
            await self._drop()
            if was_connected:
                self.metrics.reconnects.inc()
                delay = BACKOFF_START
            first = False
            self.hub.resync_all()
            await asyncio.sleep(delay)
            if not was_connected:
                delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self, first: bool) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.connect()
        assert pubsub.connection is not None
        pubsub.connection.register_connect_callback(self._reconnected)
        self._pubsub = pubsub
        self._outstanding.clear()
        self._to_unsubscribe.clear()  # a new connection has no subscriptions to drop
        self._to_subscribe.update(self.hub.users)
        self._subscriptions_changed.set()
        if not first:
            log.info("pub/sub reconnected; resubscribing %d users", len(self.hub.users))
        self.connected.set()
        while True:
            message = await pubsub.get_message(timeout=READ_TIMEOUT)
            if message is not None:
                self._handle(message)

    def _reconnected(self, _connection: object) -> None:
        raise PubSubReconnected("pub/sub socket was reconnected")

    async def _drop(self) -> None:
        self.connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        if pubsub.connection is not None:
            pubsub.connection.deregister_connect_callback(self._reconnected)
        try:
            await pubsub.aclose()
        except (RedisError, *REDIS_DOWN):
            pass

    def _handle(self, message: dict[str, object]) -> None:
        kind, channel = message["type"], str(message["channel"])
        if kind == "message":
            try:
                event = event_decoder.decode(str(message["data"]))
            except msgspec.DecodeError as exc:  # one bad event never stops the loop
                log.error("skipping an undecodable event on %s: %s", channel, exc)
                return
            self.hub.dispatch(event)
        elif kind == "subscribe":
            left = self._outstanding.get(channel, 0) - 1
            if left > 0:
                self._outstanding[channel] = left
                return
            self._outstanding.pop(channel, None)
            user = keys.username_from_channel(channel)
            state = self.hub.users.get(user)
            if state is not None:
                state.confirmed = True
                self._want(user)

    # -- catch-up -------------------------------------------------------------------------

    def _want(self, user: str) -> None:
        self._wanted.add(user)
        self._wake.set()

    async def run_catch_up(self) -> None:
        """Replay the log for users whose sockets are syncing, many users per round trip."""
        delay = BACKOFF_START
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                batch = [self._wanted.pop() for _ in range(min(CATCH_UP_BATCH, len(self._wanted)))]
                try:
                    await self._catch_up(batch)
                    delay = BACKOFF_START
                except (RedisError, *REDIS_DOWN) as exc:
                    raise_if_cancelling()
                    log.warning("catch-up failed (%s); retrying in %.2fs", exc, delay)
                    self._wanted.update(batch)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                except Exception:
                    log.exception("catch-up of %d users failed; skipped", len(batch))

    async def _catch_up(self, users: list[str]) -> None:
        epoch = self._epoch
        plan: list[tuple[str, list[tuple[Conn, bool]]]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for user in users:
                state = self.hub.users.get(user)
                if state is None or not state.confirmed:
                    continue  # gone, or its (re)subscription will ask again
                conns = [(c, c.recheck) for c in state.conns() if c.pending is not None]
                if not conns:
                    continue
                start = min(conn.cursor for conn, _ in conns)
                first = "-" if start == ZERO_ID else f"({format_id(start)}"
                pipe.xrange(keys.event_log(user), first)
                for conn, recheck in conns:
                    if recheck:
                        pipe.exists(keys.session_record(user, conn.session_id))
                        pipe.get(keys.tombstone(user, conn.session_id))
                plan.append((user, conns))
            results = iter(await pipe.execute()) if plan else iter(())
        if epoch != self._epoch:
            return  # the subscription was lost meanwhile; its successor catches up again
        for user, conns in plan:
            events = decode_entries(user, next(results))
            for conn, recheck in conns:
                exists, tomb = None, None
                if recheck:
                    exists, tomb = bool(next(results)), decode_tombstone(next(results))
                if conn.pending is not None:  # may have been caught up or closed meanwhile
                    self.hub.catch_up(conn, events, exists, tomb)


def decode_entries(user: str, entries: list[tuple[str, dict[str, str]]]) -> list[Event]:
    """Events from XRANGE entries; the stored JSON lacks the id, which is the entry's."""
    events = []
    for entry_id, fields in entries:
        raw = fields.get("e", "")
        try:
            events.append(event_decoder.decode(f'{{"id":"{entry_id}",{raw[1:]}'))
        except msgspec.DecodeError as exc:  # one bad entry never stops the catch-up
            log.error("skipping log entry %s of %s: %s", entry_id, user, exc)
    return events
