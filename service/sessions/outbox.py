"""The outbox of events out: one stream per hash slot, written by the session scripts.

Each session script appends its event to the outbox of the user's own slot (lib.lua
`emit`), in the same atomic step as the change, and publishes a wake-up on the slot's
channel. Next to each outbox, on the same slot, a hash holds the slot's delivery state:
each endpoint's cursor (what it took in) and its pending deliveries. So taking events in,
settling a delivery and replaying are one-slot writes too, and everything of a slot moves
with it in a reshard. Receivers of another kind (SSF streams) are endpoints here as well:
their own id, cursor and pending set (docs/EVENTS.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import AskError, NoScriptError, ResponseError

from service.engine.base import Engine, Node, NodeGone
from service.engine.connect import RedisClient
from service.engine.errors import REDIS_DOWN
from service.sessions import keys
from service.sessions.eventlog import decode_entry
from service.sessions.records import Event
from service.sessions.scripts import plain_script

CHUNK = 512  # commands per write to one node
INTAKE_COUNT = 200  # events one endpoint takes from one slot per intake
REPLAY_COUNT = 1000  # events one replay script reads


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An endpoint as the outbox knows it: what it takes, and where a slot starts for it."""

    id: str
    types: tuple[str, ...]  # empty: every type
    created_ms: int

    @property
    def start(self) -> str:
        """The cursor of a slot the endpoint never read: the last id before its creation."""
        return f"{self.created_ms - 1}-18446744073709551615"


@dataclass(slots=True)
class Pending:
    """A delivery not yet done: a message for `endpoint`, tried `attempts` times."""

    slot: int
    endpoint: str
    event_id: str
    attempts: int = 0
    due_ms: int = 0
    replayed: bool = False  # queued again by a replay: sent even if it was just delivered

    @property
    def field(self) -> str:
        return _pending_field(self.endpoint, self.event_id)

    def change(self, done: bool) -> tuple[int, str, str | None]:
        """This delivery's state to write: forgotten when done, else its attempts and due."""
        return self.slot, self.field, None if done else f"{self.attempts}:{self.due_ms}"


@dataclass(slots=True)
class SlotState:
    slot: int
    last_id: str  # of the outbox's newest event; empty when it has none
    cursors: dict[str, str] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # fields of endpoints that are gone


@dataclass(slots=True)
class Intake:
    """What one slot's intake took: the events, and which endpoint took which."""

    slot: int
    events: dict[str, Event]
    taken: dict[str, list[str]]
    more: bool


