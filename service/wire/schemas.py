"""Wire schemas: msgspec Structs are both the validators and the OpenAPI source."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from service.wire.names import SHOWN_PATTERN, USERNAME_PATTERN

RevokeReason = Literal[
    "logout",
    "revoked",
    "revoke_others",
    "logout_all",
    "expired",
    "evicted",
    "replaced",
    "admin",
    "password_changed",
]
DeviceId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
# Other devices show it, so nothing in it may be acted on instead of shown. The API checks
# it (service/api/inputs.py: given_device_name, with words a person can read); the pattern
# tells clients.
DeviceName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        description="No control or format characters (Unicode Cc, Cf, Zl, Zp): 422.",
        extra_json_schema={"pattern": SHOWN_PATTERN},
    ),
]


class Base(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    """Wire policy: unknown fields are ignored; every field is typed and bounded."""


class LoginRequest(Base):
    username: Annotated[str, Meta(min_length=1, max_length=128)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]
    device_name: DeviceName | None = None
    device_id: DeviceId | None = None
    # From an earlier sign-in of this device: its own failure budget (see devicetokens.py).
    device_token: Annotated[str, Meta(max_length=2048)] | None = None
    # The session in an HttpOnly cookie rather than the answer; unset: browser pages get it.
    cookie: bool | None = None


DeviceType = Literal["desktop", "phone", "tablet", "terminal", "unknown"]


class Location(Base):
    """Where the session's address is, from the GeoIP database (English names).

    `this_network` (all else null): a loopback, private, link-local, CGNAT or ULA address.
    """

    country: str | None
    country_code: str | None  # ISO 3166-1 alpha-2, e.g. "DE"
    region: str | None
    city: str | None
    this_network: bool


class Session(Base):
    session_id: str
    device_id: str | None
    device_name: str
    user_agent: str
    ip: str | None  # null when unknown (a session the admin API opened without one)
    created_at: datetime
    # Moves with requests, and while a socket is open (the worker's presence refresh).
    last_seen_at: datetime
    expires_at: datetime
    # A live socket on some worker process holds this session (see docs/PRESENCE.md).
    online: bool
    # Parsed from the User-Agent at sign-in: "Chrome 120", "sessionwire 0.1"; null: unknown.
    browser: str | None
    os: str | None  # "Android 14", "iOS 17.5", "Windows 10", "macOS 14", "Ubuntu", "Linux"
    device_type: DeviceType
    # Null when no GeoIP database is configured or it has no entry for the address.
    location: Location | None


class SessionRenameRequest(Base):
    device_name: DeviceName


class SessionView(Session):
    current: bool


class LoginResponse(Base, kw_only=True, omit_defaults=True):
    """A new session. In cookie mode (a browser page) the token and the device token are in
    HttpOnly cookies, and absent here."""

    token: str | None = None
    token_type: Literal["Bearer"] | None = None
    expires_at: datetime
    session: Session
    # Keep it (past sign-out) and send it with this user's next sign-ins from this device.
    device_token: str | None = None


class RevokedResponse(Base):
    revoked: list[str]


class MeResponse(Base):
    username: str
    email: str | None  # null for a user the product signed in itself, absent from USERS_FILE
    bio: str | None
    session: Session


class SessionsResponse(Base):
    sessions: list[SessionView]


class Actor(Base):
    """The device that ended a session."""

    session_id: str
    device_name: str
    ip: str | None  # null when unknown (a session the admin API opened without one)


class Revocation(Base):
    reason: RevokeReason
    at: datetime
    by: Actor | None


class FieldError(Base):
    field: str
    message: str


class Problem(Base, omit_defaults=True, kw_only=True):
    """RFC 9457 problem details, plus a stable machine-readable `code`."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None
    revoked: Revocation | None = None
    retry_after: int | None = None


class Health(Base):
    status: Literal["ok", "unavailable"]
    # Which process answered, where several share the port (WEB_CONCURRENCY and the like).
    pid: int = msgspec.field(default_factory=os.getpid)


class ClientConfig(Base):
    """What the page needs to find the gateway."""

    gateway_url: str
    # The gateway is on another host, which the API's cookie does not reach: a browser
    # signed in by cookie opens its socket with a ticket (POST /socket-ticket).
    socket_ticket: bool = False


class SocketTicket(Base):
    """Opens one socket, once, until `expires_at`: offer it as the `bearer.` subprotocol."""

    ticket: str
    expires_at: datetime


# --- Your product on Sessionwire: the admin API and the activity log ---

ACTIVITY_LIMIT_DEFAULT, ACTIVITY_LIMIT_MAX = 50, 100
ActivityLimit = Annotated[int, Meta(ge=1, le=ACTIVITY_LIMIT_MAX)]
Username = Annotated[str, Meta(min_length=1, max_length=64, pattern=USERNAME_PATTERN.pattern)]


