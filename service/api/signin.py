"""Opening a session, for `/login` and for the admin API alike: same rules, same events."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from service.api.devices import describe
from service.api.geoip import GeoIp
from service.api.inputs import device_name_from
from service.sessions.store import SessionStore
from service.sessions.tokens import TokenCodec
from service.wire.schemas import LoginResponse, from_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewDevice:
    """The device a session is opened on; without a name, one is made from the User-Agent."""

    device_id: str
    device_name: str | None
    user_agent: str
    ip: str


class SignIn:
    """Opens sessions with the store and issues their tokens."""

    def __init__(self, store: SessionStore, tokens: TokenCodec, geoip: GeoIp) -> None:
        self.store, self.tokens, self.geoip = store, tokens, geoip

    async def open(self, username: str, device: NewDevice, credentials: str = "") -> LoginResponse:
        """Create the session (replacing or evicting as the store does) and its token.

        A password sign-in gives the `credentials` it checked: CredentialsRevoked (and no
        session) when they were replaced or removed since.
        """
        parsed = describe(device.user_agent)
        details = {"browser": parsed.browser, "os": parsed.os, "device_type": parsed.device_type}
        details.update(self.geoip.locate(device.ip))
        session, ended = await self.store.create(
            username,
            session_id=secrets.token_urlsafe(16),
            device_id=device.device_id,
            device_name=device.device_name or device_name_from(device.user_agent),
            user_agent=device.user_agent,
            ip=device.ip,
            credentials=credentials,
            details=details,
        )
        log.info(
            "signed in %s on %r (session %s); ended %s",
            username,
            session.device_name,
            session.session_id,
            ended,
        )
        token = self.tokens.issue(username, session.session_id, session.created_ms, session.max_ms)
        return LoginResponse(
            token=token,
            token_type="Bearer",
            expires_at=from_ms(session.max_ms),
            session=session.to_wire(online=False),
        )
