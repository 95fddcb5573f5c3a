"""Sign-ins of browser pages: the session goes to an HttpOnly cookie, not to the page.

One browser is one device: its tabs share the cookie, so they share the session, and the
device id of the session is the browser's own (the one its device token names), so
signing in again on it replaces its earlier session instead of adding one.
"""

from __future__ import annotations

import logging

from aiohttp import web

from service.api.appkeys import DEVICE_TOKENS, METRICS
from service.engine.errors import REDIS_DOWN
from service.runtime import cookies
from service.runtime.appkeys import SETTINGS, STORE, TOKENS
from service.runtime.credentials import via_cookie
from service.runtime.responses import json_response
from service.sessions.tokens import TokenError
from service.wire.schemas import LoginResponse

log = logging.getLogger(__name__)


def wants_cookie(request: web.Request, asked: bool | None) -> bool:
    """Cookie mode for this sign-in: AUTH_COOKIE, else what the body asks, else whether a
    browser page sent it (browsers send Sec-Fetch-Mode with every request; programs don't)."""
    match request.app[SETTINGS].auth_cookie:
        case "never":
            return False
        case "always":
            return True
    return asked if asked is not None else "Sec-Fetch-Mode" in request.headers


def known_device(request: web.Request, body_token: str | None, username: str) -> str | None:
    """The device id this browser (or program) is known by for `username`, if any: from the
    body's device token, else from the browser's device cookie."""
    tokens = request.app[DEVICE_TOKENS]
    for token in (body_token, *cookies.device_tokens(request)):
        if device := tokens.device_of(token, username):
            return device
    return None


async def hand_over(
    request: web.Request, answer: LoginResponse, device_token: str, username: str
) -> web.Response:
    """The sign-in's answer in cookie mode: the session in the answer, its token and the
    device token in HttpOnly cookies.

    A session the browser's cookie held until now can no longer be reached from it (one
    browser holds one session): it is signed out, so it does not linger in the user's list.
    """
    await _end_previous(request, answer.session.session_id)
    response = in_cookie(request, answer)
    owners = request.app[DEVICE_TOKENS]
    others = [
        t for t in cookies.device_tokens(request) if owners.user_of(t) not in (None, username)
    ]
    cookies.set_device_tokens(request, response, device_token, others)
    return response


def in_cookie(request: web.Request, answer: LoginResponse) -> web.Response:
    """`answer` with its token moved to the session cookie."""
    token = answer.token or ""
    answer.token = answer.token_type = None
    response = json_response(answer)
    now = request.app[TOKENS].clock.now_ms()
    max_age = (int(answer.expires_at.timestamp() * 1000) - now) // 1000
    cookies.set_session(request, response, token, max_age)
    return response


async def _end_previous(request: web.Request, new_session_id: str) -> None:
    old = cookies.session_token(request)
    if not old:
        return
    try:
        claims = request.app[TOKENS].verify(old)
    except TokenError:
        return
    if claims.session_id == new_session_id:
        return
    try:
        ended = await request.app[STORE].revoke(
            claims.username, "one", claims.session_id, "logout", None
        )
    except REDIS_DOWN as exc:  # the sign-in itself went through: hand it over
        log.warning("could not end the session %s the browser held: %s", claims.session_id, exc)
        return
    request.app[METRICS].revocations.labels("logout").inc(len(ended))
    if ended:
        log.info(
            "signed %s out of session %s: the browser signed in again",
            claims.username,
            claims.session_id,
        )


def forget_session(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The browser's session has ended: drop its cookie (when it came by cookie)."""
    if via_cookie(request):
        cookies.clear_session(request, response)
    return response
