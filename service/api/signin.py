"""Opening a session, for `/login` and for the admin API alike: same rules, same events."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from aiohttp import web

from service.api.inputs import device_name_from
from service.runtime.appkeys import STORE, TOKENS
from service.wire.schemas import LoginResponse, from_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewDevice:
    """The device a session is opened on; without a name, one is made from the User-Agent."""

    device_id: str
    device_name: str | None
    user_agent: str
    ip: str


async def open_session(app: web.Application, username: str, device: NewDevice) -> LoginResponse:
    """Create the session (replacing or evicting as the store does) and issue its token."""
    session, ended = await app[STORE].create(
        username,
        session_id=secrets.token_urlsafe(16),
        device_id=device.device_id,
        device_name=device.device_name or device_name_from(device.user_agent),
        user_agent=device.user_agent,
        ip=device.ip,
    )
    log.info(
        "signed in %s on %r (session %s); ended %s",
        username,
        session.device_name,
        session.session_id,
        ended,
    )
    token = app[TOKENS].issue(username, session.session_id, session.created_ms, session.max_ms)
    return LoginResponse(token=token, expires_at=from_ms(session.max_ms), session=session.to_wire())
