"""The nginx fixture and the deployment config, in a real nginx in front of stub upstreams.

The stubs stand in for the API (`/auth/verify` and everything else), the product's own API
behind `/app/`, and the gateway's `/ws`; each echoes what it received, so the tests see
exactly what nginx passed on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.nginx import (
    DEPLOYMENT_CONF,
    DOCS_EXAMPLE,
    Nginx,
    NginxFactory,
    accepts_connections,
    nginx_fixture,  # noqa: F401  (registers the "nginx" fixture)
    render,
    render_docs_example,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
WWW_AUTHENTICATE = 'Bearer error="invalid_token"'
NO_CREDENTIALS = 'Bearer realm="sessionwire"'
IDENTITIES = {
    "Bearer good": {
        "X-Auth-Request-User": "alice",
        "X-Auth-Request-Email": "alice@example.com",
        "X-Auth-Request-Session": "s-alice",
    },
    # A user the product signed in itself has no email: the header is then absent.
    "Bearer no-email": {"X-Auth-Request-User": "bob", "X-Auth-Request-Session": "s-bob"},
}


@dataclass
class Seen:
    """What the API stub's /auth/verify and the product stub received."""

    verify: list[dict[str, Any]] = field(default_factory=list)
    app: list[dict[str, Any]] = field(default_factory=list)


def request_view(server: str, request: web.Request, body: bytes) -> dict[str, Any]:
    return {
        "server": server,
        "method": request.method,
        "path": request.path_qs,
        "headers": dict(request.headers),
        "body": body.decode(errors="replace"),
    }


def api_stub(seen: Seen) -> web.Application:
    async def verify(request: web.Request) -> web.Response:
        seen.verify.append(request_view("api", request, await request.read()))
        auth = request.headers.get("Authorization", "")
        if auth == "Bearer down":
            return problem(503, "redis_unavailable")
        if auth in IDENTITIES:
            return web.Response(status=200, headers=IDENTITIES[auth])
        if not auth:  # as the API: no credentials, no error code (RFC 6750)
            return problem(401, "missing_token", {"WWW-Authenticate": NO_CREDENTIALS})
        return problem(401, "invalid_token", {"WWW-Authenticate": WWW_AUTHENTICATE})

    app = web.Application()
    # GET only, as the real route: a subrequest with the client's method would get 405.
    app.router.add_get("/auth/verify", verify, allow_head=False)
    app.router.add_route("*", "/{tail:(?!auth/).*}", echo("api"))
    return app


def problem(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "status": status, "code": code}
    return web.json_response(
        body, status=status, headers=headers, content_type="application/problem+json"
    )


def echo(
    server: str, log: list[dict[str, Any]] | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        view = request_view(server, request, await request.read())
        if log is not None:
            log.append(view)
        return web.json_response(view)

    return handler


def app_stub(seen: Seen) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo("app", seen.app))
    return app


def gateway_stub() -> web.Application:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(protocols=("sessionwire.v1",))
        await sock.prepare(request)
        await sock.send_json(request_view("gateway", request, b""))
        async for message in sock:
            await sock.send_str(f"echo: {message.data}")
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    return app


