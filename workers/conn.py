"""One connected device: identity, stream cursor and a bounded send queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

from service.eventlog import StreamId, parse_id
from service.records import Event
from workers import disconnect, messages
from workers.metrics import Metrics
from workers.tasks import TaskSet

log = logging.getLogger(__name__)

FINISH_TIMEOUT = 1.5  # for a revoked socket's last notice and its close


class Conn:
    """The writer task and its queue exist only while there is something to send, so an
    idle socket costs neither. While `pending` is a list the socket is catching up from the
    log, and live events wait there, in order, until the catch-up is merged in.
    """

    __slots__ = (
        "cursor",
        "done",
        "metrics",
        "pending",
        "queue",
        "queue_size",
        "recheck",
        "session_id",
        "tasks",
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
        tasks: TaskSet,
        queue_size: int,
    ) -> None:
        self.ws, self.metrics, self.tasks, self.queue_size = ws, metrics, tasks, queue_size
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
        elif len(self.queue) >= self.queue_size:
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
        metrics = self.metrics
        try:
            while queue:
                data, at_ms, kind = queue.popleft()
                await self.ws.send_str(data)
                metrics.sent(kind, at_ms)
            if self.done and not self.ws.closed:
                await self.ws.close(code=disconnect.REVOKED.code, message=disconnect.REVOKED.reason)
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
        self.metrics.slow_closed.inc()
        self.done = True
        self.queue = None
        if self.writer is not None:
            self.writer.cancel()
        slow = disconnect.TOO_SLOW
        self.tasks.spawn(self.ws.close(code=slow.code, message=slow.reason))

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
