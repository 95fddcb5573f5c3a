"""The ceilings /me is measured against, as single aiohttp processes.

python -m bench.ceilings bare   PORT            returns /me's JSON, no I/O
python -m bench.ceilings plain  PORT REDIS_URL  one GET, then the same JSON, with the client
                                                a user writes first: `Redis.from_url(url)`
                                                (or `RedisCluster.from_url(url)`), defaults
                                                but a pool for 256 concurrent requests
python -m bench.ceilings client PORT REDIS_URL  the same GET through the API's own client
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from service.engine.connect import (
    MAX_CONNECTIONS,
    RedisClient,
    connected,
    is_cluster,
    wait_until_up,
)
from service.runtime.process import LISTEN_BACKLOG
from service.settings import Settings

# The shape and size of a real /me answer.
BODY = (
    b'{"username":"user123","email":"user123@example.com","bio":"First demo user of the '
    b'original tutorial.","session":{"session_id":"7NWS77OAf0P-9rj2t8hsQA","device_id":null,'
    b'"device_name":"wrk","user_agent":"wrk","ip":"127.0.0.1","created_at":'
    b'"2026-11-27T07:01:03.113000Z","last_seen_at":"2026-11-27T07:01:03.113000Z",'
    b'"expires_at":"2026-11-27T08:01:03.113000Z"}}'
)
CLIENT = web.AppKey("client", RedisClient)


async def bare(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def one_get(request: web.Request) -> web.Response:
    await request.app[CLIENT].get("bench:session")
    return web.Response(body=BODY, content_type="application/json")


# The one default changed: redis-py's pools hold 100 connections (per node on a cluster),
# and past them a command fails at once with MaxConnectionsError ("Too many connections"),
# so with the defaults alone this server answers 500 to most requests at 256 connections.
POOL = {"max_connections": MAX_CONNECTIONS}


@asynccontextmanager
async def plain(url: str) -> AsyncIterator[RedisClient]:
    """What a user writes first: the library's client for the URL, with its defaults."""
    probe = redis.Redis.from_url(url)
    await wait_until_up(probe.ping, url)  # the benchmark's Redis may be starting
    cluster = await is_cluster(probe)
    await probe.aclose()
    client = RedisCluster.from_url(url, **POOL) if cluster else redis.Redis.from_url(url, **POOL)
    try:
        yield client
    finally:
        await client.aclose()


def build(mode: str, redis_url: str | None) -> web.Application:
    app = web.Application()
    if mode == "bare":
        app.router.add_get("/me", bare)
        return app
    assert redis_url is not None

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # The API's own client settings (`client`), or the library's defaults (`plain`).
        opened = connected(Settings(redis_url=redis_url)) if mode == "client" else plain(redis_url)
        async with opened as client:
            app[CLIENT] = client
            await client.set("bench:session", BODY)
            yield

    app.cleanup_ctx.append(client_ctx)
    app.router.add_get("/me", one_get)
    return app


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    url = sys.argv[3] if len(sys.argv) > 3 else None
    web.run_app(
        build(mode, url),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=LISTEN_BACKLOG,  # as the API
    )
