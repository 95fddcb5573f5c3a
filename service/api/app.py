"""The API application factory: it only wires."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web

from service.api import activity, admin, forward_auth, ssf, webhooks
from service.api.appkeys import (
    AUTH,
    DELIVERIES,
    DEVICE_TOKENS,
    HASH_UPGRADES,
    LIMITER,
    METRICS,
    OUTBOX,
    PASSWORDS,
    SIGN_IN,
    SSF_POLL,
    SSF_RECEIVERS,
    SSF_SIGNER,
    SSF_WAITING,
    USERS,
    WEBHOOKS,
)
from service.api.cors import cors_middleware
from service.api.errors import Handler, problem_middleware
from service.api.geoip import GeoIp
from service.api.inputs import MAX_BODY, device_name_from
from service.api.metrics import ApiMetrics
from service.api.openapi import build_openapi
from service.api.page import SDK_FILES, page_headers
from service.api.routes import routes
from service.api.signin import SignIn
from service.api.userwatch import follow_users_file
from service.clock import SYSTEM_CLOCK, Clock
from service.engine.batcher import ReadBatcher
from service.engine.connect import RedisClient
from service.engine.factory import engine_for
from service.events.deliveries import DeliveryLog
from service.events.endpoints import EndpointStore
from service.runtime.appkeys import (
    ENGINE,
    EVENTS,
    METRICS_REGISTRY,
    REDIS,
    SETTINGS,
    STORE,
    TICKETS,
    TOKENS,
)
from service.runtime.contexts import redis_ctx
from service.runtime.health import health_routes
from service.sessions.callers import Authenticator
from service.sessions.eventlog import EventLog
from service.sessions.outbox import Outbox
from service.sessions.store import SessionStore
from service.sessions.tickets import SocketTickets
from service.sessions.tokens import TokenCodec
from service.settings import Settings
from service.ssf.poll import PollStore
from service.ssf.signing import load_signer
from service.ssf.store import ReceiverStore
from service.users.devicetokens import DeviceTokens
from service.users.directory import UserDirectory
from service.users.limiter import LoginLimiter
from service.users.passwords import PasswordChecker, password_hasher
from service.users.upgrade import HashUpgrades

log = logging.getLogger(__name__)
STATIC = files("service.api") / "static"
# The client library, kept as an npm-style package in clients/web/ and shipped as package
# data of `clients` (read as files: the API never imports client code).
SDK = files("clients") / "web"


def create_app(
    settings: Settings,
    *,
    redis_client: RedisClient | None = None,
    users: UserDirectory | None = None,
    clock: Clock = SYSTEM_CLOCK,
    passwords: PasswordChecker | None = None,
) -> web.Application:
    """Build the API. A given `redis_client` (or `passwords`) is used as is and left open
    for its owner."""
    middlewares = [problem_middleware]
    if settings.cors_origins:  # outermost: problems get the CORS headers too
        middlewares.insert(0, cors_middleware(frozenset(settings.cors_origins)))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[METRICS] = ApiMetrics()
    app[METRICS_REGISTRY] = app[METRICS].registry
    app[TOKENS] = TokenCodec(settings, clock)
    app[DEVICE_TOKENS] = DeviceTokens(settings, clock)
    geoip = GeoIp(settings.geoip_db)

    def attach(app: web.Application, client: RedisClient) -> None:
        metrics = app[METRICS]
        engine = app[ENGINE] = engine_for(client)
        reads = ReadBatcher(engine)
        app[REDIS] = client
        app[STORE] = SessionStore(
            client,
            settings,
            clock,
            engine=engine,
            reads=reads,
            on_unacknowledged=metrics.unacknowledged_revocations.inc,
        )
        app[LIMITER] = LoginLimiter(client, settings, clock)
        app[EVENTS] = EventLog(client)
        app[TICKETS] = SocketTickets(client, clock)
        app[AUTH] = Authenticator(app[TOKENS], app[STORE])
        app[SIGN_IN] = SignIn(app[STORE], app[TOKENS], geoip)
        app[WEBHOOKS] = EndpointStore(client, clock)
        app[DELIVERIES] = DeliveryLog(client, engine)
        app[OUTBOX] = Outbox(client, engine)
        app[SSF_RECEIVERS] = ReceiverStore(client, clock)
        app[SSF_POLL] = PollStore(client, settings.events_retention * 1000)
        app[SSF_WAITING] = Counter()

    app[USERS] = users or UserDirectory.load(settings.users_file)
    if users is None:  # a given directory is its owner's to follow
        app.cleanup_ctx.append(follow_users_file)
    app.cleanup_ctx.append(geoip.ctx)
    app.cleanup_ctx.append(redis_ctx(settings, redis_client, attach))
    app.cleanup_ctx.append(_warm_user_agent_parser)
    app.cleanup_ctx.append(_password_checker(settings, passwords))
    app.add_routes(routes)
    app.add_routes(health_routes(metrics=settings.metrics_port is None))
    app.add_routes(activity.routes)
    app.add_routes(forward_auth.routes)
    signer = load_signer(settings)  # a bad key stops the start, with its reason
    if signer is not None:  # SSF is off in production without SSF_SIGNING_KEY (docs/SSF.md)
        app[SSF_SIGNER] = signer
        app.add_routes(ssf.routes)
    if settings.admin_token:  # else every /admin/... path is a 404, like any unknown path
        app.add_routes(admin.routes)
        app.add_routes(webhooks.routes)
        if signer is not None:
            app.add_routes(ssf.admin_routes)
        log.info("the admin API is on (/admin/..., for the holder of ADMIN_TOKEN)")
    document = build_openapi(admin=bool(settings.admin_token), ssf=signer is not None)
    openapi = json.dumps(document).encode()
    app.router.add_get("/openapi.json", _static_bytes(openapi, "application/json"))
    page, asset = _page_files(page_headers(settings))
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", asset)
    for name, media in SDK_FILES.items():
        app.router.add_get(f"/sdk/{name}", _sdk_file(name, f"{media}; charset=utf-8"))
    return app


async def _warm_user_agent_parser(app: web.Application) -> AsyncIterator[None]:
    """ua-parser compiles its rules on first use (~0.5 s): do it now, off the loop."""
    await asyncio.to_thread(device_name_from, "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    yield


def _password_checker(
    settings: Settings, given: PasswordChecker | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The hashing threads, with PASSWORD_HASH_* (a given checker has its own)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        checker = app[PASSWORDS] = given or PasswordChecker(password_hasher(settings))
        app[HASH_UPGRADES] = HashUpgrades(app[USERS], checker)
        yield
        if given is None:
            checker.close()

    return ctx


def _static_bytes(body: bytes, content_type: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    return handler


def _page_files(headers: dict[str, str]) -> tuple[Handler, Handler]:
    """Handlers of the page and of its files, served with `headers`."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=headers)

    async def asset(request: web.Request) -> web.FileResponse:
        """A file of the page; a name that could leave the folder is refused."""
        name = request.match_info["name"]
        if name.startswith(".") or "/" in name or "\\" in name or not _is_file(STATIC / name):
            raise web.HTTPNotFound(text="No such file.")
        return web.FileResponse(STATIC / name, headers=headers)

    return page, asset


def _sdk_file(name: str, content_type: str) -> Handler:
    headers = {
        "Content-Type": content_type,
        "Cache-Control": "no-cache",  # revalidated (ETag), so an upgrade reaches pages at once
        "X-Content-Type-Options": "nosniff",
    }

    async def sdk(request: web.Request) -> web.FileResponse:
        return web.FileResponse(SDK / name, headers=headers)

    return sdk


def _is_file(path: Traversable) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no such file either
        return False
