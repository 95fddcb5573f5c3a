"""Session events as the frames devices are sent (service/wire/messages.py), each encoded once."""

from __future__ import annotations

from typing import Literal

from service.sessions.records import Event, Tombstone
from service.wire.messages import SessionRevoked, SessionsChanged, encode
from service.wire.schemas import from_ms

FALLBACK_REASON = "expired"  # a session gone without a tombstone (e.g. Redis lost its data)


def revoked_from_event(event: Event) -> str:
    return encode(
        SessionRevoked(
            session_id=event.session_id,
            reason=event.reason or FALLBACK_REASON,
            at=from_ms(event.at),
            by=event.by,
        )
    )


def revoked_from_tombstone(session_id: str, tomb: Tombstone | None, now_ms: int) -> str:
    """The notice for a session found gone; without a tombstone the reason is `expired`."""
    if tomb is None:
        return encode(SessionRevoked(session_id, FALLBACK_REASON, from_ms(now_ms), None))
    return encode(SessionRevoked(session_id, tomb.reason, from_ms(tomb.at), tomb.by))


_KINDS: dict[str, Literal["created", "revoked", "renamed", "online", "offline"]] = {
    "session.created": "created",
    "session.revoked": "revoked",
    "session.renamed": "renamed",
    "session.online": "online",
    "session.offline": "offline",
}


def changed_from_event(event: Event) -> str:
    """`sessions.changed`; `online` as of the event (a revoked session is offline)."""
    kind = _KINDS[event.type]
    online = kind == "online" or (kind == "renamed" and event.session.online_until > event.at)
    return encode(SessionsChanged(event=kind, session=event.session.to_wire(online=online)))


class Frames:
    """One event's frames, each encoded at most once however many sockets are sent it."""

    __slots__ = ("_changed", "_revoked", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._changed: str | None = None
        self._revoked: str | None = None

    @property
    def changed(self) -> str:
        """`sessions.changed`, for the user's other devices."""
        if self._changed is None:
            self._changed = changed_from_event(self.event)
        return self._changed

    @property
    def revoked(self) -> str:
        """`session.revoked`, for the device whose session it ended."""
        if self._revoked is None:
            self._revoked = revoked_from_event(self.event)
        return self._revoked


class FrameCache:
    """Frames by (user, event id): an event that comes live and again from the log, to
    several sockets, is encoded once. The newest `size` events are kept."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._frames: dict[tuple[str, str], Frames] = {}

    def of(self, event: Event) -> Frames:
        if not event.id:  # published only (online, offline): sent once, never replayed
            return Frames(event)
        key = (event.user, event.id)
        frames = self._frames.get(key)
        if frames is None:
            if len(self._frames) >= self.size:
                del self._frames[next(iter(self._frames))]  # the oldest (dicts keep order)
            frames = self._frames[key] = Frames(event)
        return frames
