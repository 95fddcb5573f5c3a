"""One connected device: identity, stream cursor and a bounded send queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

from service.sessions.eventlog import StreamId, parse_id
from service.sessions.records import Event
from service.wire import disconnect
from service.wire.disconnect import Disconnect
from workers.beats import Beats
from workers.frames import Frames
from workers.guard import ReadGuard
from workers.metrics import Metrics

log = logging.getLogger(__name__)

FINISH_TIMEOUT = 1.5  # for a revoked socket's last notice
PING = "ping"  # a queue entry that is our ping, sent in order with the messages


def _now() -> float:
    """The loop's clock: the heartbeat (workers/beats.py) runs on it."""
    return asyncio.get_running_loop().time()


class Conn:
    """The writer task and its queue exist only while there is something to send, so an
    idle socket costs neither. While `pending` is a list the socket is catching up from the
    log, and live events wait there, in order, until the catch-up is merged in.

    The socket's handler reads its frames in its own task (`reader` while it does), so an
    idle socket has no task of its own. Whoever else decides the socket must end (the
    writer after a revocation, the read guard, the heartbeat) sets `bye` and cancels that
    read; the handler then closes from its own task, so the closing handshake is finished.
    """

    __slots__ = (
        "beat_bucket",
        "beats",
        "bye",
        "cursor",
        "done",
        "guard",
        "heartbeat",
        "metrics",
        "next_ping_at",
        "pending",
        "ping_asked_at",
        "queue",
        "queue_size",
        "reader",
        "recheck",
        "session_id",
        "username",
        "writer",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        username: str,
        session_id: str,
        cursor: StreamId,
        *,
        metrics: Metrics,
        queue_size: int,
        beats: Beats,
    ) -> None:
        self.ws, self.metrics, self.queue_size = ws, metrics, queue_size
        self.beats = beats
        self.username, self.session_id = username, session_id
        self.cursor = cursor
        self.pending: list[Event] | None = []
        self.recheck = False
        self.done = False  # revoked (or too slow): nothing more is queued
        self.queue: deque[tuple[str, int, str]] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.guard = ReadGuard()
        self.bye: Disconnect | None = None  # the close to send, once decided
        self.reader: asyncio.Task[object] | None = None  # the handler, while it reads
        self.heartbeat, self.next_ping_at = 0.0, 0.0
        self.ping_asked_at: float | None = None  # a ping is queued or unanswered since
        self.beat_bucket: int | None = None  # where the next heartbeat tick is filed in `beats`

    def send(self, data: str, kind: str, at_ms: int = 0) -> None:
        """Queue a frame without waiting; a client that falls behind is disconnected."""
        if self.done:
            return
        if self.queue is None:
            self.queue = deque()
        elif len(self.queue) >= self.queue_size:
            if self.writer is not None:
                self.writer.cancel()  # it is stuck in a send that will not complete
            self._drop_slow(f"{len(self.queue)} messages unsent")
            return
        self.queue.append((data, at_ms, kind))
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(self.queue))

    def revoke(self, data: str, at_ms: int = 0) -> None:
        """Queue the session.revoked notice, then close with 4501."""
        self.send(data, "session.revoked", at_ms)
        self.done = True

    def close(self, bye: Disconnect) -> None:
        """Ask the socket's handler to close with `bye`; the first close asked for wins."""
        if self.bye is not None:
            return
        self.bye = bye
        # Cancel the handler's read (it closes next); the handler itself (a pong that
        # showed the client too slow) sees `bye` before it reads again.
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()

    async def _write(self, queue: deque[tuple[str, int, str]]) -> None:
        metrics, guard = self.metrics, self.guard
        try:
            while queue:
                data, at_ms, kind = queue.popleft()
                if kind == PING:
                    if not guard.ping_pending:
                        await self.ws.ping(guard.ping())
                    continue
                await self.ws.send_str(data)
                metrics.sent(kind, at_ms)
                guard.wrote(len(data))
                if guard.too_slow:
                    self._drop_slow("unread data past the bound")
                    return
                if guard.wants_early_ping:
                    self.ping_asked_at = self.ping_asked_at or _now()
                    await self.ws.ping(guard.ping())
            if self.done:
                self.close(disconnect.REVOKED)
        except (ConnectionError, RuntimeError) as exc:  # peer went away mid-send
            log.debug("send to session %s failed: %s", self.session_id, exc)
        finally:
            self.writer = None
            self.queue = None

    async def finish(self) -> None:
        """Let a revoked socket's notice go out; cut anything else short."""
        self.stop_heartbeat()
        writer = self.writer
        if writer is None:
            return
        if not self.done:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), FINISH_TIMEOUT)

    def _drop_slow(self, why: str) -> None:
        log.warning(
            "closing the socket of %s session %s: %s (client not reading)",
            self.username,
            self.session_id,
            why,
        )
        self.metrics.slow_closed.inc()
        self.done = True
        self.queue = None
        self.close(disconnect.TOO_SLOW)

    def start_heartbeat(self, interval: float) -> None:
        """Ping every `interval`; a ping unanswered for half of it means the peer is gone."""
        self.heartbeat = interval
        self.next_ping_at = _now() + interval
        self.beat_bucket = self.beats.schedule(self, self.next_ping_at)

    def stop_heartbeat(self) -> None:
        if self.beat_bucket is not None:
            self.beats.cancel(self, self.beat_bucket)
            self.beat_bucket = None

    def beat(self, now: float) -> None:
        """The heartbeat's tick (from `beats`, when due, with the loop's time): ping, give
        up, or wait more."""
        wait = self.heartbeat / 2
        if self.ping_asked_at is not None:
            if now - self.ping_asked_at >= wait:
                self.beat_bucket = None
                self.close(disconnect.NO_PONG)
                return
            when = self.ping_asked_at + wait
        elif now >= self.next_ping_at:
            self.next_ping_at = now + self.heartbeat
            self.ping_asked_at = now
            self.send("", PING)
            when = now + wait
        else:
            when = self.next_ping_at
        self.beat_bucket = self.beats.schedule(self, when)

    def pong(self, payload: bytes) -> None:
        """A pong from the client; one that answers our ping proves what it has read."""
        if not self.guard.pong(payload):
            return
        self.ping_asked_at = None
        if self.guard.wants_early_ping:  # more went out meanwhile: ask again at once
            self.ping_asked_at = _now()
            self.send("", PING)

    def deliver(self, frames: Frames) -> None:
        """Send one event unless this socket already had it (or anything later)."""
        event = frames.event
        if event.id:  # logged: sent once, in order, live or replayed
            event_id = parse_id(event.id)
            if event_id <= self.cursor:
                return
            self.cursor = event_id
        if event.session_id == self.session_id:
            if event.type == "session.revoked":
                self.revoke(frames.revoked, event.at)
                return
            if event.type != "session.renamed":  # its own presence it knows; a new name
                return  # given in another tab (the same browser, the same session) it doesn't
        self.send(frames.changed, "sessions.changed", event.at)
