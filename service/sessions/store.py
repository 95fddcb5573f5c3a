"""The session data layer: every change is one atomic Lua script on the user's slot.

The store knows nothing of HTTP; it is handed a Redis client (decode_responses=True) and a
clock, and raises its own errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import msgspec

from service.clock import SYSTEM_CLOCK, Clock
from service.engine.base import Engine
from service.engine.batcher import ReadBatcher
from service.engine.connect import RedisClient
from service.engine.factory import engine_for
from service.engine.replication import AcknowledgedWrites
from service.sessions import keys
from service.sessions.eventlog import StreamId, last_id, last_id_command
from service.sessions.records import (
    StoredSession,
    Tombstone,
    deadline_ms,
    decode_tombstone,
    session_decoder,
    session_from_hash,
)
from service.sessions.scripts import session_script
from service.settings import Settings
from service.wire.schemas import Actor

log = logging.getLogger(__name__)

EVENT_LOG_LENGTH = 500
# Records and tombstones outlive their deadline a little, so a sweeper that runs late
# still has the device's details for its notice. Deadlines themselves are exact.
GRACE_MS = 60_000
# Revoked credentials (digests of password hashes `service.users passwd|remove` replaced)
# per user: the last few, for a month. Long enough for any sign-in in flight, and for an
# API process that failed to reread its users file (it logs so) or a host whose copy of
# the file was not updated: their sign-ins with the old password keep being refused.
MAX_REVOKED_CREDENTIALS = 16
REVOKED_CREDENTIALS_MS = 30 * 24 * 3600 * 1000

RevokeMode = Literal["one", "others", "all"]


class Touch(StrEnum):
    """What touch.lua found."""

    TOUCHED = "touched"
    GONE = "gone"
    EXPIRED = "expired"


class CredentialsRevoked(Exception):
    """The password hash a sign-in checked was replaced or removed since: no session."""


class SessionTooNew(Exception):
    """The fresh-session guard: this session may end the user's older ones only later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"this session may end older ones in {retry_after} s")
        self.retry_after = retry_after


class SessionGone(Exception):
    """The session does not exist (any more); `tombstone` says why, while it lives."""

    def __init__(self, tombstone: Tombstone | None) -> None:
        super().__init__("session is not active")
        self.tombstone = tombstone


@dataclass(frozen=True, slots=True)
class Due:
    """An entry of the due-time index: a session whose deadline may have passed."""

    bucket: int
    member: str

    @property
    def username(self) -> str:
        return keys.parse_due_member(self.member)[0]

    @property
    def session_id(self) -> str:
        return keys.parse_due_member(self.member)[1]


_json = msgspec.json.Encoder()


