"""The worker's side of presence: one task per process reports all its sockets.

A socket that opens or closes is reported within FLUSH_DELAY (a reconnect storm's
sockets share one batch); every socket still open is reported every PRESENCE_REFRESH,
which keeps it online (its presence runs PRESENCE_TTL past the report) and tells the
user's devices of changes the rate limit held back or a dead worker left behind. Reports
leave one batch at a time, so a close never overtakes the open before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets

from service.backoff import Backoff
from service.clock import Clock
from service.engine.errors import redis_trouble
from service.sessions.presence import Presence, UserReport, member
from workers.conn import Conn
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.1  # seconds an open or a close waits for others to share its batch
BACKOFF_MAX = 2.0
LAST_REPORT_TIMEOUT = 1.0  # at shutdown: the closed sockets go offline at once


class PresenceKeeper:
    def __init__(self, presence: Presence, clock: Clock, refresh: float) -> None:
        self.presence, self.clock, self.refresh = presence, clock, refresh
        self.token = secrets.token_hex(6)  # this process's sockets, apart from others'
        self._ids = itertools.count(1)
        self.sockets: dict[str, dict[Conn, str]] = {}  # user -> socket -> its member
        self._opened: dict[str, set[str]] = {}
        self._closed: dict[str, set[str]] = {}
        self._due: dict[str, int] = {}  # user -> when a held-back notice is due (ms)
        self._wake = asyncio.Event()

    def opened(self, conn: Conn) -> None:
        name = member(conn.session_id, f"{self.token}:{next(self._ids)}")
        self.sockets.setdefault(conn.username, {})[conn] = name
        self._opened.setdefault(conn.username, set()).add(name)
        self._wake.set()

    def closed(self, conn: Conn) -> None:
        mine = self.sockets.get(conn.username)
        name = mine.pop(conn, None) if mine is not None else None
        if name is None:
            return
        if not mine:
            del self.sockets[conn.username]
        self._closed.setdefault(conn.username, set()).add(name)
        self._wake.set()

    async def run(self) -> None:
        """Report changes soon, everything every `refresh`; survive anything."""
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        backoff = Backoff(FLUSH_DELAY, BACKOFF_MAX)
        while True:
            wait = next_full - loop.time()
            due = min(self._due.values(), default=None)
            if due is not None:
                wait = min(wait, max(0.0, (due - self.clock.now_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))
            await asyncio.sleep(FLUSH_DELAY)
            self._wake.clear()
            full = loop.time() >= next_full
            try:
                await self.report(full)
                backoff.reset()
            except Exception as exc:
                raise_if_cancelling()
                if not redis_trouble(exc):
                    log.exception("presence report failed")
                else:
                    log.warning("presence: Redis unavailable (%r); retrying", exc)
                await backoff.wait()
                self._wake.set()
                continue
            if full:
                next_full = loop.time() + self.refresh

    async def report(self, full: bool) -> None:
        """One batch: the users with changes (or a notice due), or everyone when `full`;
        each user's report is made just before its pipeline leaves (Presence.report)."""
        now = self.clock.now_ms()
        users = set(self._opened) | set(self._closed)
        users |= {user for user, at in self._due.items() if at <= now}
        if full:
            users |= set(self.sockets)
        if not users:
            return
        opened, closed = self._opened, self._closed
        self._opened, self._closed = {}, {}

        def build(user: str) -> UserReport:
            alive = list(self.sockets.get(user, {}).values())
            return UserReport(alive=alive, gone=list(closed.get(user, ())))

        try:
            found = await self.presence.report(users, build)
        except BaseException:  # nothing is lost: the next batch has them again
            for user, names in closed.items():
                self._closed.setdefault(user, set()).update(names)
            for user, names in opened.items():
                self._opened.setdefault(user, set()).update(names)
            raise
        for user in users:
            at = found.get(user, 0)
            if at and user in self.sockets:
                self._due[user] = at
            else:
                self._due.pop(user, None)

    async def last_report(self) -> None:
        """At shutdown, once the sockets closed: they are offline now, not after the TTL."""
        if self._closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.report(False), LAST_REPORT_TIMEOUT)
