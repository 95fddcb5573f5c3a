"""The gateway application factory: wiring only; each resource is one cleanup context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from service.clock import SYSTEM_CLOCK, Clock
from service.engine.batcher import ReadBatcher
from service.engine.connect import RedisClient
from service.engine.factory import engine_for
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
from service.sessions.eventlog import EventLog
from service.sessions.lease import sweeper_lease
from service.sessions.presence import Presence
from service.sessions.store import SessionStore
from service.sessions.tickets import SocketTickets
from service.sessions.tokens import TokenCodec
from service.settings import Settings
from workers import gateway
from workers.appkeys import (
    HEARTBEAT_INTERVAL,
    HUB,
    LISTENER,
    METRICS,
    PACER,
    PRESENCE,
    REFUSED_ORIGINS,
)
from workers.catchup import CatchUp
from workers.delivery import DeliveryDuty
from workers.hub import Hub
from workers.listener import Listener
from workers.metrics import Metrics
from workers.origins import RefusedOrigins
from workers.pacer import TurnPacer
from workers.presence import PresenceKeeper
from workers.sweeper import INTERVAL, Sweeper
from workers.tasks import background
from workers.webhook_http import http_client

# Admitted sockets that start per turn of the loop (workers/pacer.py): ~8 x 0.3-0.5 ms.
STARTS_PER_TURN = 8

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def create_gateway_app(
    settings: Settings,
    *,
    redis: RedisClient | None = None,
    clock: Clock = SYSTEM_CLOCK,
    queue_size: int = 64,
    heartbeat: float = gateway.HEARTBEAT,
    sweep_interval: float = INTERVAL,
) -> web.Application:
    """The worker app; an injected Redis client is used but not closed."""
    # No middleware: its frame would live as long as each socket; handlers map their errors.
    app = web.Application()
    app[SETTINGS] = settings
    # A socket's token is checked once, when it connects (~5 us on the fast path): 8,192
    # remembered tokens would only hold ~4.5 MB, ~550 bytes for each of the first sockets.
    app[TOKENS] = TokenCodec(settings, clock, cache_size=0)
    app[METRICS] = metrics = Metrics()
    app[METRICS_REGISTRY] = metrics.registry
    app[HUB] = Hub(metrics, clock, queue_size=queue_size)
    app[HEARTBEAT_INTERVAL] = heartbeat
    app[REFUSED_ORIGINS] = RefusedOrigins(clock, settings.origins)
    app[PACER] = TurnPacer(STARTS_PER_TURN)

    def attach(app: web.Application, client: RedisClient) -> None:
        engine = app[ENGINE] = engine_for(client)
        reads = ReadBatcher(engine)  # a reconnect storm's checks share their trips
        app[REDIS] = client
        app[STORE] = SessionStore(client, settings, clock, engine=engine, reads=reads)
        app[EVENTS] = EventLog(client)
        app[TICKETS] = SocketTickets(client, clock)

    app.cleanup_ctx.append(redis_ctx(settings, redis, attach))
    app.cleanup_ctx.append(listener_ctx)
    app.cleanup_ctx.append(presence_ctx(clock))
    app.cleanup_ctx.append(sweeper_ctx(sweep_interval))
    app.cleanup_ctx.append(delivery_ctx(clock))
    # Sockets must close before the server waits for its handlers, i.e. at shutdown.
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/ws", gateway.websocket)
    # Ready also needs every master's pub/sub connection up.
    app.add_routes(
        health_routes(
            lambda app: app[LISTENER].ready, metrics=settings.gateway_metrics_port is None
        )
    )
    return app


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    catch_up = CatchUp(app[EVENTS], app[HUB])
    listener = app[LISTENER] = Listener(app[ENGINE], app[HUB], catch_up, app[METRICS])
    async with background(listener.run, catch_up.run):
        yield


def presence_ctx(clock: Clock) -> CleanupCtx:
    """The task that reports this process's sockets (workers/presence.py)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        presence = Presence(app[REDIS], app[ENGINE], settings, clock)
        keeper = app[PRESENCE] = PresenceKeeper(presence, clock, settings.presence_refresh)
        async with background(keeper.run):
            yield
            await keeper.last_report()  # the sockets closed at shutdown (on_shutdown)

    return ctx


def sweeper_ctx(interval: float) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sweeper = Sweeper(app[STORE], sweeper_lease(app[REDIS]), app[METRICS], interval)
        async with background(sweeper.run):
            yield
        with contextlib.suppress(Exception):  # let another worker take over at once
            await sweeper.lease.release()

    return ctx


def delivery_ctx(clock: Clock) -> CleanupCtx:
    """Events out: the delivery duty, with the HTTP client its webhooks go through."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        async with http_client(settings.webhook_allow_private) as http:
            duty = DeliveryDuty(app[REDIS], app[ENGINE], settings, clock, http, app[METRICS])
            async with background(duty.run):
                yield

    return ctx


async def close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()
