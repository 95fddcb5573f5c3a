"""Catch-up: sockets that join, or lost the live feed, replay their user's log.

A socket's events wait in its `pending` list until its user's subscription is confirmed
and the log after its cursor has been replayed; then the two are merged in order. After a
pub/sub loss each session is also re-checked, because a trimmed log or a Redis that
restarted empty cannot replay what happened.
"""

from __future__ import annotations

import asyncio
import logging

from service.backoff import Backoff
from service.engine.errors import redis_trouble
from service.sessions.eventlog import EventLog, ReplayQuery
from workers.conn import Conn
from workers.hub import Hub, UserState
from workers.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

BATCH = 500  # users per pipelined replay
BACKOFF = (0.05, 1.0)


class CatchUp:
    def __init__(self, events: EventLog, hub: Hub) -> None:
        self.events, self.hub = events, hub
        self._wanted: set[str] = set()  # users whose syncing sockets await catch-up
        self._wake = asyncio.Event()

    def want(self, username: str) -> None:
        self._wanted.add(username)
        self._wake.set()

    async def run(self) -> None:
        """Replay the log for users whose sockets are syncing, many users per round trip."""
        backoff = Backoff(*BACKOFF)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                batch = [self._wanted.pop() for _ in range(min(BATCH, len(self._wanted)))]
                try:
                    await self._replay(batch)
                    backoff.reset()
                except Exception as exc:  # never drop a user: its sockets would wait forever
                    raise_if_cancelling()
                    if redis_trouble(exc):
                        log.warning("catch-up failed (%r); retrying", exc)
                    else:
                        log.exception("catch-up of %d users failed; retrying", len(batch))
                    self._wanted.update(batch)
                    await backoff.wait()

    async def _replay(self, users: list[str]) -> None:
        plan: list[tuple[UserState, int, list[Conn]]] = []
        queries: list[ReplayQuery] = []
        for user in users:
            state = self.hub.users.get(user)
            if state is None or not state.confirmed:
                continue  # gone, or its (re)subscription will ask again
            conns = [c for c in state.conns() if c.pending is not None]
            if not conns:
                continue
            since = min(conn.cursor for conn in conns)
            recheck = tuple(dict.fromkeys(c.session_id for c in conns if c.recheck))
            queries.append(ReplayQuery(user, since, recheck))
            plan.append((state, state.generation, conns))
        replays = await self.events.replay(queries)
        for (state, generation, conns), replay in zip(plan, replays, strict=True):
            if state.generation != generation:
                continue  # its feed was lost meanwhile; the next subscription asks again
            for conn in conns:
                if conn.pending is None:  # caught up or closed meanwhile
                    continue
                gone = conn.recheck and conn.session_id in replay.gone
                self.hub.catch_up(conn, replay.events, gone, replay.gone.get(conn.session_id))
