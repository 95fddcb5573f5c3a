"""HTTP edge of the worker: `GET /ws` (everything is checked before the upgrade) and health.

Each handler turns its own errors into problem+json: a middleware would keep a coroutine
frame alive for every connected socket. Unexpected errors get aiohttp's plain 500, which
carries no traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from service.eventlog import StreamId
from service.redis_conn import REDIS_DOWN
from service.responses import json_response, problem_response, redis_unavailable, unauthorized
from service.schemas import Health
from service.store import SessionGone
from service.tokens import TokenError, bearer_token
from workers import disconnect, messages, typedefs
from workers.conn import Conn

log = logging.getLogger(__name__)

PROTOCOL = "sessionwire.v1"
BEARER_PROTOCOL_PREFIX = "bearer."
HEARTBEAT = 25.0  # below the ~60 s idle cut of common proxies
CLOSE_TIMEOUT = 1.0  # wait for the peer's close frame this long, then drop it
MAX_CLIENT_MESSAGE = 4096  # clients need not send anything


@dataclass(frozen=True, slots=True)
class Admission:
    """A device allowed to upgrade: who, where its log stood, or why it is already gone."""

    username: str
    session_id: str
    cursor: StreamId
    gone: SessionGone | None


def token_of(request: web.Request) -> str:
    """The token from the `bearer.<jwt>` subprotocol, else from `Authorization: Bearer`."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for proto in (part.strip() for part in offered.split(",")):
        if proto.startswith(BEARER_PROTOCOL_PREFIX) and len(proto) > len(BEARER_PROTOCOL_PREFIX):
            return proto[len(BEARER_PROTOCOL_PREFIX) :]
    return bearer_token(request.headers.get("Authorization"))


def new_socket(app: web.Application) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        protocols=(PROTOCOL,),
        heartbeat=app[typedefs.HEARTBEAT_INTERVAL],
        compress=False,
        timeout=CLOSE_TIMEOUT,
        max_msg_size=MAX_CLIENT_MESSAGE,
    )


async def websocket(request: web.Request) -> web.StreamResponse:
    """Admit the device, upgrade, then push its session events until it leaves."""
    ws = new_socket(request.app)
    admission = await admit(request, ws)
    if isinstance(admission, web.Response):
        return admission
    await ws.prepare(request)
    user, sid = admission.username, admission.session_id
    try:
        if admission.gone is not None:
            await send_revoked(request.app, ws, admission)
        else:
            conn = request.app[typedefs.HUB].new_conn(ws, user, sid, admission.cursor)
            await serve(request.app, ws, conn)
    except ConnectionError as exc:  # the device went away mid-handshake or mid-send
        log.debug("socket of %s session %s ended: %s", user, sid, exc)
    except Exception:  # the response is a socket now: log, never answer with an error page
        log.exception("socket of %s session %s failed", user, sid)
    return ws


async def admit(request: web.Request, ws: web.WebSocketResponse) -> Admission | web.Response:
    """Everything checked before the upgrade; a refusal is an HTTP problem response."""
    app = request.app
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in app[typedefs.SETTINGS].origins:
        app[typedefs.REFUSED_ORIGINS].refused(origin)
        return problem_response(
            403,
            "origin_not_allowed",
            "Forbidden",
            "This page's origin may not open the device socket.",
        )
    try:
        claims = app[typedefs.TOKENS].verify(token_of(request))
    except TokenError as exc:
        return unauthorized(exc.code, exc.detail)
    if not ws.can_prepare(request).ok:
        return problem_response(
            426,
            "upgrade_required",
            "Upgrade Required",
            "Open this URL as a WebSocket.",
            headers={"Upgrade": "websocket"},
        )
    user, sid = claims.username, claims.session_id
    # The log position is read before the check, so whatever happens after the check is
    # replayed from the log even if it is published before the subscription is live.
    try:
        cursor = await app[typedefs.EVENTS].last_id(user)
        await app[typedefs.STORE].check(user, sid)
    except SessionGone as gone:
        return Admission(user, sid, cursor, gone)
    except (RedisError, *REDIS_DOWN) as exc:
        log.warning("GET /ws: Redis unavailable: %s", exc)
        return redis_unavailable()
    return Admission(user, sid, cursor, None)


async def send_revoked(
    app: web.Application, ws: web.WebSocketResponse, admission: Admission
) -> None:
    """A device that connects with an ended session is told why at once, then closed."""
    tomb = admission.gone.tombstone if admission.gone else None
    now = app[typedefs.HUB].clock.now_ms()
    await ws.send_str(messages.revoked_from_tombstone(admission.session_id, tomb, now))
    app[typedefs.METRICS].sent("session.revoked", 0)
    await ws.close(code=disconnect.REVOKED.code, message=disconnect.REVOKED.reason)


async def serve(app: web.Application, ws: web.WebSocketResponse, conn: Conn) -> None:
    """Register the device, then keep reading until it leaves (events are pushed)."""
    conn.send(
        messages.encode(messages.Ready(session_id=conn.session_id, username=conn.username)), "ready"
    )
    listener = app[typedefs.LISTENER]
    listener.join(conn)
    try:
        async for _ in ws:  # clients need not send; reading keeps pings and closes flowing
            pass
    finally:
        listener.leave(conn)
        await conn.finish()


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready when every master answers, every slot is served and every master's pub/sub
    connection is up."""
    try:
        await request.app[typedefs.TOPOLOGY].check()
    except (RedisError, *REDIS_DOWN) as exc:
        log.info("not ready: %s", exc)
        return redis_unavailable()
    if not request.app[typedefs.LISTENER].ready:
        return redis_unavailable()
    return json_response(Health(status="ok"))


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[typedefs.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
