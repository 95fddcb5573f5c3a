"""The two ceilings /me is measured against, as single aiohttp processes.

python -m bench.ceilings bare  PORT           returns /me's JSON, no I/O
python -m bench.ceilings redis PORT REDIS_URL  one Redis GET, then the same JSON
"""

from __future__ import annotations

import sys

from aiohttp import web

from service.engine.connect import RedisClient, connected
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


def build(mode: str, redis_url: str | None) -> web.Application:
    app = web.Application()
    if mode == "bare":
        app.router.add_get("/me", bare)
        return app

    async def client_ctx(app: web.Application):
        # The API's own client settings, for one server or a cluster alike.
        async with connected(Settings(redis_url=redis_url)) as client:
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