@dataclass
class Edge:
    proxy: Nginx
    http: aiohttp.ClientSession
    seen: Seen

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, Any]:
        return await self.call("GET", path, **kwargs)

    async def call(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[aiohttp.ClientResponse, Any]:
        async with self.http.request(method, self.proxy.url + path, **kwargs) as resp:
            text = await resp.text()
            return resp, json.loads(text) if text.startswith("{") else text


@pytest.fixture
async def edge(aiohttp_server: ServerFactory, nginx: NginxFactory) -> AsyncIterator[Edge]:
    """The deployment config in a real nginx, in front of the three stubs."""
    seen = Seen()
    api, app, gateway = [
        await aiohttp_server(stub) for stub in (api_stub(seen), app_stub(seen), gateway_stub())
    ]
    proxy = nginx(
        DEPLOYMENT_CONF,
        server_name="localhost",
        api=f"127.0.0.1:{api.port}",
        app=f"127.0.0.1:{app.port}",
        gateway=f"127.0.0.1:{gateway.port}",
    )
    async with aiohttp.ClientSession() as http:
        yield Edge(proxy, http, seen)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- forward auth (/app/) ---


async def test_no_token_is_a_401_problem_and_the_product_is_not_asked(edge: Edge) -> None:
    resp, body = await edge.get("/app/orders")
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    assert body["code"] == "missing_token" and body["status"] == 401
    assert resp.headers.getall("WWW-Authenticate") == [NO_CREDENTIALS]
    assert edge.seen.app == []
    assert '"GET /app/orders HTTP/1.1" 401' in edge.proxy.access_log()


async def test_a_bad_token_is_a_401_with_the_apis_challenge(edge: Edge) -> None:
    resp, body = await edge.get("/app/orders", headers=bearer("bad"))
    assert resp.status == 401
    assert edge.seen.app == []
    assert body["code"] == "invalid_token"
    assert resp.headers.getall("WWW-Authenticate") == [WWW_AUTHENTICATE]
    assert resp.headers["Cache-Control"] == "no-store"
    assert edge.seen.verify[-1]["headers"]["Authorization"] == "Bearer bad"


async def test_a_good_token_reaches_the_product_with_the_identity(edge: Edge) -> None:
    resp, body = await edge.get("/app/orders?page=2", headers=bearer("good"))
    assert resp.status == 200, body
    assert body["server"] == "app" and body["path"] == "/app/orders?page=2"
    headers = body["headers"]
    assert headers["X-Auth-Request-User"] == "alice"
    assert headers["X-Auth-Request-Email"] == "alice@example.com"
    assert headers["X-Auth-Request-Session"] == "s-alice"
    assert "Authorization" not in headers  # the product gets the identity, not the token
    assert headers["X-Forwarded-For"] == "127.0.0.1"


async def test_identity_headers_from_the_client_are_never_passed_on(edge: Edge) -> None:
    forged = {
        "X-Auth-Request-User": "mallory",
        "X-Auth-Request-Email": "mallory@example.com",
        "X-Auth-Request-Session": "s-mallory",
    }
    resp, body = await edge.get("/app/x", headers={**forged, **bearer("no-email")})
    assert resp.status == 200, body
    headers = body["headers"]
    assert headers["X-Auth-Request-User"] == "bob"
    assert headers["X-Auth-Request-Session"] == "s-bob"
    assert "X-Auth-Request-Email" not in headers  # the API said none: the forged one is gone

    resp, _ = await edge.get("/app/x", headers={**forged, **bearer("bad")})
    assert resp.status == 401


async def test_the_check_is_a_bodyless_get_whatever_the_clients_method(edge: Edge) -> None:
    resp, body = await edge.call("POST", "/app/orders", json={"n": 1}, headers=bearer("good"))
    assert resp.status == 200, body
    assert body["method"] == "POST" and json.loads(body["body"]) == {"n": 1}
    check = edge.seen.verify[-1]
    assert check["method"] == "GET" and check["body"] == ""
    assert "Content-Length" not in check["headers"]
    assert check["headers"]["X-Original-URI"] == "/app/orders"
    assert check["headers"]["X-Original-Method"] == "POST"


async def test_a_failed_check_is_a_503_to_retry_not_a_500(edge: Edge) -> None:
    resp, body = await edge.get("/app/x", headers=bearer("down"))
    assert resp.status == 503
    assert edge.seen.app == []
    assert resp.content_type == "application/problem+json"
    assert body["code"] == "auth_unavailable"
    assert resp.headers["Retry-After"] == "1"


# --- the page and the API ---


async def test_the_api_sees_the_client_address_scheme_and_host(edge: Edge) -> None:
    resp, body = await edge.get("/me", headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status == 200, body
    assert body["server"] == "api" and body["path"] == "/me"
    headers = body["headers"]
    # The client's claim stays first; the API believes the right-most untrusted hop.
    assert headers["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["Host"] == "127.0.0.1"


async def test_every_api_path_goes_to_the_api(edge: Edge) -> None:
    for method, path in [
        ("GET", "/"),
        ("POST", "/login"),
        ("POST", "/logout"),
        ("DELETE", "/sessions/abc"),
        ("GET", "/activity?limit=5"),
        ("GET", "/admin/users/alice/sessions"),
        ("GET", "/openapi.json"),
        ("GET", "/config"),
        ("GET", "/static/app.js"),
    ]:
        resp, body = await edge.call(method, path, headers=bearer("good"))
        assert resp.status == 200, (path, body)
        assert (body["server"], body["method"], body["path"]) == ("api", method, path)
        assert body["headers"]["Authorization"] == "Bearer good"  # the API needs the token


async def test_internal_paths_are_not_served(edge: Edge) -> None:
    for path in ("/auth/verify", "/metrics", "/_sessionwire_verify"):
        resp, _ = await edge.get(path, headers=bearer("good"))
        assert resp.status == 404, path
    assert edge.seen.verify == []


# --- the gateway ---


async def test_the_websocket_upgrade_goes_through_to_the_gateway(edge: Edge) -> None:
    async with edge.http.ws_connect(
        edge.proxy.ws_url + "/ws", protocols=("sessionwire.v1", "bearer.abc")
    ) as sock:
        assert sock.protocol == "sessionwire.v1"
        hello = await sock.receive_json(timeout=5)
        assert hello["server"] == "gateway"
        assert hello["headers"]["Upgrade"].lower() == "websocket"
        assert hello["headers"]["Sec-WebSocket-Protocol"] == "sessionwire.v1,bearer.abc"
        assert hello["headers"]["X-Forwarded-For"] == "127.0.0.1"
        await sock.send_str("hi")
        assert await sock.receive_str(timeout=5) == "echo: hi"


# --- the fixture and the docs ---


def test_the_docs_example_is_the_tested_config() -> None:
    assert DOCS_EXAMPLE.read_text() == render_docs_example(), (
        "regenerate: python -c 'from tests.nginx import *; "
        "DOCS_EXAMPLE.write_text(render_docs_example())'"
    )


def test_placeholders_must_all_be_given() -> None:
    with pytest.raises(ValueError, match="missing: \\['app'\\]"):
        render("{{api}} {{app}}", api=1)
    with pytest.raises(ValueError, match="unused: \\['apx'\\]"):
        render("{{api}}", api=1, apx=2)


def test_a_bad_config_fails_with_the_error_log(nginx: NginxFactory) -> None:
    with pytest.raises(RuntimeError, match='unknown directive "no_such_directive"'):
        nginx("no_such_directive on;")


def test_stop_ends_the_process_and_frees_the_port(nginx: NginxFactory) -> None:
    proxy = nginx("server { listen {{listen}}; location / { return 204; } }")
    assert accepts_connections(proxy.port)
    assert proxy.stop() == 0
    assert proxy.proc is not None and proxy.proc.poll() == 0
    assert not accepts_connections(proxy.port)
    assert "temp" in {p.name for p in proxy.prefix.iterdir()}
