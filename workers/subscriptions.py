"""Which users' channels the worker subscribes to, sent in batches by one task.

A connect storm becomes a few SUBSCRIBEs of many channels, and one sender keeps the
commands in order, so a user who leaves and comes back stays subscribed.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio.client import PubSub

from service import eventlog
from workers.hub import Hub
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

CHUNK = 500  # channels per command


class Subscriptions:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pubsub: PubSub | None = None
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._changed = asyncio.Event()
        self._outstanding: dict[str, int] = {}  # channel -> SUBSCRIBEs not yet confirmed

    def add(self, username: str) -> None:
        self._to_unsubscribe.discard(username)
        self._to_subscribe.add(username)
        self._changed.set()

    def remove(self, username: str) -> None:
        self._to_subscribe.discard(username)
        self._to_unsubscribe.add(username)
        self._changed.set()

    def use(self, pubsub: PubSub | None) -> None:
        """Send on this connection from now on (None: there is none); it starts empty, so
        every local user is subscribed on it."""
        self._pubsub = pubsub
        self._outstanding.clear()
        self._to_unsubscribe.clear()
        if pubsub is not None:
            self._to_subscribe.update(self.hub.users)
            self._changed.set()

    def confirmed(self, channel: str) -> str | None:
        """Redis confirmed a SUBSCRIBE: the user, once their last pending one is confirmed."""
        left = self._outstanding.get(channel, 0) - 1
        if left > 0:
            self._outstanding[channel] = left
            return None
        self._outstanding.pop(channel, None)
        return eventlog.username_from_channel(channel)

    async def run(self) -> None:
        """Send the pending UNSUBSCRIBEs and SUBSCRIBEs, many channels per command."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the next connection subscribes every local user
            # Whoever came back, or left, since being queued is filtered out here.
            gone = [u for u in self._to_unsubscribe if u not in self.hub.users]
            new = [u for u in self._to_subscribe if u in self.hub.users]
            self._to_unsubscribe.clear()
            self._to_subscribe.clear()
            try:
                await self._send(pubsub, gone, new)
            except Exception as exc:  # a broken connection: the listener resubscribes all
                raise_if_cancelling()
                log.warning("(un)subscribe failed (%s); the listener will reconnect", exc)

    async def _send(self, pubsub: PubSub, gone: list[str], new: list[str]) -> None:
        for start in range(0, len(gone), CHUNK):
            await pubsub.unsubscribe(*map(eventlog.channel, gone[start : start + CHUNK]))
        for start in range(0, len(new), CHUNK):
            if self._pubsub is not pubsub:
                return  # replaced: the new connection subscribes every local user
            channels = [eventlog.channel(u) for u in new[start : start + CHUNK]]
            for channel in channels:
                self._outstanding[channel] = self._outstanding.get(channel, 0) + 1
            await pubsub.subscribe(*channels)
