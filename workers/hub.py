"""The worker's registry of connected devices and the routing of session events to them.

Sockets are kept per user, then per session id, so an event costs a dict lookup plus the
user's own sockets, never a scan of everyone. Each socket has a cursor (the last stream id
it was given) so an event that arrives twice, by pub/sub and by catch-up, is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

from aiohttp import web

from service.clock import Clock
from service.sessions.eventlog import StreamId
from service.sessions.records import Event, Tombstone
from service.wire import disconnect
from workers.beats import Beats
from workers.conn import Conn
from workers.frames import FrameCache, revoked_from_tombstone
from workers.metrics import Metrics

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET = 3.0


class UserState:
    __slots__ = ("confirmed", "generation", "sessions")

    def __init__(self) -> None:
        # A list, not a set: a session has a socket or two (a set of one is 216 bytes).
        self.sessions: dict[str, list[Conn]] = {}
        self.confirmed = False  # the user's channel subscription is confirmed by Redis
        self.generation = 0  # bumped when the feed is lost: older replays are stale

    def conns(self) -> Iterator[Conn]:
        for conns in self.sessions.values():
            yield from conns


class Hub:
    """Every local socket, by user and session; knows nothing of Redis."""

    def __init__(self, metrics: Metrics, clock: Clock, queue_size: int = 64) -> None:
        self.metrics, self.clock = metrics, clock
        self.queue_size = queue_size
        self.users: dict[str, UserState] = {}
        self.open_sockets: dict[str, int] = {}  # session id -> sockets admitted, open or opening
        self.closing = False  # shutting down: sockets leave without unsubscribing
        metrics.syncing.set_function(self._syncing)  # counted when scraped, not per change
        self.frames = FrameCache()
        self.beats = Beats()  # every socket's heartbeat, on one timer

    def new_conn(
        self, ws: web.WebSocketResponse, username: str, session_id: str, cursor: StreamId
    ) -> Conn:
        """A device's connection, not yet registered (see Listener.join)."""
        return Conn(
            ws,
            username,
            session_id,
            cursor,
            metrics=self.metrics,
            queue_size=self.queue_size,
            beats=self.beats,
        )

    def take_slot(self, session_id: str, limit: int) -> bool:
        """Count one more socket for the session; False (nothing counted) at `limit`."""
        count = self.open_sockets.get(session_id, 0)
        if count >= limit:
            return False
        self.open_sockets[session_id] = count + 1
        return True

    def free_slot(self, session_id: str) -> None:
        count = self.open_sockets.pop(session_id, 0) - 1
        if count > 0:
            self.open_sockets[session_id] = count

    def add(self, conn: Conn) -> bool:
        """Register a socket; True when it is the user's first (subscribe then)."""
        state = self.users.get(conn.username)
        first = state is None
        if state is None:
            state = self.users[conn.username] = UserState()
        state.sessions.setdefault(conn.session_id, []).append(conn)
        self.metrics.sockets.inc()
        return first

    def remove(self, conn: Conn) -> bool:
        """Unregister a socket; True when it was the user's last (unsubscribe then)."""
        state = self.users.get(conn.username)
        if state is None:
            return False
        conns = state.sessions.get(conn.session_id)
        if conns is None or conn not in conns:
            return False
        conns.remove(conn)
        self.metrics.sockets.dec()
        if not conns:
            del state.sessions[conn.session_id]
        if state.sessions:
            return False
        del self.users[conn.username]
        return True

    def dispatch(self, event: Event) -> None:
        """Route a live event to the user's sockets; those catching up buffer it."""
        state = self.users.get(event.user)
        if state is None:
            return
        frames = self.frames.of(event)
        for conn in list(state.conns()):
            if conn.pending is not None:
                conn.pending.append(event)
            else:
                conn.deliver(frames)

    def catch_up(self, conn: Conn, events: list[Event], gone: bool, tomb: Tombstone | None) -> None:
        """Merge the log's events with those buffered meanwhile, then go live.

        `gone` says a re-check found the session record missing: a session that ended
        while its notice was lost (trimmed log, emptied Redis) is told from its tombstone.
        """
        buffered, conn.pending = conn.pending or [], None
        for event in (*events, *buffered):
            conn.deliver(self.frames.of(event))
        if gone and not conn.done:
            log.info(
                "session %s of %s ended while pub/sub was down", conn.session_id, conn.username
            )
            notice = revoked_from_tombstone(conn.session_id, tomb, self.clock.now_ms())
            conn.revoke(notice)
        conn.recheck = False

    def resync(self, usernames: Iterable[str]) -> None:
        """The users' live feed was lost (or moved): their sockets buffer what comes, then
        catch up from the log and re-check their sessions once it is back."""
        for username in usernames:
            state = self.users.get(username)
            if state is None:
                continue
            state.confirmed = False
            state.generation += 1
            for conn in state.conns():
                if conn.pending is None:
                    conn.pending = []
                conn.recheck = True

    def _syncing(self) -> int:
        return sum(
            1 for state in self.users.values() for c in state.conns() if c.pending is not None
        )

    def all_conns(self) -> list[Conn]:
        return [conn for state in self.users.values() for conn in state.conns()]

    async def close_all(self) -> None:
        """Close every socket at once with 1001 (going away): clients reconnect elsewhere."""
        self.closing = True
        conns = self.all_conns()
        started, bye = time.monotonic(), disconnect.SHUTDOWN
        # One budget for all (not a timer per socket): a close stuck on a client that
        # doesn't read is cancelled, which drops its connection; honcho kills at 5 s.
        closing = asyncio.gather(
            *(conn.ws.close(code=bye.code, message=bye.reason) for conn in conns),
            return_exceptions=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing, SHUTDOWN_BUDGET)
        if conns:
            log.info("closed %d sockets in %.2fs", len(conns), time.monotonic() - started)