class AdminSessionRequest(Base):
    """A session for a user the product signed in itself (SSO, passkey, MFA)."""

    username: Username
    # The session in an HttpOnly cookie of the answer, for a back end that passes the
    # answer's Set-Cookie on to the browser (from the API's own host).
    cookie: bool = False
    device_name: DeviceName | None = None
    device_id: DeviceId | None = None
    user_agent: Annotated[str, Meta(max_length=512)] | None = None
    ip: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            ),
        ]
        | None
    ) = None


class AdminLogoutAllRequest(Base):
    reason: Literal["admin", "password_changed"] = "admin"


class UserSessionsResponse(Base):
    sessions: list[Session]


class ActivitySession(Base):
    """The session an event is about."""

    session_id: str
    device_name: str
    ip: str | None  # null when unknown (a session the admin API opened without one)


class FailureSource(Base):
    """An address failed sign-ins came from, and how many."""

    ip: str
    attempts: int


class LoginFailures(Base):
    """Failed sign-ins for the user in one window (LOGIN_FAILURE_WINDOW from the first),
    aggregated: one entry however many guesses."""

    first_at: datetime
    attempts: int  # wrong passwords checked
    refused: int  # attempts refused unchecked while sign-ins were locked (429)
    locked_until: datetime | None  # the username was locked out until then
    ips: list[FailureSource]  # up to 5 addresses, in the order they first tried
    other_ips: int  # attempts from further addresses


class ActivityEvent(Base):
    id: str
    type: Literal["session.created", "session.revoked", "session.renamed", "login.failed"]
    at: datetime  # for login.failed, the latest attempt
    session: ActivitySession | None  # null for login.failed
    reason: RevokeReason | None
    by: Actor | None
    failures: LoginFailures | None = None  # login.failed only


class ActivityResponse(Base):
    events: list[ActivityEvent]


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


json_encoder = msgspec.json.Encoder()


# --- Events out: webhooks (Standard Webhooks) ---

EventType = Literal["session.created", "session.revoked"]
EVENT_TYPES: tuple[str, ...] = ("session.created", "session.revoked")
WebhookStatus = Literal["enabled", "disabled"]
WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2048)]
WebhookDescription = Annotated[str, Meta(max_length=500)]
WebhookEvents = Annotated[list[EventType], Meta(min_length=1, max_length=len(EVENT_TYPES))]
DELIVERIES_LIMIT_DEFAULT, DELIVERIES_LIMIT_MAX = 50, 100
DeliveriesLimit = Annotated[int, Meta(ge=1, le=DELIVERIES_LIMIT_MAX)]


class WebhookCreateRequest(Base):
    url: WebhookUrl
    events: WebhookEvents | None = None  # every type when absent
    description: WebhookDescription = ""


class WebhookPatchRequest(Base):
    url: WebhookUrl | None = None
    events: WebhookEvents | None = None
    status: WebhookStatus | None = None
    description: WebhookDescription | None = None


class WebhookDelivery(Base):
    """One message to one endpoint, as its latest attempt left it."""

    message_id: str
    type: EventType
    username: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None  # the HTTP status; null when no answer came (timeout, refused)
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None


class Webhook(Base):
    """An endpoint; `secret` only in the answers that create or rotate it."""

    id: str
    url: str
    events: list[EventType]
    status: WebhookStatus
    description: str
    created_at: datetime
    disabled_reason: str | None = None  # why it stopped: "gone" (410), "failing", "admin"
    last_delivery: WebhookDelivery | None = None


class WebhookCreated(Webhook, kw_only=True):
    secret: str


class WebhooksResponse(Base):
    webhooks: list[Webhook]


class SecretResponse(Base):
    secret: str


class DeliveriesResponse(Base):
    deliveries: list[WebhookDelivery]


class ReplayRequest(Base):
    since: datetime


class ReplayResponse(Base):
    queued: int


class SessionCreatedData(Base):
    username: str
    session: Session


class SessionRevokedData(Base):
    username: str
    session_id: str
    reason: RevokeReason
    at: datetime
    by: Actor | None


class SessionCreatedMessage(Base, kw_only=True):
    """A webhook's body (Standard Webhooks): the event's type, time and data."""

    type: Literal["session.created"] = "session.created"
    timestamp: datetime
    data: SessionCreatedData


class SessionRevokedMessage(Base, kw_only=True):
    """A webhook's body (Standard Webhooks): the event's type, time and data."""

    type: Literal["session.revoked"] = "session.revoked"
    timestamp: datetime
    data: SessionRevokedData
