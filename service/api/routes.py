"""HTTP handlers: thin; decode, call the store, encode."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web

from service.api import browsers, csrf
from service.api.appkeys import (
    DEVICE_TOKENS,
    HASH_UPGRADES,
    LIMITER,
    METRICS,
    PASSWORDS,
    SIGN_IN,
    USERS,
)
from service.api.auth import caller_of
from service.api.inputs import (
    MAX_USER_AGENT,
    client_ip,
    decode_body,
    given_device_name,
    header_text,
)
from service.api.page import gateway_url, reaches_gateway
from service.api.problems import ApiError
from service.api.signin import NewDevice
from service.runtime.appkeys import SETTINGS, STORE, TICKETS
from service.runtime.responses import json_response
from service.sessions.callers import Caller
from service.sessions.records import StoredSession
from service.sessions.store import CredentialsRevoked, RevokeMode
from service.users.clients import client_of
from service.users.devicetokens import new_device_id
from service.users.directory import User
from service.wire.names import SESSION_ID, is_valid_username
from service.wire.schemas import (
    ClientConfig,
    LoginRequest,
    LoginResponse,
    MeResponse,
    RevokedResponse,
    SessionRenameRequest,
    SessionsResponse,
    SessionView,
    SocketTicket,
    from_ms,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await decode_body(request, LoginRequest, settings.request_timeout, forms=True)
    in_cookie = browsers.wants_cookie(request, body.cookie)
    if in_cookie:  # login CSRF: another site's page signing this browser in as someone else
        csrf.check(request, signing_in=True)
    ip = client_ip(request, settings.trusted_proxies)
    known_device = browsers.known_device(request, body.device_token, body.username)
    user_agent = header_text(request.headers.get("User-Agent", ""))[:MAX_USER_AGENT]
    device_id = known_device or new_device_id()
    # A browser is one device whatever its tabs: its session takes the browser's own id.
    session_device = body.device_id or (device_id if in_cookie else "")
    device = NewDevice(session_device, given_device_name(body.device_name), user_agent, ip)
    response = await _sign_in(request.app, body, device, known_device)
    device_token = request.app[DEVICE_TOKENS].issue(body.username, device_id)
    request.app[METRICS].logins.labels("success").inc()
    if in_cookie:
        return await browsers.hand_over(request, response, device_token, body.username)
    response.device_token = device_token
    return json_response(response)


async def _sign_in(
    app: web.Application, body: LoginRequest, device: NewDevice, known_device: str | None
) -> LoginResponse:
    """The new session, or ApiError 401, RateLimited, SignInBusy or HashingBusy.

    The attempt waits for its turn at the hashing threads (fair between clients), then is
    counted before the password is hashed, so a burst of guesses gets no more hashes (or
    answers) than the limit allows, and an attempt that never gets its turn is counted
    nowhere; at the limit even the right password is refused, or the limit would tell a
    guesser when it guessed right. A known device (from its device token) has a budget of
    its own. The session is opened before the attempt is settled: one refused because the
    password changed meanwhile is a failure.
    """
    limiter, users, checker, ip = app[LIMITER], app[USERS], app[PASSWORDS], device.ip
    # A name that can't exist costs what a real check costs, so timing tells nothing.
    name = body.username if is_valid_username(body.username) else ""
    async with checker.turn(client_of(ip)):
        known = users.get(name) is not None  # whose failures its owner is shown
        reservation = await limiter.reserve(body.username, ip, known_device, known_user=known)
        try:
            user = await users.authenticate(name, body.password, checker)
            response = await _open(app, user, device) if user else None
        except BaseException:
            await asyncio.shield(limiter.cancel(reservation))
            raise
        if user is not None and response is not None:
            await limiter.succeeded(reservation)
            await app[HASH_UPGRADES].after_sign_in(user, body.password)
            return response
        await limiter.failed(reservation)  # before the next turn, which may be at the limit
    app[METRICS].logins.labels("failure").inc()
    log.info("failed sign-in for %r from %s", body.username[:64], ip)
    raise ApiError(
        401,
        "invalid_credentials",
        "Invalid credentials",
        "The username or password is wrong.",
        headers={"WWW-Authenticate": 'Bearer realm="sessionwire"'},  # a 401 must challenge
    )


async def _open(app: web.Application, user: User, device: NewDevice) -> LoginResponse | None:
    """The user's new session; None if the password checked was changed (or the user
    removed) since: `service.users` revoked it with the user's sessions."""
    try:
        return await app[SIGN_IN].open(user.username, device, user.credentials)
    except CredentialsRevoked:
        log.info(
            "sign-in for %s refused: the password hash it checked was revoked (replaced or "
            "removed by service.users) since",
            user.username,
        )
        return None