class Outbox:
    """The outbox and delivery state of every slot; handed a client and its engine."""

    def __init__(self, client: RedisClient, engine: Engine) -> None:
        self.redis, self.engine = client, engine
        self._intake = client.register_script(plain_script("outbox_intake"))
        self._replay = client.register_script(plain_script("outbox_replay"))
        self._json = msgspec.json.Encoder()

    async def states(self, slots: Iterable[int], endpoints: set[str]) -> list[SlotState]:
        """Each slot's last outbox id and delivery state, one write per node and chunk."""
        slots = list(slots)
        commands = []
        for slot in slots:
            commands.append((keys.outbox_state(slot), ("HGETALL", keys.outbox_state(slot))))
            commands.append(
                (keys.outbox(slot), ("XREVRANGE", keys.outbox(slot), "+", "-", "COUNT", 1))
            )
        replies = await self._run(commands)
        states = []
        for i, slot in enumerate(slots):
            fields, last = _as_dict(replies[2 * i]), replies[2 * i + 1]
            states.append(_slot_state(slot, last[0][0] if last else "", fields, endpoints))
        return states

    async def events(self, slot: int, ids: Sequence[str]) -> dict[str, Event]:
        """The outbox's events of these ids; an id trimmed away is missing from the answer."""
        outbox = keys.outbox(slot)
        replies = await self._run([(outbox, ("XRANGE", outbox, i, i)) for i in ids])
        found = {}
        for reply in replies:
            for entry_id, fields in reply:
                with contextlib.suppress(msgspec.DecodeError):  # a corrupt one is gone too
                    found[entry_id] = decode_entry(entry_id, _as_dict(fields))
        return found

    async def intake(
        self, slots: Sequence[int], subscribers: Sequence[Subscriber], now_ms: int
    ) -> list[Intake]:
        """Take each slot's new events into its endpoints' pending deliveries."""
        endpoints = [{"id": s.id, "start": s.start, "types": list(s.types)} for s in subscribers]
        argument = self._json.encode({"now": now_ms, "count": INTAKE_COUNT, "endpoints": endpoints})
        calls = [([keys.outbox(slot), keys.outbox_state(slot)], [argument]) for slot in slots]
        replies = await self._scripts(self._intake, calls)
        intakes = []
        for slot, (more, entries, taken) in zip(slots, replies, strict=True):
            events = {}
            for entry_id, fields in entries:
                with contextlib.suppress(msgspec.DecodeError):
                    events[entry_id] = decode_entry(entry_id, _as_dict(fields))
            by_endpoint = {s.id: list(ids) for s, ids in zip(subscribers, taken, strict=True)}
            intakes.append(Intake(slot, events, by_endpoint, bool(more)))
        return intakes

    async def settle(self, changes: Sequence[tuple[int, str, str | None]]) -> None:
        """Write deliveries' state, in order: (slot, field, value), where the value is
        `<attempts>:<due ms>` for a retry and None for a delivery done (forgotten)."""
        commands: list[KeyedCommand] = []
        for slot, name, value in changes:
            state = keys.outbox_state(slot)
            command = ("HDEL", state, name) if value is None else ("HSET", state, name, value)
            commands.append((state, command))
        await self._run(commands)

    async def forget(self, slot: int, fields: Sequence[str]) -> None:
        """Drop state fields of endpoints that no longer exist."""
        if fields:
            state = keys.outbox_state(slot)
            await self._run([(state, ("HDEL", state, *fields))])

    async def replay(self, subscriber: Subscriber, since_ms: int, now_ms: int) -> int:
        """Queue every retained event since `since_ms` for the endpoint again; how many."""
        queued = 0
        start = {slot: f"{since_ms}-0" for slot in range(keys.SLOTS)}
        while start:
            slots = list(start)
            calls = []
            for slot in slots:
                argument = {
                    "endpoint": subscriber.id,
                    "start": subscriber.start,
                    "from": start[slot],
                    "count": REPLAY_COUNT,
                    "types": list(subscriber.types),
                    "now": now_ms,
                }
                slot_keys = [keys.outbox(slot), keys.outbox_state(slot), keys.outbox_wake(slot)]
                calls.append((slot_keys, [self._json.encode(argument)]))
            replies = await self._scripts(self._replay, calls)
            start = {}
            for slot, (count, last) in zip(slots, replies, strict=True):
                queued += int(count)
                if last:
                    start[slot] = f"({last}"
        return queued

    async def trim(self, slots: Sequence[int], oldest_ms: int) -> dict[int, int]:
        """Drop events older than `oldest_ms` from these outboxes; their lengths after."""
        commands: list[KeyedCommand] = []
        for slot in slots:
            outbox = keys.outbox(slot)
            commands.append((outbox, ("XTRIM", outbox, "MINID", "=", oldest_ms)))
            commands.append((outbox, ("XLEN", outbox)))
        replies = await self._run(commands)
        return {slot: int(replies[2 * i + 1]) for i, slot in enumerate(slots)}

    # -- one write per node ----------------------------------------------------------------

    async def _scripts(
        self, script: Any, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        commands = [
            (slot_keys[0], ("EVALSHA", script.sha, len(slot_keys), *slot_keys, *args))
            for slot_keys, args in calls
        ]
        try:
            return await self._run(commands)
        except NoScriptError:  # a node that restarted, or a promoted replica
            await self.redis.script_load(script.script)
            return await self._run(commands)

    async def _run(self, commands: Sequence[KeyedCommand]) -> list[Any]:
        return await run_keyed(self.engine, commands)


KeyedCommand = tuple[str, tuple[Any, ...]]  # (the key that routes it, the command)


async def run_keyed(engine: Engine, commands: Sequence[KeyedCommand]) -> list[Any]:
    """Each command on the master of its key, those of one node in one write per chunk.

    The first error answered raises: the caller retries the whole step (every step of the
    delivery duty may run twice). A slot that moved refreshes the map first.
    """
    by_node: dict[Node, list[int]] = {}
    for i, (key, _) in enumerate(commands):
        by_node.setdefault(engine.node_of(key), []).append(i)
    replies: list[Any] = [None] * len(commands)
    for node, indexes in by_node.items():
        for at in range(0, len(indexes), CHUNK):
            part = indexes[at : at + CHUNK]
            try:
                answers = await engine.run_on(node, [commands[i][1] for i in part])
            except NodeGone:
                await engine.refresh()
                raise
            for i, answer in zip(part, answers, strict=True):
                replies[i] = answer
    for reply in replies:
        if isinstance(reply, AskError):
            with contextlib.suppress(*REDIS_DOWN):
                await engine.refresh()
            raise reply
        if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
            raise NoScriptError(str(reply))
        if isinstance(reply, Exception):
            raise reply
    return replies


def _pending_field(endpoint: str, event_id: str) -> str:
    return f"p:{endpoint}:{event_id}"


def _as_dict(reply: Any) -> dict[str, str]:
    """A hash or an entry's fields, as RESP3 (a map) or RESP2 (a flat list) gave them."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _slot_state(slot: int, last_id: str, fields: dict[str, str], endpoints: set[str]) -> SlotState:
    state = SlotState(slot, last_id)
    for name, value in fields.items():
        kind, _, rest = name.partition(":")
        endpoint, _, event_id = rest.partition(":")
        if endpoint not in endpoints:
            state.strays.append(name)
        elif kind == "c":
            state.cursors[endpoint] = value
        elif kind == "p":
            attempts, due, *mark = [*value.split(":"), ""][:3]
            replayed = mark == ["replay"]
            with contextlib.suppress(ValueError):  # a corrupt one is sent as new
                pending = Pending(slot, endpoint, event_id, int(attempts), int(due), replayed)
                state.pending.append(pending)
                continue
            state.pending.append(Pending(slot, endpoint, event_id))
    return state
