"""What the gateway sends to devices: JSON text frames tagged by `type` (see DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from service.records import Event, Tombstone
from service.schemas import Actor, Session, from_ms

FALLBACK_REASON = "expired"  # a session gone without a tombstone (e.g. Redis lost its data)


class Ready(msgspec.Struct, tag_field="type", tag="ready"):
    session_id: str
    username: str


class SessionRevoked(msgspec.Struct, tag_field="type", tag="session.revoked"):
    session_id: str
    reason: str
    at: datetime
    by: Actor | None


class SessionsChanged(msgspec.Struct, tag_field="type", tag="sessions.changed"):
    event: Literal["created", "revoked"]
    session: Session


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> str:
    return _encoder.encode(message).decode()


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


def changed_from_event(event: Event) -> str:
    kind: Literal["created", "revoked"] = (
        "created" if event.type == "session.created" else "revoked"
    )
    return encode(SessionsChanged(event=kind, session=event.session.to_wire()))
