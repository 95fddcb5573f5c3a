"""The gateway application factory: wiring only; each resource is one cleanup context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import redis.asyncio as redis
from aiohttp import web

from service.redis_conn import make_client, wait_until_up
from service.settings import Settings
from service.store import SessionStore
from service.tokens import TokenCodec
from workers import gateway
from workers.hub import Hub
from workers.listener import Listener
from workers.metrics import Metrics
from workers.sweeper import INTERVAL, Sweeper
from workers.tasks import background
from workers.typedefs import (
    HEARTBEAT_INTERVAL,
    HUB,
    LISTENER,
    METRICS,
    REDIS,
    SETTINGS,
    STORE,
    SWEEPER,
    TOKENS,
)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def create_gateway_app(
    settings: Settings,
    *,
    redis: redis.Redis | None = None,
    queue_size: int = 64,
    heartbeat: float = gateway.HEARTBEAT,
    sweep_interval: float = INTERVAL,
) -> web.Application:
    """The worker app; an injected Redis client is used but not closed."""
    # No middleware: its frame would live as long as each socket; handlers map their errors.
    app = web.Application()
    app[SETTINGS] = settings
    app[TOKENS] = TokenCodec(settings)
    app[METRICS] = metrics = Metrics()
    app[HUB] = Hub(metrics, queue_size=queue_size)
    app[HEARTBEAT_INTERVAL] = heartbeat
    app.cleanup_ctx.append(redis_ctx(redis))
    app.cleanup_ctx.append(listener_ctx)
    app.cleanup_ctx.append(sweeper_ctx(sweep_interval))
    # Sockets must close before the server waits for its handlers, i.e. at shutdown.
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/ws", gateway.websocket)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    return app


def redis_ctx(injected: redis.Redis | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        client = injected or make_client(settings.effective_redis_url)
        try:
            await wait_until_up(client, settings.effective_redis_url)
            app[REDIS] = client
            app[STORE] = SessionStore(client, settings)
            yield
        finally:
            if injected is None:
                await client.aclose()

    return ctx


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    listener = app[LISTENER] = Listener(app[REDIS], app[HUB], app[METRICS])
    async with background(listener.run, listener.run_subscriptions, listener.run_catch_up):
        yield


def sweeper_ctx(interval: float) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sweeper = app[SWEEPER] = Sweeper(app[REDIS], app[STORE], app[METRICS], interval)
        async with background(sweeper.run):
            yield
        with contextlib.suppress(Exception):  # let another worker take over at once
            await sweeper.lease.release()

    return ctx


async def close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()
