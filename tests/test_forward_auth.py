"""GET /auth/verify: in process, then through a real nginx in front of a real API process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import ENGINES, bearer, free_port, login, on_engine
from tests.nginx import (
    DEPLOYMENT_CONF,
    Nginx,
    NginxFactory,
    nginx_fixture,  # noqa: F401  (registers the "nginx" fixture)
)
from tests.processes import Process, running
from tests.test_admin_api import ADMIN, ADMIN_TOKEN


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


MakeApi = Callable[..., Awaitable[TestClient]]
IDENTITY = ("X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Session")


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (but the date) and body: what must match between two answers."""
    headers = {k: v for k, v in resp.headers.items() if k not in ("Date", "Server")}
    return resp.status, headers, await resp.read()


# --- in process ---


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
async def test_a_live_token_is_200_with_who_in_headers(api: TestClient, method: str) -> None:
    signed_in = await login(api)
    resp = await api.request(method, "/auth/verify", headers=bearer(signed_in["token"]))
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["X-Auth-Request-User"] == "alice"
    assert resp.headers["X-Auth-Request-Email"] == "alice@example.com"
    assert resp.headers["X-Auth-Request-Session"] == signed_in["session"]["session_id"]
    assert resp.headers["Cache-Control"] == "no-store"


async def test_no_email_header_for_a_user_without_one(make_api: MakeApi) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    resp = await api.post("/admin/sessions", json={"username": "dave"}, headers=ADMIN)
    token = (await resp.json())["token"]
    resp = await api.get("/auth/verify", headers=bearer(token))
    assert resp.status == 200
    assert resp.headers["X-Auth-Request-User"] == "dave"
    assert "X-Auth-Request-Email" not in resp.headers


async def test_every_failure_is_the_same_401_as_me(api: TestClient) -> None:
    signed_in = await login(api)
    await api.post("/logout", headers=bearer(signed_in["token"]))
    for headers in (
        {},
        bearer("x.y.z"),
        {"Authorization": "Basic abc"},
        bearer(signed_in["token"]),
    ):
        verify = await answer(await api.get("/auth/verify", headers=headers))
        me = await answer(await api.get("/me", headers=headers))
        assert verify[0] == 401
        assert verify == me
        assert verify[1]["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert not set(IDENTITY) & set(verify[1])


async def test_a_revoked_token_fails_at_once(api: TestClient) -> None:
    kept, revoked = await login(api), await login(api)
    assert (await api.get("/auth/verify", headers=bearer(revoked["token"]))).status == 200
    target = revoked["session"]["session_id"]
    await api.delete(f"/sessions/{target}", headers=bearer(kept["token"]))
    resp = await api.get("/auth/verify", headers=bearer(revoked["token"]))
    assert resp.status == 401
    assert (await resp.json(content_type=None))["revoked"]["reason"] == "revoked"
    assert (await api.get("/auth/verify", headers=bearer(kept["token"]))).status == 200


# --- through nginx (docs/nginx/sessionwire.conf.example) ---


@dataclass
class Product:
    """A tiny product API behind /app/: it answers with what it was told about the caller."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def echo(request: web.Request) -> web.Response:
            view = {"path": request.path_qs, "headers": dict(request.headers)}
            self.seen.append(view)
            return web.json_response(view)

        app = web.Application()
        app.router.add_route("*", "/app/{tail:.*}", echo)
        return app


@dataclass
class Edge:
    proxy: Nginx
    api: Process
    product: Product
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.proxy.url + path, **kwargs) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text.startswith("{") else text

    async def sign_in(self, username: str = "alice") -> dict[str, Any]:
        return await login(self.http, username, url=self.proxy.url)


@pytest.fixture
async def edge(
    redis_url: str,
    tmp_path: Path,
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    nginx: NginxFactory,
) -> AsyncIterator[Edge]:
    """A real nginx with the documented config, a real API process, the product stub."""
    product = Product()
    upstream = await aiohttp_server(product.app())
    with running(
        "service", redis_url, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN, TRUSTED_PROXIES="127.0.0.1/32"
    ) as api:
        proxy = nginx(
            DEPLOYMENT_CONF,
            server_name="localhost",
            api=f"127.0.0.1:{api.port}",
            gateway=f"127.0.0.1:{free_port()}",  # no gateway needed here
            app=f"127.0.0.1:{upstream.port}",
        )
        async with aiohttp.ClientSession() as http:
            yield Edge(proxy, api, product, http)


async def test_nginx_no_token_is_401_and_the_product_is_not_asked(edge: Edge) -> None:
    status, body = await edge.call("GET", "/app/orders")
    assert status == 401
    assert body["code"] == "missing_token"
    status, body = await edge.call("GET", "/app/orders", headers=bearer("not.a.token"))
    assert (status, body["code"]) == (401, "invalid_token")
    assert edge.product.seen == []


async def test_nginx_a_valid_token_reaches_the_product_with_the_user(edge: Edge) -> None:
    signed_in = await edge.sign_in()
    for method in ("GET", "POST", "DELETE"):
        status, body = await edge.call(
            method, "/app/orders?page=2", headers=bearer(signed_in["token"])
        )
        assert status == 200, body
        assert body["path"] == "/app/orders?page=2"
        headers = body["headers"]
        assert headers["X-Auth-Request-User"] == "alice"
        assert headers["X-Auth-Request-Email"] == "alice@example.com"
        assert headers["X-Auth-Request-Session"] == signed_in["session"]["session_id"]
        assert "Authorization" not in headers


async def test_nginx_a_user_the_product_signed_in_has_no_email(edge: Edge) -> None:
    status, opened = await edge.call(
        "POST", "/admin/sessions", json={"username": "dave"}, headers=ADMIN
    )
    assert status == 200, opened
    status, body = await edge.call("GET", "/app/x", headers=bearer(opened["token"]))
    assert status == 200, body
    assert body["headers"]["X-Auth-Request-User"] == "dave"
    assert "X-Auth-Request-Email" not in body["headers"]


async def test_nginx_a_revoked_token_is_401_at_once(edge: Edge) -> None:
    signed_in = await edge.sign_in()
    auth = bearer(signed_in["token"])
    assert (await edge.call("GET", "/app/orders", headers=auth))[0] == 200
    status, body = await edge.call("POST", "/logout", headers=auth)
    assert status == 200, body
    status, body = await edge.call("GET", "/app/orders", headers=auth)
    assert (status, body["code"]) == (401, "invalid_token")
    assert len(edge.product.seen) == 1

    # An admin revoke (password changed) works the same.
    other = await edge.sign_in()
    auth = bearer(other["token"])
    assert (await edge.call("GET", "/app/orders", headers=auth))[0] == 200
    status, _ = await edge.call(
        "POST", "/admin/users/alice/logout-all", json={"reason": "password_changed"}, headers=ADMIN
    )
    assert status == 200
    assert (await edge.call("GET", "/app/orders", headers=auth))[0] == 401
    # The API's own /me says why.
    status, body = await edge.call("GET", "/me", headers=auth)
    assert (status, body["revoked"]["reason"]) == (401, "password_changed")


async def test_nginx_does_not_serve_verify_itself(edge: Edge) -> None:
    signed_in = await edge.sign_in()
    status, _ = await edge.call("GET", "/auth/verify", headers=bearer(signed_in["token"]))
    assert status == 404


@pytest.mark.parametrize("method", ["TRACE"])
async def test_methods_no_api_call_uses_are_405(api: TestClient, method: str) -> None:
    signed_in = await login(api)
    resp = await api.request(method, "/auth/verify", headers=bearer(signed_in["token"]))
    assert resp.status == 405
