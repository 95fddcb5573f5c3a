"""What the gateway sends to devices: JSON text frames tagged by `type` (see DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from service.wire.schemas import Actor, Session


class Ready(msgspec.Struct, tag_field="type", tag="ready"):
    session_id: str
    username: str


class SessionRevoked(msgspec.Struct, tag_field="type", tag="session.revoked"):
    session_id: str
    reason: str
    at: datetime
    by: Actor | None


class SessionsChanged(msgspec.Struct, tag_field="type", tag="sessions.changed"):
    # renamed: a new device_name; online/offline: its presence changed (at most one
    # notice per session per PRESENCE_NOTICE_INTERVAL, the latest state always arrives).
    event: Literal["created", "revoked", "renamed", "online", "offline"]
    session: Session


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> str:
    return _encoder.encode(message).decode()
