"""The admin API, for the product's back end: sessions it opens and ends for its users.

Mounted only when ADMIN_TOKEN is set; otherwise every /admin/... path is a plain 404. The
token is compared in constant time. The right one always passes: it is at least 32 random
characters, so there is no guess to protect, and whoever shares the back end's address
(behind a proxy, everybody) must not be able to lock it out. A wrong one counts against
the client IP as a failed sign-in does, and past the limit wrong ones get 429; a request
without any token counts for nothing. Revocations carry no device (`by: null`): their
reason says who.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import web

from service.api.activity import activity_of
from service.api.appkeys import LIMITER, METRICS, SIGN_IN
from service.api.browsers import in_cookie
from service.api.inputs import client_ip, decode_body, given_device_name, ip_address
from service.api.problems import ApiError, validation_error
from service.api.signin import NewDevice
from service.runtime.appkeys import SETTINGS, STORE
from service.runtime.credentials import bearer_token
from service.runtime.responses import json_response
from service.sessions.store import RevokeMode
from service.sessions.tokens import TokenError
from service.wire.names import SESSION_ID, is_valid_username
from service.wire.schemas import (
    AdminLogoutAllRequest,
    AdminSessionRequest,
    RevokedResponse,
    SessionRenameRequest,
    UserSessionsResponse,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


async def authorize(request: web.Request) -> None:
    """Return if the request carries ADMIN_TOKEN; raise TokenError (401) or RateLimited (429,
    for a wrong token only)."""
    settings = request.app[SETTINGS]
    header = request.headers.get("Authorization")
    if _is_admin_token(header, settings.admin_token):
        return
    if not header:
        raise TokenError("missing_token", "Send ADMIN_TOKEN as 'Authorization: Bearer <token>'.")
    ip = client_ip(request, settings.trusted_proxies)
    await request.app[LIMITER].admin_failed(ip)
    log.warning("wrong admin token from %s on %s %r", ip, request.method, request.path[:100])
    raise TokenError("invalid_token", "This is not the admin token.")


def _is_admin_token(header: str | None, admin_token: str) -> bool:
    try:
        presented = bearer_token(header)
    except TokenError:
        return False
    # Digests are of one length, so the timing tells nothing, not even the token's length.
    return hmac.compare_digest(_digest(presented), _digest(admin_token))


def _digest(text: str) -> bytes:
    # surrogateescape: header bytes that are not UTF-8 arrive as surrogates (see PITFALLS).
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _username(request: web.Request) -> str:
    return _checked(request.match_info["username"])


def _checked(username: str) -> str:
    """A name that can be a user's (and stay inside its Redis hash tag), or a 422."""
    if not is_valid_username(username):
        raise validation_error("username", "1-64 of letters, digits and . _ @ -")
    return username


@routes.post("/admin/sessions")
async def create_session(request: web.Request) -> web.Response:
    await authorize(request)
    body = await decode_body(request, AdminSessionRequest, _timeout(request))
    name = given_device_name(body.device_name)
    device = NewDevice(body.device_id or "", name, body.user_agent or "", _ip(body.ip))
    response = await request.app[SIGN_IN].open(_checked(body.username), device)
    log.info("admin API opened session %s for %s", response.session.session_id, body.username)
    if body.cookie and request.app[SETTINGS].auth_cookie != "never":
        return in_cookie(request, response)
    return json_response(response)


def _ip(value: str | None) -> str:
    """The device's address as the product saw it; empty when it does not say."""
    if value is None:
        return ""
    address = ip_address(value)
    if address is None:
        raise validation_error("ip", "not an IPv4 or IPv6 address (without a zone id)")
    return str(address)


@routes.get("/admin/users/{username}/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    await authorize(request)
    store = request.app[STORE]
    sessions = await store.list(_username(request))
    now = store.clock.now_ms()
    return json_response(UserSessionsResponse(sessions=[s.to_wire(now) for s in sessions]))


@routes.delete(f"/admin/users/{{username}}/sessions/{{session_id:{SESSION_ID}}}")
async def revoke_session(request: web.Request) -> web.Response:
    await authorize(request)
    username, target = _username(request), request.match_info["session_id"]
    revoked = await _revoke(request.app, username, "one", target, "admin")
    if not revoked:
        raise ApiError(
            404, "session_not_found", "Session not found", "This user has no session with that id."
        )
    return json_response(RevokedResponse(revoked=revoked))


@routes.patch(f"/admin/users/{{username}}/sessions/{{session_id:{SESSION_ID}}}")
async def rename_session(request: web.Request) -> web.Response:
    await authorize(request)
    username, target = _username(request), request.match_info["session_id"]
    body = await decode_body(request, SessionRenameRequest, _timeout(request))
    name = given_device_name(body.device_name) or body.device_name
    store = request.app[STORE]
    renamed = await store.rename(username, target, name, None)
    if renamed is None:
        raise ApiError(
            404, "session_not_found", "Session not found", "This user has no session with that id."
        )
    return json_response(renamed.to_wire(store.clock.now_ms()))


@routes.post("/admin/users/{username}/logout-all")
async def logout_all(request: web.Request) -> web.Response:
    await authorize(request)
    username = _username(request)
    # No body (or an empty one) means the default reason.
    body = (
        await decode_body(request, AdminLogoutAllRequest, _timeout(request))
        if request.body_exists
        else AdminLogoutAllRequest()
    )
    revoked = await _revoke(request.app, username, "all", "", body.reason)
    return json_response(RevokedResponse(revoked=revoked))


async def _revoke(
    app: web.Application, username: str, mode: RevokeMode, target: str, reason: str
) -> list[str]:
    revoked = await app[STORE].revoke(username, mode, target, reason, None)
    app[METRICS].revocations.labels(reason).inc(len(revoked))
    return revoked  # each logged by the store, with its reason


@routes.get("/admin/users/{username}/activity")
async def activity(request: web.Request) -> web.Response:
    await authorize(request)
    return await activity_of(request, _username(request))


def _timeout(request: web.Request) -> int:
    """How long a body may take to arrive (REQUEST_TIMEOUT)."""
    return request.app[SETTINGS].request_timeout
