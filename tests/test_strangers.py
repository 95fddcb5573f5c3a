"""What a stranger can send the API without harm: bad bytes, forged hosts, odd methods."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.conftest import PASSWORD, login
from tests.processes import running
from tests.raw import raw_request

MakeApi = Callable[..., Awaitable[TestClient]]


def port_of(client: TestClient) -> int:
    return client.server.port  # type: ignore[no-any-return]


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("path", ["/me", "/sessions", "/logout"])
async def test_authorization_that_is_not_utf8_is_401(
    api: TestClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    method = "POST" if path == "/logout" else "GET"
    resp = await raw_request(port_of(api), method, path, {"Authorization": b"Bearer ab\xffc"})
    assert resp.status == 401
    assert resp.json()["code"] == "invalid_token"
    assert_no_error_logged(caplog)


async def test_a_latin1_user_agent_can_sign_in(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = f'{{"username": "alice", "password": "{PASSWORD}"}}'.encode()
    headers = {"User-Agent": b"Caf\xe9/1.0", "Content-Type": b"application/json"}
    resp = await raw_request(port_of(api), "POST", "/login", headers, body)
    assert resp.status == 200, resp.body
    assert resp.json()["session"]["user_agent"] == "Café/1.0"
    me = await api.get("/me", headers={"Authorization": f"Bearer {resp.json()['token']}"})
    assert (await me.json())["session"]["user_agent"] == "Café/1.0"
    assert_no_error_logged(caplog)


async def test_token_errors_do_not_echo_the_library(api: TestClient) -> None:
    for token in ("not-a-jwt", "a.b.c", (await login(api))["token"] + "x"):
        resp = await api.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert (await resp.json())["detail"] == "The token is not valid."


async def test_config_never_reflects_a_forged_host(make_api: MakeApi) -> None:
    api = await make_api(allowed_origins=("https://app.example",), gateway_port=9001)
    for host, expected in (
        ("app.example", "ws://app.example:9001/ws"),
        ("evil.example", "ws://app.example:9001/ws"),
        ("app.example:8000", "ws://app.example:9001/ws"),
        ("[bad", "ws://app.example:9001/ws"),
    ):
        resp = await api.get("/config", headers={"Host": host})
        assert (await resp.json())["gateway_url"] == expected, host


async def test_config_uses_the_public_url_when_set(make_api: MakeApi) -> None:
    api = await make_api(gateway_public_url="wss://push.example/ws")
    resp = await api.get("/config", headers={"Host": "evil.example"})
    assert (await resp.json())["gateway_url"] == "wss://push.example/ws"
    csp = (await api.get("/")).headers["Content-Security-Policy"]
    assert "connect-src 'self' wss://push.example;" in csp


async def test_the_page_may_connect_only_to_the_gateway(
    api: TestClient, settings: Settings
) -> None:
    csp = (await api.get("/")).headers["Content-Security-Policy"]
    connect = next(part for part in csp.split(";") if "connect-src" in part).split()
    port = settings.gateway_port
    assert connect == ["connect-src", "'self'", f"ws://localhost:{port}", f"ws://127.0.0.1:{port}"]


async def test_options_of_a_post_only_path_allows_only_post(api: TestClient) -> None:
    for method in ("OPTIONS", "DELETE", "GET"):
        resp = await api.request(method, "/sessions/revoke-others")
        assert resp.status == 405, method
        assert resp.headers["Allow"] == "POST"


async def test_openapi_lists_what_login_can_answer(api: TestClient) -> None:
    document = await (await api.get("/openapi.json")).json()
    answers = document["paths"]["/login"]["post"]["responses"]
    assert {"200", "400", "401", "408", "413", "415", "422", "429", "503"} <= set(answers)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_a_client_that_leaves_mid_body_is_no_error(
    redis_url: str, tmp_path: Path, content_type: str
) -> None:
    """A body cut short by the client's close is the client's business: no traceback (a
    stranger could fill the log with them, a few lines each). A real API process: it is
    what reads the body from the socket the client closed."""
    with running("service", redis_url, tmp_path) as api:
        _, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
            b"Content-Type: " + content_type.encode() + b'\r\n\r\n{"username": "al'
        )
        await writer.drain()
        writer.close()  # 84 bytes short
        await writer.wait_closed()
        # Its handler has ended once the API has counted it (as whatever it answered).
        async with aiohttp.ClientSession(api.url) as http:
            metrics = ""
            for _ in range(500):  # another process: polled, as nothing there can be awaited
                metrics = await (await http.get("/metrics")).text()
                if 'route="/login"' in metrics:
                    break
                await asyncio.sleep(0.01)
        assert 'route="/login",status="400"' in metrics.replace('method="POST",', "")
        assert "Traceback" not in api.log() and "unhandled" not in api.log()
