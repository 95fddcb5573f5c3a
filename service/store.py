"""The session data layer: every change is one atomic Lua script on the user's slot.

The store knows nothing of HTTP; it is handed a Redis client (decode_responses=True)
and raises its own errors.
"""

from __future__ import annotations

import logging
import time
from importlib.resources import files
from typing import Literal

import msgspec
import redis.asyncio as redis

from service import keys
from service.schemas import Actor, Revocation, Session, from_ms
from service.settings import Settings

EVENT_LOG_LENGTH = 500
# Records and tombstones outlive their deadline a little, so a sweeper that runs late
# still has the device's details for its notice. Deadlines themselves are exact.
GRACE_MS = 60_000

log = logging.getLogger(__name__)

RevokeMode = Literal["one", "others", "all"]


class StoredSession(msgspec.Struct, kw_only=True):
    """A session as the scripts keep it (times in ms since the epoch)."""

    session_id: str
    device_id: str = ""
    device_name: str = ""
    user_agent: str = ""
    ip: str = ""
    created_ms: int = 0
    seen_ms: int = 0
    max_ms: int = 0
    idle_ms: int = 0

    @property
    def deadline_ms(self) -> int:
        return min(self.seen_ms + self.idle_ms, self.max_ms)

    def to_wire(self) -> Session:
        return Session(
            session_id=self.session_id,
            device_id=self.device_id or None,
            device_name=self.device_name,
            user_agent=self.user_agent,
            ip=self.ip,
            created_at=from_ms(self.created_ms),
            last_seen_at=from_ms(self.seen_ms),
            expires_at=from_ms(self.deadline_ms),
        )

    def as_actor(self) -> Actor:
        return Actor(session_id=self.session_id, device_name=self.device_name, ip=self.ip)


class Event(msgspec.Struct, kw_only=True):
    """One entry of a user's event log, as published on the user's channel."""

    id: str
    type: Literal["session.created", "session.revoked"]
    user: str
    session_id: str
    at: int
    reason: str | None = None
    by: Actor | None = None
    session: StoredSession


class Tombstone(msgspec.Struct, kw_only=True):
    reason: str
    at: int
    by: Actor | None = None

    def to_wire(self) -> Revocation:
        return Revocation(reason=self.reason, at=from_ms(self.at), by=self.by)  # type: ignore[arg-type]


class SessionGone(Exception):
    """The session does not exist (any more); `tombstone` says why, while it lives."""

    def __init__(self, tombstone: Tombstone | None) -> None:
        super().__init__("session is not active")
        self.tombstone = tombstone


_session_decoder = msgspec.json.Decoder(StoredSession)
_tombstone_decoder = msgspec.json.Decoder(Tombstone)
event_decoder = msgspec.json.Decoder(Event)
_json = msgspec.json.Encoder()


def _load_script(name: str, *, with_library: bool = True) -> str:
    lua = files("service") / "lua"
    library = (lua / "lib.lua").read_text() + "\n" if with_library else ""
    return library + (lua / f"{name}.lua").read_text()


def _session_from(fields: dict[str, str]) -> StoredSession | None:
    """A record as read by HGETALL; a corrupt one counts as no session, never a 500."""
    if not fields:
        return None
    try:
        return msgspec.convert(fields, StoredSession, strict=False)
    except msgspec.ValidationError:
        log.error("corrupt session record %s; treating it as signed out", fields.get("session_id"))
        return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def decode_tombstone(raw: str | None) -> Tombstone | None:
    """A corrupt tombstone is treated as absent, never as a 500."""
    if not raw:
        return None
    try:
        return _tombstone_decoder.decode(raw)
    except msgspec.DecodeError:  # malformed JSON, or valid JSON of the wrong shape
        return None


class SessionStore:
    """Create, check, list and revoke sessions for the service and the worker."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.idle_ms = settings.session_idle_timeout * 1000
        self.max_age_ms = settings.session_max_age * 1000
        self.touch_ms = settings.session_touch_interval * 1000
        self.max_sessions = settings.max_sessions_per_user
        self._create = client.register_script(_load_script("create"))
        self._touch = client.register_script(_load_script("touch", with_library=False))
        self._revoke = client.register_script(_load_script("revoke"))
        self._expire = client.register_script(_load_script("expire"))
        self._list = client.register_script(_load_script("list"))

    @staticmethod
    def _common(username: str, now: int) -> tuple[list[str], list[object]]:
        args: list[object] = [keys.user_prefix(username), now, GRACE_MS, EVENT_LOG_LENGTH, username]
        return [keys.session_index(username)], args

    async def create(
        self,
        username: str,
        *,
        session_id: str,
        device_id: str,
        device_name: str,
        user_agent: str,
        ip: str,
    ) -> tuple[StoredSession, list[str]]:
        """Create a session; returns it and the sessions it replaced or evicted."""
        now = now_ms()
        key_list, args = self._common(username, now)
        by = Actor(session_id=session_id, device_name=device_name, ip=ip)
        args += [session_id, device_id, device_name, user_agent, ip]
        args += [self.idle_ms, self.max_age_ms, self.max_sessions, _json.encode(by).decode()]
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._create(keys=key_list, args=args, client=pipe)
            first_deadline = min(now + self.idle_ms, now + self.max_age_ms)
            pipe.zadd(keys.DUE_INDEX, {keys.due_member(username, session_id): first_deadline})
            (raw, revoked), _ = await pipe.execute()
        return _session_decoder.decode(raw), list(revoked)

    async def check(self, username: str, session_id: str) -> StoredSession:
        """Return the live session, recording activity; raise SessionGone if it ended.

        One HGETALL per request; a write only once per touch interval. A session found
        past its deadline is expired on the spot, so its device is notified even if the
        sweeper has not come by yet.
        """
        record_key = keys.session_record(username, session_id)
        fields = await self.redis.hgetall(record_key)
        now = now_ms()
        session = _session_from(fields)
        if session is not None:
            if session.deadline_ms > now and now - session.seen_ms < self.touch_ms:
                return session
            state = await self._touch(
                keys=[record_key, keys.session_index(username)], args=[now, GRACE_MS, session_id]
            )
            if state == 1:
                session.seen_ms = now
                return session
            if state == 2:
                await self.expire(username, session_id)
        raise SessionGone(await self.tombstone(username, session_id))

    async def list(self, username: str) -> list[StoredSession]:
        """Live sessions, most recently seen first."""
        key_list, args = self._common(username, now_ms())
        return [_session_decoder.decode(raw) for raw in await self._list(keys=key_list, args=args)]

    async def revoke(
        self, username: str, mode: RevokeMode, session_id: str, reason: str, by: Actor | None
    ) -> list[str]:
        """Revoke one session, all but `session_id`, or all; returns the ids revoked."""
        key_list, args = self._common(username, now_ms())
        by_json = _json.encode(by).decode()
        return list(
            await self._revoke(keys=key_list, args=[*args, mode, session_id, reason, by_json])
        )

    async def expire(self, username: str, session_id: str) -> tuple[list[str], int | None]:
        """Revoke the user's sessions past their deadline; return `session_id`'s deadline."""
        key_list, args = self._common(username, now_ms())
        revoked, deadline = await self._expire(keys=key_list, args=[*args, session_id])
        return list(revoked), (None if deadline < 0 else int(deadline))

    async def tombstone(self, username: str, session_id: str) -> Tombstone | None:
        return decode_tombstone(await self.redis.get(keys.tombstone(username, session_id)))
