"""What the session scripts store and emit: records, tombstones and events (times in ms)."""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from service.wire.schemas import (
    ActivityEvent,
    ActivitySession,
    Actor,
    DeviceType,
    FailureSource,
    Location,
    LoginFailures,
    Revocation,
    Session,
    from_ms,
)

log = logging.getLogger(__name__)


def deadline_ms(seen_ms: int, idle_ms: int, max_ms: int) -> int:
    """When a session ends: idle for too long, or too old. lib.lua's `deadline` is its twin."""
    return min(seen_ms + idle_ms, max_ms)


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
    # Parsed from the User-Agent at sign-in (service/sessions/devices.py); "" is unknown.
    browser: str = ""
    os: str = ""
    device_type: str = "unknown"
    # Where `ip` is (service/sessions/geoip.py), flat like every field of the hash:
    # `loc` is "" (unknown), "net" (this network) or "geo" (the loc_* fields say where).
    loc: str = ""
    loc_country: str = ""
    loc_cc: str = ""
    loc_region: str = ""
    loc_city: str = ""
    # Online until then (ms): the latest deadline of its sockets' presence; 0: no socket.
    online_until: int = 0

    @property
    def deadline_ms(self) -> int:
        return deadline_ms(self.seen_ms, self.idle_ms, self.max_ms)

    def location(self) -> Location | None:
        if self.loc == "net":
            return Location(
                country=None, country_code=None, region=None, city=None, this_network=True
            )
        if self.loc != "geo":
            return None
        return Location(
            country=self.loc_country or None,
            country_code=self.loc_cc or None,
            region=self.loc_region or None,
            city=self.loc_city or None,
            this_network=False,
        )

    def to_wire(self, now_ms: int | None = None, *, online: bool | None = None) -> Session:
        """The session as clients see it; online when a socket's presence is live at
        `now_ms` (None: not known to be, as in a webhook's copy), unless `online` says."""
        if online is None:
            online = now_ms is not None and self.online_until > now_ms
        device_type: DeviceType = self.device_type  # type: ignore[assignment]
        if device_type not in ("desktop", "phone", "tablet", "terminal"):
            device_type = "unknown"
        return Session(
            session_id=self.session_id,
            device_id=self.device_id or None,
            device_name=self.device_name,
            user_agent=self.user_agent,
            ip=self.ip or None,
            created_at=from_ms(self.created_ms),
            last_seen_at=from_ms(self.seen_ms),
            expires_at=from_ms(self.deadline_ms),
            online=online,
            browser=self.browser or None,
            os=self.os or None,
            device_type=device_type,
            location=self.location(),
        )

    def as_actor(self) -> Actor:
        return Actor(session_id=self.session_id, device_name=self.device_name, ip=self.ip or None)


class Tombstone(msgspec.Struct, kw_only=True):
    """Why and when a session ended, kept while its token could still be presented."""

    reason: str
    at: int
    by: Actor | None = None

    def to_wire(self) -> Revocation:
        return Revocation(reason=self.reason, at=from_ms(self.at), by=self.by)  # type: ignore[arg-type]


class Event(msgspec.Struct, kw_only=True):
    """One entry of a user's event log; `id` is its stream id (absent from the stored JSON)."""

    id: str = ""
    # Renames are logged (not in the outbox); online/offline are published only (no id).
    type: Literal[
        "session.created", "session.revoked", "session.renamed", "session.online", "session.offline"
    ]
    user: str
    session_id: str
    at: int
    reason: str | None = None
    by: Actor | None = None
    session: StoredSession

    def to_activity(self) -> ActivityEvent:
        """The event as the user's activity log shows it."""
        revoked = self.type == "session.revoked"
        shows_by = revoked or self.type == "session.renamed"
        return ActivityEvent(
            id=self.id,
            type=self.type,  # type: ignore[arg-type]
            at=from_ms(self.at),
            session=ActivitySession(
                session_id=self.session_id,
                device_name=self.session.device_name,
                ip=self.session.ip or None,
            ),
            # A created event names its own device as `by`: that is no news to the user.
            reason=self.reason if revoked else None,  # type: ignore[arg-type]
            by=self.by if shows_by else None,
        )


class FailureWindow(msgspec.Struct, kw_only=True):
    """One entry of a user's failed sign-ins, as attempts.lua aggregates them (times in ms)."""

    first: int
    last: int
    failed: int = 0
    refused: int = 0
    locked_until: int = 0
    ips: list[FailureSource] = []
    other_ips: int = 0

    def to_activity(self) -> ActivityEvent:
        return ActivityEvent(
            id=f"{self.first}-failures",
            type="login.failed",
            at=from_ms(self.last),
            session=None,
            reason=None,
            by=None,
            failures=LoginFailures(
                first_at=from_ms(self.first),
                attempts=self.failed,
                refused=self.refused,
                locked_until=from_ms(self.locked_until) if self.locked_until else None,
                ips=self.ips,
                other_ips=self.other_ips,
            ),
        )


session_decoder = msgspec.json.Decoder(StoredSession)
failure_decoder = msgspec.json.Decoder(FailureWindow)
event_decoder = msgspec.json.Decoder(Event)
_tombstone_decoder = msgspec.json.Decoder(Tombstone)


def session_from_hash(fields: dict[str, str]) -> StoredSession | None:
    """A record as read by HGETALL; a corrupt one counts as no session, never a 500."""
    if not fields:
        return None
    try:
        return msgspec.convert(fields, StoredSession, strict=False)
    except msgspec.ValidationError:
        log.error("corrupt session record %s; treating it as signed out", fields.get("session_id"))
        return None


def decode_tombstone(raw: str | None) -> Tombstone | None:
    """A corrupt tombstone is treated as absent, never as a 500."""
    if not raw:
        return None
    try:
        return _tombstone_decoder.decode(raw)
    except msgspec.DecodeError:  # malformed JSON, or valid JSON of the wrong shape
        return None
