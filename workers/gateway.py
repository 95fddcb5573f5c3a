"""HTTP edge of the worker: `GET /ws` (everything is checked before the upgrade) and health.

Each handler turns its own errors into problem+json: a middleware would keep a coroutine
frame alive for every connected socket. Unexpected errors get aiohttp's plain 500, which
carries no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from service.engine.errors import REDIS_DOWN, broke_in_the_client
from service.runtime.appkeys import SETTINGS, STORE, TICKETS, TOKENS
from service.runtime.credentials import Credential, Via, presented_on_upgrade
from service.runtime.responses import (
    problem_response,
    redis_unavailable,
    unauthorized,
)
from service.sessions.eventlog import ZERO_ID, StreamId
from service.sessions.store import SessionGone
from service.sessions.tickets import is_ticket
from service.sessions.tokens import TokenError
from service.wire import disconnect, messages
from service.wire.disconnect import Disconnect
from workers import frames
from workers.appkeys import (
    HEARTBEAT_INTERVAL,
    HUB,
    LISTENER,
    METRICS,
    PACER,
    PRESENCE,
    REFUSED_ORIGINS,
)
from workers.conn import Conn

log = logging.getLogger(__name__)

PROTOCOL = "sessionwire.v1"
HEARTBEAT = 25.0  # below the ~60 s idle cut of common proxies
CLOSE_TIMEOUT = 1.0  # wait for the peer's close frame this long, then drop it
QUICK_CLOSE = 0.1  # for a client cut for misbehaving
ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
MAX_CLIENT_MESSAGE = 4096  # clients need not send anything


@dataclass(frozen=True, slots=True)
class Admission:
    """A device allowed to upgrade: who, where its log stood, or why it is already gone."""

    username: str
    session_id: str
    cursor: StreamId
    gone: SessionGone | None


def offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [part.strip() for part in header.split(",")] if header else []


def new_socket() -> web.WebSocketResponse:
    # No aiohttp heartbeat or autoping: its heartbeat counts any data from the client as
    # life, and the read guard must see each pong (see workers/guard.py).
    return web.WebSocketResponse(
        protocols=(PROTOCOL,),
        autoping=False,
        compress=False,
        timeout=CLOSE_TIMEOUT,
        max_msg_size=MAX_CLIENT_MESSAGE,
    )


async def websocket(request: web.Request) -> web.StreamResponse:
    """Admit the device, upgrade, then push its session events until it leaves."""
    ws = new_socket()
    admission = await admit(request, ws)
    if isinstance(admission, web.Response):
        return admission
    hub, limit = request.app[HUB], request.app[SETTINGS].max_sockets_per_session
    user, sid = admission.username, admission.session_id
    if not hub.take_slot(sid, limit):  # no await since admit: the count can't be raced
        return too_many_connections(limit)
    try:
        await request.app[PACER].turn()  # workers/pacer.py: a storm's sockets start paced
        await ws.prepare(request)
        release_upgrade(request, ws)
        if admission.gone is not None:
            await send_revoked(request.app, ws, admission)
        else:
            await serve(request.app, ws, hub.new_conn(ws, user, sid, admission.cursor))
    except ConnectionError as exc:  # the device went away mid-handshake or mid-send
        log.debug("socket of %s session %s ended: %s", user, sid, exc)
    except Exception:  # the response is a socket now: log, never answer with an error page
        log.exception("socket of %s session %s failed", user, sid)
    finally:
        hub.free_slot(sid)
        drop_tracebacks(ws)
    return ws


def release_upgrade(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Free what the upgrade needed and the socket never uses again (~1 KiB a socket).

    The response headers went out with the 101 but stay as long as the socket (~240
    bytes). The connection's HTTP parser (~760 bytes) is private to aiohttp (3.14): once
    the upgrade is accepted, frames go to the WebSocket reader and the HTTP parser is never
    fed again; aiohttp itself sets it to None when the connection is lost, and checks for
    None wherever it could still be used once the connection is switched over
    (`_upgraded`). A handshake that announces a body it never sends is upgraded by
    aiohttp all the same, but not switched over: pausing its reads, past 64 KiB of frames
    queued, still goes through the parser (an AssertionError that drops the connection),
    so that one keeps it. The tests run whole sockets after this.
    """
    ws.headers.clear()
    protocol = request.protocol
    if getattr(protocol, "_upgraded", False) and getattr(protocol, "_parser", None) is not None:
        protocol._parser = None


def drop_tracebacks(ws: web.WebSocketResponse) -> None:
    """Forget the frames of the error that ended a socket, if any.

    aiohttp keeps that error on the socket, and its traceback holds frames that hold the
    socket: a device that went away while the worker wrote to it leaves a reference cycle
    of ~45 objects that only a full collection frees (measured: 10,000 such devices left
    451,036 objects, and the full collection that freed them paused the worker 0.75 s).
    Without the tracebacks, reference counting frees it all at once.
    """
    exc: BaseException | None = ws.exception()
    while exc is not None:
        exc.__traceback__ = None
        exc = exc.__context__


def too_many_connections(limit: int) -> web.Response:
    return problem_response(
        429,
        "too_many_connections",
        "Too many connections",
        f"This session already has {limit} open sockets on this server; close one first.",
    )


