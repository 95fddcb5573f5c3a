"""Which sessions hold a live socket, on one Redis or a cluster, surviving a worker crash.

Each socket is one member `<session id> <socket id>` of its user's presence ZSET, scored
with the time its presence runs until. A worker process reports its sockets in batches
(`Presence.report`): those it opened or still holds (their time moves on), and those it
closed. One script per user, on the user's slot (presence.lua), does the rest: it drops
members whose time passed (a worker killed with -9 stops reporting), keeps each session's
`online_until` in its record (so any read of the record says whether it is online), bumps
`last seen` while a socket is open, and tells the user's devices when a session goes
online or offline, at most once per notice interval (the latest state always arrives).
The batch is pipelined per master: a reconnect storm costs a few round trips, not one per
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import AskError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

from service.clock import Clock
from service.engine.base import Engine, Node, NodeGone
from service.engine.connect import RedisClient
from service.engine.errors import REDIS_DOWN
from service.sessions import keys
from service.sessions.scripts import session_script
from service.sessions.store import GRACE_MS
from service.settings import Settings

log = logging.getLogger(__name__)

MAX_PIPELINE = 256  # users' scripts per write to one master
GROUPED_PER_TURN = 1024  # users sorted by master per turn of the event loop
_json = msgspec.json.Encoder()


def member(session_id: str, socket_id: str) -> str:
    """A socket's member of its user's presence (session ids have no spaces)."""
    return f"{session_id} {socket_id}"


@dataclass(slots=True)
class UserReport:
    """One user's sockets on this worker: still open (or new) and closed since last time."""

    alive: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


class Presence:
    def __init__(
        self, client: RedisClient, engine: Engine, settings: Settings, clock: Clock
    ) -> None:
        self.client, self.engine, self.clock = client, engine, clock
        self.ttl_ms = settings.presence_ttl * 1000
        self.notice_ms = int(settings.presence_notice_interval * 1000)
        self.touch_ms = settings.session_touch_interval * 1000
        self.keep_ms = settings.session_max_age * 1000
        self._script = client.register_script(session_script("presence"))

    async def report(
        self, users: Iterable[str], build: Callable[[str], UserReport]
    ) -> dict[str, int]:
        """Apply a worker's reports, `build(user)` making each just before its pipeline
        leaves; for each user, when a held-back notice is due (ms, 0: none). A user whose
        script failed is absent (its sockets are in the next report).

        Made all at once, a full refresh of 20,000 sockets held the event loop (and every
        notice to an open socket) for tens of ms. One pipeline is out at a time, the
        masters in turn: with every master's at once, the API's revocations waited behind
        three pipelines of scripts (notice p99 30 against 15 ms at 19,500 sockets,
        docs/BENCHMARKS.md). A master that is down is left out after its first failure, so
        the others' users are still reported; then the failure is raised.
        """
        by_node: dict[Node, list[str]] = {}
        for n, username in enumerate(users, 1):
            by_node.setdefault(self.engine.node_of(keys.presence(username)), []).append(username)
            if n % GROUPED_PER_TURN == 0:
                await asyncio.sleep(0)
        results: dict[str, int] = {}
        failed: BaseException | None = None
        while by_node:
            for node in list(by_node):
                names = by_node[node]
                part, by_node[node] = names[:MAX_PIPELINE], names[MAX_PIPELINE:]
                now = self.clock.now_ms()
                try:
                    results.update(
                        await self._run(node, [(u, self._command(u, build(u), now)) for u in part])
                    )
                except REDIS_DOWN as exc:
                    failed = failed or exc
                    by_node[node] = []
                if not by_node[node]:
                    del by_node[node]
        if failed is not None:
            raise failed
        return results

    def _command(self, username: str, report: UserReport, now: int) -> tuple[Any, ...]:
        user_keys = [*keys.script_keys(username), keys.presence(username)]
        arguments = {
            "now": now,
            "grace": GRACE_MS,
            "user": username,
            "record_prefix": keys.session_record(username, ""),
            "tomb_prefix": keys.tombstone(username, ""),
            "alive": report.alive,
            "gone": report.gone,
            "until": now + self.ttl_ms,
            "notice_ms": self.notice_ms,
            "touch_ms": self.touch_ms,
        }
        return ("EVALSHA", self._script.sha, len(user_keys), *user_keys, _json.encode(arguments))

    async def _run(self, node: Node, part: list[tuple[str, tuple[Any, ...]]]) -> dict[str, int]:
        try:
            replies = await self.engine.run_on(node, [command for _, command in part])
        except NodeGone:
            replies = [AskError("moved") for _ in part]
        results, again = {}, []
        for (username, command), reply in zip(part, replies, strict=True):
            if isinstance(reply, NoScriptError | AskError):  # a new master, a moved slot
                again.append((username, command))
            elif isinstance(reply, RedisConnectionError):
                raise reply
            elif isinstance(reply, Exception):
                log.error("presence of %s not recorded: %s", username, reply)
            else:
                results[username] = int(reply)
        for username, command in again:  # rare: each the client's own way (it loads, follows)
            with contextlib.suppress(*REDIS_DOWN):
                numkeys = command[2]
                reply = await self._script(
                    keys=list(command[3 : 3 + numkeys]), args=list(command[3 + numkeys :])
                )
                results[username] = int(reply)
        return results