class SessionStore:
    """Create, check, list, revoke and expire sessions, for the service and the worker.

    Scripts that revoke or expire (create may replace or evict) are acknowledged by a
    replica before they return (service/replication.py): their events are in the outbox.
    The due index is another slot than the user's, so it is written around the script, in
    a crash-safe order: an entry is added before its session exists and removed after it
    is gone; a stray entry only costs the sweeper a look, while a session without one
    would never be swept.
    """

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        *,
        engine: Engine | None = None,
        reads: ReadBatcher | None = None,
        on_unacknowledged: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis, self.clock = client, clock
        engine = engine or engine_for(client)
        self.reads = reads or ReadBatcher(engine)
        self.idle_ms = settings.session_idle_timeout * 1000
        self.max_age_ms = settings.session_max_age * 1000
        self.touch_ms = settings.session_touch_interval * 1000
        self.max_sessions = settings.max_sessions_per_user
        self.max_tombstones = settings.max_tombstones_per_user
        self.guard_ms = settings.fresh_session_guard * 1000
        self.retention_ms = settings.events_retention * 1000
        self._acknowledged = AcknowledgedWrites(engine, on_unacknowledged)
        self._create = client.register_script(session_script("create"))
        self._touch = client.register_script(session_script("touch"))
        self._revoke = client.register_script(session_script("revoke"))
        self._expire = client.register_script(session_script("expire"))
        self._list = client.register_script(session_script("list"))
        self._rename = client.register_script(session_script("rename"))

    def _call_args(self, username: str, now: int, **named: Any) -> dict[str, Any]:
        """KEYS and the one JSON argument every session script takes (see lib.lua)."""
        user_keys = keys.script_keys(username)
        arguments = {
            "now": now,
            "grace": GRACE_MS,
            "log_len": EVENT_LOG_LENGTH,
            "user": username,
            "record_prefix": keys.session_record(username, ""),
            "tomb_prefix": keys.tombstone(username, ""),
            "max_tombstones": self.max_tombstones,
            "keep_ms": self.max_age_ms + GRACE_MS,
            "retention_ms": self.retention_ms,
            **named,
        }
        return {"keys": user_keys, "args": [_json.encode(arguments)]}

    async def create(
        self,
        username: str,
        *,
        session_id: str,
        device_id: str,
        device_name: str,
        user_agent: str,
        ip: str,
        credentials: str = "",
        details: Mapping[str, str] | None = None,
    ) -> tuple[StoredSession, list[str]]:
        """Create a session; returns it and the sessions it replaced or evicted.

        `credentials` (a password sign-in's: the digest of the hash it checked) must not
        have been revoked since, or CredentialsRevoked is raised and nothing is created.
        `details`: more of StoredSession's string fields (browser, os, device_type, loc*).
        """
        now = self.clock.now_ms()
        fields = {
            **(details or {}),
            "session_id": session_id,
            "device_id": device_id,
            "device_name": device_name,
            "user_agent": user_agent,
            "ip": ip,
        }
        call = self._call_args(
            username,
            now,
            session=fields,
            idle_ms=self.idle_ms,
            max_age_ms=self.max_age_ms,
            max_sessions=self.max_sessions,
            by=Actor(session_id=session_id, device_name=device_name, ip=ip or None),
            credentials=credentials,
        )
        first_deadline = deadline_ms(now, self.idle_ms, now + self.max_age_ms)
        member = keys.due_member(username, session_id)
        await self.redis.zadd(keys.due_index_of(username), {member: first_deadline})
        raw, revoked, reasons = await self._acknowledged.run(self._create, **call)
        if raw is None:
            await self._forget_due(username, [session_id])
            raise CredentialsRevoked()
        await self._forget_due(username, revoked)
        by = Actor(session_id=session_id, device_name=device_name, ip=ip or None)
        for ended, reason in zip(revoked, reasons, strict=True):
            _log_end(username, ended, reason, by if reason != "expired" else None)
        return session_decoder.decode(raw), list(revoked)

    async def check(self, username: str, session_id: str) -> StoredSession:
        """Return the live session, recording activity; raise SessionGone if it ended.

        One HGETALL per request, in a pipeline shared with concurrent requests; a write
        only once per touch interval. A session found past its deadline is expired on the
        spot, so its device is notified even if the sweeper has not come by yet.
        """
        fields = await self.reads.execute("HGETALL", keys.session_record(username, session_id))
        return await self._judge(username, session_id, fields)

    async def check_with_cursor(
        self, username: str, session_id: str
    ) -> tuple[StreamId, StoredSession]:
        """The id of the user's latest event, then `check`, both read in one trip.

        Redis reads the log's position first (the two never leave in different pipelines),
        so whatever changes after the check is in the log after that position: a device
        that replays from it once subscribed misses nothing (workers/gateway.py).
        """
        position, fields = await self.reads.execute_together(
            last_id_command(username), ("HGETALL", keys.session_record(username, session_id))
        )
        return last_id(position), await self._judge(username, session_id, fields)

    async def _judge(self, username: str, session_id: str, fields: dict[str, str]) -> StoredSession:
        """The session from its record as read, touched when due; SessionGone if it ended."""
        now = self.clock.now_ms()
        session = session_from_hash(fields)
        if session is not None:
            if session.deadline_ms > now and now - session.seen_ms < self.touch_ms:
                return session
            found = await self._touch(**self._call_args(username, now, session_id=session_id))
            if found == Touch.TOUCHED:
                session.seen_ms = now
                return session
            if found == Touch.EXPIRED:
                await self.expire(username, session_id)
        raise SessionGone(await self.tombstone(username, session_id))

    async def list(self, username: str) -> list[StoredSession]:
        """Live sessions, most recently seen first."""
        found = await self._list(**self._call_args(username, self.clock.now_ms()))
        return [session_decoder.decode(raw) for raw in found]

    async def rename(
        self, username: str, session_id: str, device_name: str, by: Actor | None
    ) -> StoredSession | None:
        """Give a live session's device a new name (None: no such session); its devices
        are told, and the user's activity log has it."""
        call = self._call_args(
            username, self.clock.now_ms(), session_id=session_id, device_name=device_name, by=by
        )
        raw = await self._rename(**call)
        if not raw:
            return None
        log.info(
            "session %s of %s renamed to %r by %s",
            session_id,
            username,
            device_name,
            by.session_id if by else "the admin API",
        )
        return session_decoder.decode(raw)

    async def revoke(
        self,
        username: str,
        mode: RevokeMode,
        session_id: str,
        reason: str,
        by: Actor | None,
        *,
        credentials: str = "",
    ) -> list[str]:
        """Revoke one session, all but `session_id`, or all; returns the ids revoked.

        With `credentials` (the digest of a password hash just replaced or removed), in the
        same step no sign-in checked against that hash can open a session any more.

        `by` is the device asking, or None (the admin API, a password change). A device
        must still be signed in (else SessionGone), and the fresh-session guard holds for
        it (else SessionTooNew); both are judged in the revoke's own script.
        """
        call = self._call_args(
            username,
            self.clock.now_ms(),
            mode=mode,
            target=session_id,
            reason=reason,
            by=by,
            credentials=credentials,
            max_credentials=MAX_REVOKED_CREDENTIALS,
            credentials_ms=REVOKED_CREDENTIALS_MS,
            guard_ms=self.guard_ms,
        )
        outcome, *found = await self._acknowledged.run(self._revoke, **call)
        if outcome == "too_new":
            raise SessionTooNew(max(1, math.ceil(int(found[0]) / 1000)))
        if outcome == "gone" and by is not None:
            raise SessionGone(await self.tombstone(username, by.session_id))
        revoked = list(found[0])
        await self._forget_due(username, revoked)
        for ended in revoked:
            _log_end(username, ended, reason, by)
        return revoked

    async def expire(self, username: str, session_id: str) -> tuple[list[str], int | None]:
        """Revoke the user's sessions past their deadline; return `session_id`'s deadline.

        Acknowledged by a replica like a revoke: the expiry's event is in the outbox, and
        the sweeper drops the session's due-index entry once it returns, so an expiry lost
        in a failover would neither be delivered nor happen again by itself.
        """
        call = self._call_args(username, self.clock.now_ms(), session_id=session_id)
        revoked, deadline = await self._acknowledged.run(self._expire, **call)
        await self._forget_due(username, revoked)
        for ended in revoked:
            _log_end(username, ended, "expired", None)
        return list(revoked), (None if deadline < 0 else int(deadline))

    async def tombstone(self, username: str, session_id: str) -> Tombstone | None:
        return decode_tombstone(await self.redis.get(keys.tombstone(username, session_id)))

    async def due(self, limit: int) -> list[Due]:
        """Due-index entries whose deadline has passed: up to `limit` of each bucket."""
        now = self.clock.now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in range(keys.DUE_BUCKETS):
                pipe.zrangebyscore(keys.due_index(bucket), "-inf", now, 0, limit)
            found = await pipe.execute()
        return [Due(bucket, m) for bucket, members in enumerate(found) for m in members]

    async def reschedule(self, due: Due, deadline: int | None) -> None:
        """Look at `due` again at `deadline` (ms), or never (None: its session is gone)."""
        index = keys.due_index(due.bucket)
        if deadline is None:
            await self.redis.zrem(index, due.member)
        else:
            await self.redis.zadd(index, {due.member: deadline}, xx=True)

    async def _forget_due(self, username: str, session_ids: list[str]) -> None:
        """Ended sessions leave the due index at once (their entries would pile up)."""
        if session_ids:
            members = [keys.due_member(username, sid) for sid in session_ids]
            await self.redis.zrem(keys.due_index_of(username), *members)


def _log_end(username: str, session_id: str, reason: str, by: Actor | None) -> None:
    """One line per session that ended, whoever ended it: the API, the admin API, the
    sweeper or the users command (sign-ins have theirs in api/signin.py)."""
    who = f"session {by.session_id} ({by.device_name!r}, {by.ip or 'no address'})" if by else "-"
    log.info(
        "session %s of %s ended: %s, by %s",
        session_id,
        username,
        reason,
        who,
        extra={"session_id": session_id, "username": username, "reason": reason, "by": who},
    )
