"""Liveness, readiness and metrics: the same three routes on the API and on the worker."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from service.engine.errors import REDIS_DOWN
from service.runtime.appkeys import ENGINE
from service.runtime.responses import json_response, redis_unavailable
from service.wire.schemas import Health

log = logging.getLogger(__name__)

NOT_READY = "Redis is not ready: a node is down or a slot is unserved."


def health_routes(
    registry: Callable[[web.Application], CollectorRegistry],
    also_ready: Callable[[web.Application], bool] = lambda app: True,
) -> list[web.RouteDef]:
    """`/healthz` (the process answers), `/readyz` (every master answers, every slot is
    served, and `also_ready`) and `/metrics` (the app's `registry`)."""

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

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry(request.app))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]
