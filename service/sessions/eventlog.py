"""Each user's event log (a capped Redis stream) and channel, for whoever replays or listens.

Pub/sub is at-most-once, so the log is the source of truth: a listener that joins, or lost
its subscription, replays a user's log from a cursor, and re-checks sessions whose notice
may be gone for good (a trimmed log, a Redis that restarted empty).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec

from service.engine.connect import RedisClient
from service.sessions import keys
from service.sessions.records import (
    Event,
    FailureWindow,
    Tombstone,
    decode_tombstone,
    event_decoder,
    failure_decoder,
)

log = logging.getLogger(__name__)

StreamId = tuple[int, int]
ZERO_ID: StreamId = (0, 0)


def parse_id(raw: str) -> StreamId:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def last_id_command(username: str) -> tuple[str, ...]:
    """The read of the id of the user's latest event; `last_id` makes it a StreamId."""
    return ("XREVRANGE", keys.event_log(username), "+", "-", "COUNT", "1")


def last_id(reply: list[tuple[str, dict[str, str]]]) -> StreamId:
    """The id that `last_id_command` read (ZERO_ID when the log is empty)."""
    return parse_id(reply[0][0]) if reply else ZERO_ID


def decode_entry(entry_id: str, fields: dict[str, str]) -> Event:
    """An event from a log entry: the stored JSON lacks the id, which is the entry's."""
    event = event_decoder.decode(fields.get("e", ""))
    event.id = entry_id
    return event


@dataclass(frozen=True, slots=True)
class ReplayQuery:
    """Replay `username`'s log after `since`, and re-check these sessions."""

    username: str
    since: StreamId
    recheck: tuple[str, ...] = ()


@dataclass(slots=True)
class Replay:
    events: list[Event] = field(default_factory=list)
    # Re-checked sessions that no longer exist, with their tombstone while it lives.
    gone: dict[str, Tombstone | None] = field(default_factory=dict)


class EventLog:
    """Reads users' logs; it is handed a client (decode_responses=True)."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client

    async def recent(self, username: str, limit: int) -> list[Event]:
        """The user's latest `limit` events, newest first (what the log still holds)."""
        entries = await self.redis.xrevrange(keys.event_log(username), "+", "-", count=limit)
        return _decode_entries(username, entries)

    async def failures(self, username: str, limit: int) -> list[FailureWindow]:
        """The user's latest `limit` windows of failed sign-ins, newest first (a record of
        its own, beside the log: guesses never push session events out)."""
        entries = await self.redis.lrange(keys.signin_failures(username), 0, limit - 1)
        windows = []
        for raw in entries:
            try:
                windows.append(failure_decoder.decode(raw))
            except msgspec.DecodeError as exc:
                log.error("skipping a failed sign-in entry of %s: %s", username, exc)
        return windows

    async def replay(self, queries: list[ReplayQuery]) -> list[Replay]:
        """Each query's events after its cursor and its re-checks, in one pipelined read."""
        if not queries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for query in queries:
                first = "-" if query.since == ZERO_ID else f"({format_id(query.since)}"
                pipe.xrange(keys.event_log(query.username), first)
                for session_id in query.recheck:
                    pipe.exists(keys.session_record(query.username, session_id))
                    pipe.get(keys.tombstone(query.username, session_id))
            results = iter(await pipe.execute())
        replays = []
        for query in queries:
            replay = Replay(events=_decode_entries(query.username, next(results)))
            for session_id in query.recheck:
                exists, tomb = next(results), next(results)
                if not exists:
                    replay.gone[session_id] = decode_tombstone(tomb)
            replays.append(replay)
        return replays


def _decode_entries(username: str, entries: list[tuple[str, dict[str, str]]]) -> list[Event]:
    events = []
    for entry_id, fields in entries:
        try:
            events.append(decode_entry(entry_id, fields))
        except msgspec.DecodeError as exc:  # one bad entry never stops a replay
            log.error("skipping log entry %s of %s: %s", entry_id, username, exc)
    return events
