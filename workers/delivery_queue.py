"""One endpoint's deliveries in this process: in order per user, a few at once.

A user's messages go one at a time, oldest first: the next waits until the one before is
delivered or has failed for good, so a receiver sees each user's events in order. Users
are independent of each other, and at most CONCURRENCY messages are out at once, so a
slow or dead endpoint holds only its own connections and never delays another endpoint
(each has its own queue and task).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from service.clock import Clock
from service.events.endpoints import Endpoint
from service.sessions.eventlog import StreamId, parse_id
from service.sessions.outbox import Pending
from service.sessions.records import Event

log = logging.getLogger(__name__)

CONCURRENCY = 32  # messages out at once per endpoint and process
REMEMBERED = 10_000  # deliveries done lately, so a reload of the state never redoes them


@dataclass(slots=True)
class Item:
    """A message waiting for its endpoint: the delivery state, the event, its body."""

    pending: Pending
    event: Event
    body: bytes
    order: StreamId = field(init=False)

    def __post_init__(self) -> None:
        self.order = parse_id(self.pending.event_id)

    @property
    def key(self) -> tuple[int, str]:
        return self.pending.slot, self.pending.event_id


# What a delivery did: True, the message is finished (delivered, or failed for good);
# False, it stays (its due time was moved, or the endpoint stopped).
Deliver = Callable[["EndpointQueue", Item], Awaitable[bool]]


class EndpointQueue:
    def __init__(
        self, endpoint: Endpoint, deliver: Deliver, clock: Clock, concurrency: int = CONCURRENCY
    ) -> None:
        self.endpoint, self.deliver, self.clock = endpoint, deliver, clock
        self.concurrency = concurrency
        self.users: dict[str, list[Item]] = {}  # each user's messages, oldest first
        self.keys: set[tuple[int, str]] = set()
        self.busy: set[str] = set()  # users with a message out
        self.closed = False
        self._done: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._heads: list[tuple[int, int, str]] = []  # (due ms, tie, user), maybe stale
        self._tie = itertools.count()
        self._changed = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def backlog(self) -> int:
        return len(self.keys)

    def oldest_ms(self) -> int | None:
        """When the oldest event still waiting here happened."""
        return min((items[0].event.at for items in self.users.values() if items), default=None)

    def add(self, item: Item) -> None:
        """Queue a message, unless it is here already or was done lately (and this is not
        a replay of it)."""
        if item.key in self.keys or (item.key in self._done and not item.pending.replayed):
            return
        self._done.pop(item.key, None)
        self.keys.add(item.key)
        user = item.event.user
        items = self.users.setdefault(user, [])
        at = bisect.bisect(items, item.order, key=lambda i: i.order)
        items.insert(at, item)
        if at == 0:
            self._offer(user)

    def drop_slots(self, slots: set[int]) -> None:
        """Forget the messages of slots this process no longer delivers."""
        for user, items in list(self.users.items()):
            if items and items[0].pending.slot in slots:
                for item in items:
                    self.keys.discard(item.key)
                del self.users[user]

    async def run(self) -> None:
        """Start every message that is due, as concurrency allows, until closed."""
        try:
            while not self.closed:
                now = self.clock.now_ms()
                while self._heads and len(self._sending) < self.concurrency:
                    due, _, user = self._heads[0]
                    if due > now:
                        break
                    heapq.heappop(self._heads)
                    items = self.users.get(user)
                    if not items or user in self.busy or items[0].pending.due_ms > now:
                        continue  # stale: sent, dropped, or moved later
                    self._start(user, items[0])
                wait = None
                if self._heads and len(self._sending) < self.concurrency:
                    wait = max(0.0, (self._heads[0][0] - now) / 1000)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
        finally:
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    def close(self) -> None:
        """Stop starting messages; the ones out finish (their outcome is still recorded)."""
        self.closed = True
        self._changed.set()

    def _offer(self, user: str) -> None:
        items = self.users.get(user)
        if items and user not in self.busy:
            heapq.heappush(self._heads, (items[0].pending.due_ms, next(self._tie), user))
            self._changed.set()

    def _start(self, user: str, item: Item) -> None:
        self.busy.add(user)
        task = asyncio.create_task(self._send(user, item))
        self._sending.add(task)

    async def _send(self, user: str, item: Item) -> None:
        finished = False
        try:
            finished = await self.deliver(self, item)
        except Exception:  # one bad message never stops the queue: it is tried again later
            log.exception("delivery of %s to %s failed", item.pending.event_id, self.endpoint.id)
            item.pending.due_ms = self.clock.now_ms() + 60_000
        finally:
            self._sending.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.busy.discard(user)
            if finished:
                self._finish(user, item)
            self._offer(user)
            self._changed.set()  # room for another message

    def _finish(self, user: str, item: Item) -> None:
        items = self.users.get(user)
        if items and item in items:
            items.remove(item)
            if not items:
                del self.users[user]
        self.keys.discard(item.key)
        self._done[item.key] = None
        if len(self._done) > REMEMBERED:
            self._done.popitem(last=False)