async def admit(request: web.Request, ws: web.WebSocketResponse) -> Admission | web.Response:
    """Everything checked before the upgrade; a refusal is an HTTP problem response.

    The device presents a token or a socket ticket (the `bearer.` subprotocol, or
    `Authorization: Bearer`), or the browser's session cookie. No CORS guards a socket: a
    browser opens one from any page, with the user's cookie, so the `Origin` check is what
    keeps another site's page from it, and a cookie without an `Origin` (no browser page
    at all) opens nothing.
    """
    app = request.app
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in app[SETTINGS].origins:
        app[REFUSED_ORIGINS].refused(origin)
        return origin_not_allowed("This page's origin may not open the device socket.")
    offered = offered_protocols(request)
    # Subprotocols offered without ours: no browser would accept the answer, and aiohttp
    # would log the whole offer, twice per request, for anyone to fill the log with.
    if offered and PROTOCOL not in offered:
        return problem_response(
            400,
            "bad_request",
            "Bad Request",
            f"Offer the {PROTOCOL} subprotocol (with bearer.<token>), or none.",
        )
    try:
        credential = presented_on_upgrade(request, offered)
        ticket = is_ticket(credential.token)
        claims = None if ticket else app[TOKENS].verify(credential.token)
    except TokenError as exc:
        return unauthorized(exc.code, exc.detail)
    if credential.via is Via.COOKIE and origin is None:
        return origin_not_allowed(
            "A socket signed in by the browser's cookie needs its page's Origin."
        )
    if not ws.can_prepare(request).ok:
        return problem_response(
            426,
            "upgrade_required",
            "Upgrade Required",
            "Open this URL as a WebSocket.",
            headers={"Upgrade": "websocket"},
        )
    try:
        user, sid = (
            (claims.username, claims.session_id) if claims else await redeem(app, credential)
        )
        # The log position is read before the check (one trip), so whatever happens after
        # the check is replayed from the log even if it is published before the subscription.
        cursor, _ = await app[STORE].check_with_cursor(user, sid)
    except TokenError as exc:
        return unauthorized(exc.code, exc.detail)
    except SessionGone as gone:
        return Admission(user, sid, ZERO_ID, gone)
    except Exception as exc:
        if not isinstance(exc, (RedisError, *REDIS_DOWN)) and not broke_in_the_client(exc):
            raise
        log.warning("GET /ws: Redis unavailable: %r", exc)
        return redis_unavailable()
    return Admission(user, sid, cursor, None)


async def redeem(app: web.Application, credential: Credential) -> tuple[str, str]:
    """(username, session id) of a socket ticket, which opens nothing after this one."""
    found = await app[TICKETS].redeem(credential.token)
    if found is None:
        raise TokenError("invalid_token", "The socket ticket is used, expired or unknown.")
    return found


def origin_not_allowed(detail: str) -> web.Response:
    return problem_response(403, "origin_not_allowed", "Forbidden", detail)


async def send_revoked(
    app: web.Application, ws: web.WebSocketResponse, admission: Admission
) -> None:
    """A device that connects with an ended session is told why at once, then closed."""
    tomb = admission.gone.tombstone if admission.gone else None
    now = app[HUB].clock.now_ms()
    await ws.send_str(frames.revoked_from_tombstone(admission.session_id, tomb, now))
    app[METRICS].sent("session.revoked", 0)
    await close(ws, disconnect.REVOKED)


async def serve(app: web.Application, ws: web.WebSocketResponse, conn: Conn) -> None:
    """Register the device, then answer pings, hand pongs to the read guard and cut a
    client that floods, until the client leaves or a close is asked for (Conn.close
    cancels the read).

    The frames are read here, in the handler's own task, so an idle socket has no task
    (nor coroutine) of its own. The close is sent from here too, where nothing else is
    reading, so aiohttp waits for the client's close frame instead of dropping the
    connection right after ours (clients then see 1006, not the code sent).
    """
    register(app, conn)
    clock = app[HUB].clock
    task = conn.reader = asyncio.current_task()
    assert task is not None
    try:
        while conn.bye is None and (msg := await ws.receive()).type not in ENDED:
            if not conn.guard.frame(clock.now_ms()):
                log.warning(
                    "closing the socket of %s session %s: frame flood",
                    conn.username,
                    conn.session_id,
                )
                conn.bye = disconnect.FLOODING
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                conn.pong(msg.data)
    except ConnectionError as exc:
        log.debug("reading from session %s failed: %s", conn.session_id, exc)
    except asyncio.CancelledError:
        # Ours, from Conn.close: go on to close. Any other cancel goes on.
        if conn.bye is None or task.uncancel() > 0:
            raise
    finally:
        conn.reader = None
        await unregister(app, conn)
    if conn.bye is not None and not ws.closed:
        await close(ws, conn.bye)


def register(app: web.Application, conn: Conn) -> None:
    conn.send(
        messages.encode(messages.Ready(session_id=conn.session_id, username=conn.username)), "ready"
    )
    app[LISTENER].join(conn)
    app[PRESENCE].opened(conn)
    conn.start_heartbeat(app[HEARTBEAT_INTERVAL])


async def unregister(app: web.Application, conn: Conn) -> None:
    app[LISTENER].leave(conn)
    app[PRESENCE].closed(conn)
    await conn.finish()


async def close(ws: web.WebSocketResponse, bye: Disconnect) -> None:
    """Send `bye` and wait (briefly) for the client's close frame, then drop the connection.

    A client that was cut for not reading or for flooding gets no time to answer.
    """
    patience = CLOSE_TIMEOUT if bye in (disconnect.REVOKED, disconnect.SHUTDOWN) else QUICK_CLOSE
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(ws.close(code=bye.code, message=bye.reason), patience)