async def _revoke(
    request: web.Request, caller: Caller, mode: RevokeMode, target: str, reason: str
) -> web.Response:
    """Revoke as the caller's device; SessionTooNew (the fresh-session guard) may refuse."""
    revoked = await request.app[STORE].revoke(
        caller.username, mode, target, reason, caller.session.as_actor()
    )
    if mode == "one" and not revoked:
        raise ApiError(
            404, "session_not_found", "Session not found", "You have no session with that id."
        )
    request.app[METRICS].revocations.labels(reason).inc(len(revoked))
    response = json_response(RevokedResponse(revoked=revoked))
    if caller.session.session_id in revoked:
        browsers.forget_session(request, response)
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    return await _revoke(request, caller, "one", caller.session.session_id, "logout")


# Not "revoke-others": that path allows POST only (and its 405 must say so).
@routes.delete(f"/sessions/{{session_id:(?!revoke-others$){SESSION_ID}}}")
async def revoke_session(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    target = request.match_info["session_id"]
    reason = "logout" if target == caller.session.session_id else "revoked"
    return await _revoke(request, caller, "one", target, reason)


@routes.patch(f"/sessions/{{session_id:(?!revoke-others$){SESSION_ID}}}")
async def rename_session(request: web.Request) -> web.Response:
    """Rename one of the caller's devices (this one or another)."""
    caller = await caller_of(request)
    body = await decode_body(request, SessionRenameRequest, request.app[SETTINGS].request_timeout)
    name = given_device_name(body.device_name) or body.device_name
    store = request.app[STORE]
    target = request.match_info["session_id"]
    renamed = await store.rename(caller.username, target, name, caller.session.as_actor())
    if renamed is None:
        raise ApiError(
            404, "session_not_found", "Session not found", "You have no session with that id."
        )
    current = caller.session.session_id
    return json_response(_view(renamed, current, store.clock.now_ms()))


@routes.post("/sessions/revoke-others")
async def revoke_others(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    return await _revoke(request, caller, "others", caller.session.session_id, "revoke_others")


@routes.post("/logout-all")
async def logout_all(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    return await _revoke(request, caller, "all", caller.session.session_id, "logout_all")


@routes.post("/socket-ticket")
async def socket_ticket(request: web.Request) -> web.Response:
    """A ticket for one socket, for a browser whose gateway its cookie does not reach."""
    caller = await caller_of(request)
    ticket, expires = await request.app[TICKETS].issue(caller.username, caller.session.session_id)
    return json_response(SocketTicket(ticket=ticket, expires_at=from_ms(expires)))


@routes.get("/me")
async def me(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    # Absent from the users file: signed in by the product (admin API), or removed since.
    user = request.app[USERS].get(caller.username)
    return json_response(
        MeResponse(
            username=caller.username,
            email=user.email if user else None,
            bio=user.bio if user else None,
            session=caller.session.to_wire(request.app[STORE].clock.now_ms()),
        )
    )


def _view(session: StoredSession, current_id: str, now_ms: int) -> SessionView:
    return SessionView(
        **msgspec.structs.asdict(session.to_wire(now_ms)), current=session.session_id == current_id
    )


@routes.get("/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    store = request.app[STORE]
    sessions = await store.list(caller.username)
    current, now = caller.session.session_id, store.clock.now_ms()
    return json_response(SessionsResponse(sessions=[_view(s, current, now) for s in sessions]))


@routes.get("/config")
async def config(request: web.Request) -> web.Response:
    """Where the page's WebSocket should connect, and whether it needs a ticket to."""
    settings = request.app[SETTINGS]
    url = gateway_url(settings, request.host)
    ticket = not reaches_gateway(settings, request.host)
    return json_response(ClientConfig(gateway_url=url, socket_ticket=ticket))
