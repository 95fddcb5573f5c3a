"""Liveness, readiness and metrics: the same routes on the API and on the worker; metrics
move to a port of their own when one is set (`metrics_site`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from service.engine.errors import REDIS_DOWN
from service.runtime.appkeys import ENGINE, METRICS_REGISTRY
from service.runtime.responses import json_response, redis_unavailable
from service.runtime.sharedmetrics import exposed
from service.wire.schemas import Health

log = logging.getLogger(__name__)

NOT_READY = "Redis is not ready: a node is down or a slot is unserved."


def health_routes(
    also_ready: Callable[[web.Application], bool] = lambda app: True, *, metrics: bool = True
) -> list[web.RouteDef]:
    """`/healthz` (the process answers), `/readyz` (every master answers, every slot is
    served, and `also_ready`) and, with `metrics`, `/metrics` (the app's METRICS_REGISTRY,
    or every process's)."""

    async def healthz(request: web.Request) -> web.Response:
        return json_response(Health(status="ok"))

    async def readyz(request: web.Request) -> web.Response:
        try:
            await request.app[ENGINE].check()
        except (RedisError, *REDIS_DOWN) as exc:
            log.info("not ready: %s", exc)
            return redis_unavailable(NOT_READY)
        if not also_ready(request.app):
            return redis_unavailable(NOT_READY)
        return json_response(Health(status="ok"))

    routes = [web.get("/healthz", healthz), web.get("/readyz", readyz)]
    if metrics:
        routes.append(web.get("/metrics", _metrics_of(lambda request: request.app)))
    return routes


def _metrics_of(app_of: Callable[[web.Request], web.Application]):  # type: ignore[no-untyped-def]
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(exposed(app_of(request)[METRICS_REGISTRY]))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def metrics_site(
    host: str, port: int, *, shared: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context serving the app's `/metrics` on a port of its own (every process
    of a role shares it with SO_REUSEPORT, as the public port)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", _metrics_of(lambda request: app))
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_port=shared or None).start()
        yield
        await runner.cleanup()

    return ctx
