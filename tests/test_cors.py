"""CORS for CORS_ORIGINS: preflights, the headers of every answer (credentials allowed, for
the browser's cookie), and nothing for others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import PASSWORD, bearer, login
from tests.test_admin_api import ADMIN_TOKEN
from tests.test_api_input import problem

MakeApi = Callable[..., Awaitable[TestClient]]
APP = "https://app.example"
OTHER_APP = "http://localhost:5173"
EVIL = "https://evil.example"


@pytest.fixture
async def api(make_api: MakeApi) -> TestClient:
    return await make_api(cors_origins=(APP, OTHER_APP), admin_token=ADMIN_TOKEN)


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def cors_headers(headers: Mapping[str, str]) -> set[str]:
    return {k.lower() for k in headers if k.lower().startswith("access-control-")}


@pytest.mark.parametrize("path", ["/login", "/me", "/sessions/abc", "/activity", "/nowhere"])
@pytest.mark.parametrize("origin", [APP, OTHER_APP])
async def test_a_preflight_from_a_listed_origin(api: TestClient, path: str, origin: str) -> None:
    resp = await api.options(path, headers=preflight(origin, "DELETE"))
    assert resp.status == 204
    assert await resp.read() == b""
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert resp.headers["Vary"] == "Origin"
    # Listed pages may send the browser's cookie; a credentialed answer names its origin.
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize("origin", [EVIL, "null", APP + "/", "https://APP.example", "*"])
async def test_a_preflight_from_another_origin_gets_no_cors_headers(
    api: TestClient, origin: str
) -> None:
    resp = await api.options("/login", headers=preflight(origin))
    assert resp.status == 405  # as without CORS: there is no OPTIONS /login
    assert cors_headers(resp.headers) == set()
    assert resp.headers["Vary"] == "Origin"


async def test_answers_to_a_listed_origin_say_so_errors_too(api: TestClient) -> None:
    origin = {"Origin": APP}
    token = (await login(api))["token"]
    answers = [
        await api.get("/me", headers={**origin, **bearer(token)}),  # 200
        await api.get("/me", headers=origin),  # 401
        await api.get("/nowhere", headers=origin),  # 404
        await api.put("/login", headers=origin),  # 405
        await api.post("/login", json={}, headers=origin),  # 422
        await api.get("/activity?limit=0", headers={**origin, **bearer(token)}),  # 422
        await api.get("/admin/users/alice/sessions", headers=origin),  # 401, admin API
        await api.get("/", headers=origin),  # the page
    ]
    assert [resp.status for resp in answers] == [200, 401, 404, 405, 422, 422, 401, 200]
    for resp in answers:
        assert resp.headers["Access-Control-Allow-Origin"] == APP
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Vary"] == "Origin"
        exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
        assert exposed == {"Retry-After", "WWW-Authenticate"}
    assert answers[1].headers["WWW-Authenticate"] == 'Bearer realm="sessionwire"'  # no token


async def test_a_rate_limited_answer_carries_the_cors_headers(make_api: MakeApi) -> None:
    api = await make_api(cors_origins=(APP,), login_max_failures=1)
    wrong = {"username": "alice", "password": "wrong"}
    assert (await api.post("/login", json=wrong, headers={"Origin": APP})).status == 401
    resp = await api.post("/login", json={**wrong, "password": PASSWORD}, headers={"Origin": APP})
    await problem(resp, 429, "rate_limited")
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]


async def test_other_origins_get_no_cors_headers(api: TestClient) -> None:
    token = (await login(api))["token"]
    for headers in ({"Origin": EVIL}, {}):
        for resp in (
            await api.get("/me", headers={**headers, **bearer(token)}),
            await api.get("/me", headers=headers),
        ):
            assert cors_headers(resp.headers) == set()
            # The answer depends on the Origin: a cache must not serve it to another one.
            assert resp.headers["Vary"] == "Origin"


async def test_without_cors_origins_nothing_changes(make_api: MakeApi) -> None:
    plain = await make_api()
    resp = await plain.options("/login", headers=preflight(APP))
    await problem(resp, 405, "method_not_allowed")
    assert cors_headers(resp.headers) == set() and "Vary" not in resp.headers
    resp = await plain.get("/healthz", headers={"Origin": APP})
    assert cors_headers(resp.headers) == set() and "Vary" not in resp.headers
