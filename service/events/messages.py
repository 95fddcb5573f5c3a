"""What a webhook carries: its id, its body (encoded once per event) and its signature.

Standard Webhooks: `webhook-id` is the event's id, the same on every attempt and replay
(the receiver's idempotency key); `webhook-timestamp` is the attempt's own time, so each
retry is signed afresh (receivers refuse timestamps more than 5 minutes off); the
signature is `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, with the secret's
bytes, one per secret in force (two for a day after a rotation), space-separated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Sequence

import msgspec

from service.sessions.records import Event
from service.wire.schemas import (
    SessionCreatedData,
    SessionCreatedMessage,
    SessionRevokedData,
    SessionRevokedMessage,
    from_ms,
)

SECRET_PREFIX = "whsec_"
_encoder = msgspec.json.Encoder()


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def message_id(slot: int, event_id: str) -> str:
    """The event's id for receivers: unique across slots, stable across reshards."""
    return f"msg_{slot}_{event_id}"


def body(event: Event) -> bytes:
    """The JSON body of the event's webhook: {type, timestamp, data}."""
    at = from_ms(event.at)
    if event.type == "session.created":
        data = SessionCreatedData(username=event.user, session=event.session.to_wire())
        return _encoder.encode(SessionCreatedMessage(timestamp=at, data=data))
    revoked = SessionRevokedData(
        username=event.user,
        session_id=event.session_id,
        reason=event.reason,  # type: ignore[arg-type]
        at=at,
        by=event.by,
    )
    return _encoder.encode(SessionRevokedMessage(timestamp=at, data=revoked))


def signature(keys: Sequence[bytes], msg_id: str, timestamp: int, payload: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )
