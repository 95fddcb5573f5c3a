"""The worker's one pub/sub connection: live events in, sockets joining and leaving.

Pub/sub is at-most-once; what it misses is replayed from the log by `CatchUp`.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from service import eventlog
from service.backoff import Backoff
from service.redis_conn import REDIS_DOWN
from workers.catchup import CatchUp
from workers.conn import Conn
from workers.hub import Hub
from workers.metrics import Metrics
from workers.subscriptions import Subscriptions
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

READ_TIMEOUT = 1.0  # get_message's wait: also how often the health check gets a chance
BACKOFF = (0.05, 1.0)


class PubSubReconnected(Exception):
    """redis-py reconnected the pub/sub socket by itself; what it missed must be replayed."""


class Listener:
    """Owns the pub/sub connection; `join`/`leave` are called for every socket."""

    def __init__(self, client: redis.Redis, hub: Hub, catch_up: CatchUp, metrics: Metrics):
        self.redis, self.hub, self.catch_up, self.metrics = client, hub, catch_up, metrics
        self.subscriptions = Subscriptions(hub)
        self.connected = asyncio.Event()
        self._pubsub: PubSub | None = None

    def join(self, conn: Conn) -> None:
        """Register a socket; subscribe for the user's first, then catch it up."""
        if self.hub.add(conn):
            self.subscriptions.add(conn.username)
        elif self.hub.users[conn.username].confirmed:
            self.catch_up.want(conn.username)

    def leave(self, conn: Conn) -> None:
        """Unregister a socket; unsubscribe when it was the user's last."""
        if self.hub.remove(conn) and not self.hub.closing:
            self.subscriptions.remove(conn.username)

    async def run(self) -> None:
        """Listen forever: reconnect with backoff, resubscribe, catch up; never die."""
        backoff, first = Backoff(*BACKOFF), True
        while True:
            try:
                await self._listen(first)
            except (RedisError, *REDIS_DOWN, PubSubReconnected) as exc:
                log.warning("pub/sub connection lost (%s); reconnecting", exc)
            except Exception:
                log.exception("pub/sub loop failed; reconnecting")
            raise_if_cancelling()
            was_connected = self.connected.is_set()
            self.catch_up.invalidate()
            await self._drop()
            if was_connected:
                self.metrics.reconnects.inc()
                backoff.reset()
            first = False
            self.hub.resync_all()
            await backoff.wait()

    async def _listen(self, first: bool) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.connect()
        assert pubsub.connection is not None
        pubsub.connection.register_connect_callback(self._reconnected)
        self._pubsub = pubsub
        self.subscriptions.use(pubsub)
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
        self.subscriptions.use(None)
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
                event = eventlog.decode_published(str(message["data"]))
            except msgspec.DecodeError as exc:  # one bad event never stops the loop
                log.error("skipping an undecodable event on %s: %s", channel, exc)
                return
            self.hub.dispatch(event)
        elif kind == "subscribe" and (user := self.subscriptions.confirmed(channel)):
            state = self.hub.users.get(user)
            if state is not None:
                state.confirmed = True
                self.catch_up.want(user)
