"""Security Event Tokens (RFC 8417) for one stream: CAEP session events and SSF's own.

Each SET carries exactly one event, a `sub_id` (never `sub`) and no `exp`. Its `jti` is
derived from the stream and the outbox message, so a retry, a reload after a crash or a
second delivery of the same message carries the same `jti` (the receiver's idempotency
key) while two streams never share one. `txn` is the outbox message id: the same change
seen by several receivers has one `txn`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from service.sessions.records import Event

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
SESSION_ESTABLISHED = CAEP + "session-established"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"
EVENT_TYPES = (SESSION_REVOKED, SESSION_ESTABLISHED)  # what a stream may ask for
OUTBOX_TYPE = {"session.revoked": SESSION_REVOKED, "session.created": SESSION_ESTABLISHED}

# Our revoke reasons as CAEP's initiating_entity, and the words for both audiences.
INITIATING_ENTITY = {
    "logout": "user",
    "revoked": "user",
    "revoke_others": "user",
    "logout_all": "user",
    "admin": "admin",
    "password_changed": "admin",
    "evicted": "policy",
    "replaced": "policy",
    "expired": "system",
}
REASON_ADMIN = {
    "logout": "The user signed out on this device.",
    "revoked": "The user ended this session from another of their devices.",
    "revoke_others": "The user signed out their other devices.",
    "logout_all": "The user signed out everywhere.",
    "admin": "An administrator ended the session.",
    "password_changed": "The user's password was changed.",
    "evicted": "The user's session limit was reached; the oldest session was ended.",
    "replaced": "A new sign-in on the same device replaced this session.",
    "expired": "The session expired (idle or too old).",
}
REASON_USER = {
    "logout": "You signed out.",
    "revoked": "You signed this device out from another device.",
    "revoke_others": "You signed out your other devices.",
    "logout_all": "You signed out everywhere.",
    "admin": "An administrator signed you out.",
    "password_changed": "Your password was changed.",
    "evicted": "You signed in on too many devices.",
    "replaced": "You signed in again on this device.",
    "expired": "Your session expired.",
}


def jti_of(stream_id: str, txn: str) -> str:
    return hashlib.sha256(f"{stream_id}\n{txn}".encode()).hexdigest()[:32]


def session_subject(issuer: str, event: Event) -> dict[str, Any]:
    return {
        "format": "complex",
        "user": {"format": "iss_sub", "iss": issuer, "sub": event.user},
        "session": {"format": "opaque", "id": event.session_id},
    }


def session_event(event: Event) -> tuple[str, dict[str, Any]]:
    """The CAEP event (its type URI and body) for an outbox event."""
    body: dict[str, Any] = {"event_timestamp": event.at // 1000}
    if event.type == "session.created":
        body["initiating_entity"] = "user"
        return SESSION_ESTABLISHED, body
    reason = event.reason or "revoked"
    body["initiating_entity"] = INITIATING_ENTITY.get(reason, "system")
    body["reason_admin"] = {"en": REASON_ADMIN.get(reason, reason)}
    body["reason_user"] = {"en": REASON_USER.get(reason, "Your session ended.")}
    return SESSION_REVOKED, body


def claims(
    *,
    issuer: str,
    audience: str,
    jti: str,
    now_ms: int,
    subject: dict[str, Any],
    event_type: str,
    event: dict[str, Any],
    txn: str | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "iss": issuer,
        "iat": now_ms // 1000,
        "jti": jti,
        "aud": audience,
        "sub_id": subject,
        "events": {event_type: event},
    }
    if txn is not None:
        found["txn"] = txn
    return found


def outbox_set(
    issuer: str, audience: str, stream_id: str, txn: str, event: Event, now_ms: int
) -> dict[str, Any]:
    """The claims of the SET of one outbox event for one stream."""
    event_type, body = session_event(event)
    return claims(
        issuer=issuer,
        audience=audience,
        jti=jti_of(stream_id, txn),
        now_ms=now_ms,
        subject=session_subject(issuer, event),
        event_type=event_type,
        event=body,
        txn=txn,
    )


def stream_set(
    issuer: str, audience: str, stream_id: str, event_type: str, event: dict[str, Any], now_ms: int
) -> dict[str, Any]:
    """A verification or stream-updated SET: its subject is the stream itself."""
    jti = secrets.token_hex(16)
    return claims(
        issuer=issuer,
        audience=audience,
        jti=jti,
        now_ms=now_ms,
        subject={"format": "opaque", "id": stream_id},
        event_type=event_type,
        event=event,
        txn=jti,
    )
