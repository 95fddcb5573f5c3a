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
from collections import deque
from collections.abc import Iterator

from aiohttp import web

from service.store import Event, Tombstone, now_ms
from workers import messages
from workers.metrics import Metrics

log = logging.getLogger(__name__)

StreamId = tuple[int, int]
ZERO_ID: StreamId = (0, 0)
CLOSE_TOO_SLOW = 1013  # "try again later": the client may reconnect and start afresh
FINISH_TIMEOUT = 1.5  # for a revoked socket's last notice and its close
SHUTDOWN_BUDGET = 3.0


def parse_id(raw: str) -> StreamId:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


class Conn:
    """One connected device: identity, stream cursor and a bounded send queue.

    The writer task and its queue exist only while there is something to send, so an idle
    socket costs neither. While `pending` is a list the socket is catching up from the
    log, and live events wait there, in order, until the catch-up is merged in.
    """

    __slots__ = (
        "cursor",
        "done",
        "hub",
        "pending",
        "queue",
        "recheck",
        "session_id",
        "username",
        "writer",
        "ws",
    )

    def __init__(
        self, hub: Hub, ws: web.WebSocketResponse, username: str, session_id: str, cursor: StreamId
    ) -> None:
        self.hub, self.ws = hub, ws
        self.username, self.session_id = username, session_id
        self.cursor = cursor
        self.pending: list[Event] | None = []
        self.recheck = False
        self.done = False  # revoked (or too slow): nothing more is queued
        self.queue: deque[tuple[str, int, str]] | None = None
        self.writer: asyncio.Task[None] | None = None

    def send(self, data: str, kind: str, at_ms: int = 0) -> None:
        """Queue a frame without waiting; a client that falls behind is disconnected."""
        if self.done:
            return
        if self.queue is None:
            self.queue = deque()
        elif len(self.queue) >= self.hub.queue_size:
            self._drop_slow(len(self.queue))
            return
        self.queue.append((data, at_ms, kind))
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(self.queue))

    def revoke(self, data: str, at_ms: int = 0) -> None:
        """Queue the session.revoked notice, then close with 4501."""
        self.send(data, "session.revoked", at_ms)
        self.done = True

    async def _write(self, queue: deque[tuple[str, int, str]]) -> None:
        metrics = self.hub.metrics
        try:
            while queue:
                data, at_ms, kind = queue.popleft()
                await self.ws.send_str(data)
                metrics.sent(kind, at_ms)
            if self.done and not self.ws.closed:
                await self.ws.close(code=messages.CLOSE_REVOKED, message=b"session revoked")
        except (ConnectionError, RuntimeError) as exc:  # peer went away mid-send
            log.debug("send to session %s failed: %s", self.session_id, exc)
        finally:
            self.writer = None
            self.queue = None

    async def finish(self) -> None:
        """Let a revoked socket's notice and 4501 close go out; cut anything else short."""
        writer = self.writer
        if writer is None:
            return
        if not self.done:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), FINISH_TIMEOUT)

    def _drop_slow(self, unsent: int) -> None:
        log.warning(
            "closing the socket of %s session %s: %d messages unsent (client not reading)",
            self.username,
            self.session_id,
            unsent,
        )
        self.hub.metrics.slow_closed.inc()
        self.done = True
        self.queue = None
        if self.writer is not None:
            self.writer.cancel()
        self.hub.spawn(self.ws.close(code=CLOSE_TOO_SLOW, message=b"client too slow"))

    def deliver(self, event: Event) -> None:
        """Send one event unless this socket already had it (or anything later)."""
        event_id = parse_id(event.id)
        if event_id <= self.cursor:
            return
        self.cursor = event_id
        if event.session_id == self.session_id:
            if event.type == "session.revoked":
                self.revoke(messages.revoked_from_event(event), event.at)
            return
        self.send(messages.changed_from_event(event), "sessions.changed", event.at)


class UserState:
    __slots__ = ("confirmed", "sessions")

    def __init__(self) -> None:
        self.sessions: dict[str, set[Conn]] = {}
        self.confirmed = False  # the user's channel subscription is confirmed by Redis

    def conns(self) -> Iterator[Conn]:
        for conns in self.sessions.values():
            yield from conns


class Hub:
    """Every local socket, by user and session; knows nothing of Redis."""

    def __init__(self, metrics: Metrics, queue_size: int = 64) -> None:
        self.metrics = metrics
        self.queue_size = queue_size
        self.users: dict[str, UserState] = {}
        self.closing = False  # shutting down: sockets leave without unsubscribing
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add(self, conn: Conn) -> bool:
        """Register a socket; True when it is the user's first (subscribe then)."""
        state = self.users.get(conn.username)
        first = state is None
        if state is None:
            state = self.users[conn.username] = UserState()
        state.sessions.setdefault(conn.session_id, set()).add(conn)
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
        conns.discard(conn)
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
        for conn in list(state.conns()):
            if conn.pending is not None:
                conn.pending.append(event)
            else:
                conn.deliver(event)

    def catch_up(
        self, conn: Conn, events: list[Event], exists: bool | None, tomb: Tombstone | None
    ) -> None:
        """Merge the log's events with those buffered meanwhile, then go live.

        `exists` is the session record's presence when a re-check was asked for: a
        session that ended while its notice was lost (trimmed log, emptied Redis) is
        told from its tombstone.
        """
        buffered, conn.pending = conn.pending or [], None
        for event in events:
            conn.deliver(event)
        for event in buffered:
            conn.deliver(event)
        if exists is False and not conn.done:
            log.info(
                "session %s of %s ended while pub/sub was down", conn.session_id, conn.username
            )
            conn.revoke(messages.revoked_from_tombstone(conn.session_id, tomb, now_ms()))
        conn.recheck = False

    def resync_all(self) -> None:
        """After a pub/sub loss: every socket catches up and re-checks its session."""
        for state in self.users.values():
            state.confirmed = False
            for conn in state.conns():
                if conn.pending is None:
                    conn.pending = []
                conn.recheck = True

    def all_conns(self) -> list[Conn]:
        return [conn for state in self.users.values() for conn in state.conns()]

    async def close_all(self) -> None:
        """Close every socket at once with 1001 (going away): clients reconnect elsewhere."""
        self.closing = True
        conns = self.all_conns()
        started = time.monotonic()
        # One budget for all (not a timer per socket): a close stuck on a client that
        # doesn't read is cancelled, which drops its connection; honcho kills at 5 s.
        closing = asyncio.gather(
            *(conn.ws.close(code=1001, message=b"server shutting down") for conn in conns),
            return_exceptions=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing, SHUTDOWN_BUDGET)
        for task in list(self._tasks):
            task.cancel()
        if conns:
            log.info("closed %d sockets in %.2fs", len(conns), time.monotonic() - started)
