"""/openapi.json documents the product endpoints (admin API, activity, forward auth)."""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from service.wire.schemas import (
    ActivityResponse,
    LoginResponse,
    RevokedResponse,
    UserSessionsResponse,
)
from tests.conftest import ROOT, bearer, login
from tests.test_admin_api import ADMIN, ADMIN_TOKEN

# (method, path) -> the error statuses each must document, at least.
DOCUMENTED = {
    ("get", "/activity"): {401, 422},
    ("get", "/auth/verify"): {401},
    ("head", "/auth/verify"): {401},
    ("post", "/admin/sessions"): {400, 401, 404, 413, 415, 422, 429},
    ("get", "/admin/users/{username}/sessions"): {401, 404, 422, 429},
    ("delete", "/admin/users/{username}/sessions/{session_id}"): {401, 404, 422, 429},
    ("post", "/admin/users/{username}/logout-all"): {400, 401, 404, 422, 429},
    ("get", "/admin/users/{username}/activity"): {401, 404, 422, 429},
}


@pytest.fixture
async def api(make_api: Any) -> TestClient:
    """The API with the admin API on (its document lists it only then)."""
    return await make_api(admin_token=ADMIN_TOKEN)  # type: ignore[no-any-return]


async def document(api: TestClient) -> dict[str, Any]:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    return await resp.json()  # type: ignore[no-any-return]


async def test_every_product_endpoint_with_its_errors(api: TestClient) -> None:
    doc = await document(api)
    for (method, path), errors in DOCUMENTED.items():
        op = doc["paths"][path][method]
        assert errors <= {int(status) for status in op["responses"] if status != "200"}, path
        assert "200" in op["responses"], path
        # A device signs its calls with a bearer token, or (a browser page) the cookie.
        device = [{"bearer": []}, {"cookie": []}]
        assert op["security"] == ([{"admin": []}] if path.startswith("/admin/") else device), path
    schemes = doc["components"]["securitySchemes"]
    assert (
        schemes["admin"]["scheme"] == "bearer" and "ADMIN_TOKEN" in schemes["admin"]["description"]
    )


async def test_parameters_bodies_and_headers(api: TestClient) -> None:
    doc = await document(api)
    paths = doc["paths"]
    revoke = paths["/admin/users/{username}/sessions/{session_id}"]["delete"]
    assert [(p["name"], p["in"]) for p in revoke["parameters"]] == [
        ("username", "path"),
        ("session_id", "path"),
    ]
    assert revoke["parameters"][0]["schema"]["maxLength"] == 64
    for path in ("/activity", "/admin/users/{username}/activity"):
        (limit,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "limit"]
        assert limit["in"] == "query" and not limit["required"]
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
        assert limit["schema"]["default"] == 50
    assert paths["/admin/users/{username}/logout-all"]["post"]["requestBody"]["required"] is False
    body = paths["/admin/sessions"]["post"]["requestBody"]
    assert body["required"] is True
    schemas = doc["components"]["schemas"]
    assert schemas["AdminSessionRequest"]["required"] == ["username"]
    assert schemas["AdminLogoutAllRequest"]["properties"]["reason"]["enum"] == [
        "admin",
        "password_changed",
    ]
    reasons = schemas["Revocation"]["properties"]["reason"]["enum"]
    assert {"admin", "password_changed"} <= set(reasons)
    headers = paths["/auth/verify"]["get"]["responses"]["200"]["headers"]
    assert set(headers) == {"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Session"}
    me = schemas["MeResponse"]["properties"]
    assert {"type": "null"} in me["email"]["anyOf"]


async def test_answers_match_their_published_schemas(make_api: Any) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN)
    token = (await login(api))["token"]
    raw = await (await api.get("/activity", headers=bearer(token))).read()
    assert msgspec.json.decode(raw, type=ActivityResponse).events
    raw = await (await api.post("/admin/sessions", json={"username": "dave"}, headers=ADMIN)).read()
    msgspec.json.decode(raw, type=LoginResponse)
    raw = await (await api.get("/admin/users/dave/sessions", headers=ADMIN)).read()
    assert msgspec.json.decode(raw, type=UserSessionsResponse).sessions
    raw = await (await api.post("/admin/users/dave/logout-all", headers=ADMIN)).read()
    assert msgspec.json.decode(raw, type=RevokedResponse).revoked


async def test_the_admin_api_is_documented_only_when_it_is_on(make_api: Any) -> None:
    doc = await document(await make_api())  # no ADMIN_TOKEN: every /admin path is a 404
    assert not [path for path in doc["paths"] if path.startswith("/admin/")]
    # SSF is on outside production: its receivers' schemes, not the admin's.
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "cookie", "ssf", "ssf_client"}
    assert "/ssf/stream" in doc["paths"] and "/admin/ssf/receivers" not in doc["paths"]
    form = "application/x-www-form-urlencoded"
    assert form in doc["paths"]["/login"]["post"]["requestBody"]["content"]


async def test_the_document_has_the_packages_version(api: TestClient) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (await document(api))["info"]["version"] == project["version"]


async def test_browser_sessions_are_documented(api: TestClient) -> None:
    doc = await document(api)
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    cookie = doc["components"]["securitySchemes"]["cookie"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == (
        "apiKey",
        "cookie",
        "__Host-sessionwire",
    )
    assert "csrf_refused" in cookie["description"]
    login = paths["/login"]["post"]
    assert "Set-Cookie" in login["responses"]["200"]["headers"]
    assert "csrf_refused" in login["responses"]["403"]["description"]
    assert schemas["LoginRequest"]["properties"]["cookie"]["anyOf"] == [
        {"type": "boolean"},
        {"type": "null"},
    ]
    assert "token" not in schemas["LoginResponse"]["required"]  # absent in cookie mode
    for method, path in [
        ("delete", "/sessions/{session_id}"),
        ("post", "/sessions/revoke-others"),
        ("post", "/logout-all"),
    ]:
        words = paths[path][method]["responses"]["403"]["description"]
        assert "session_too_new" in words and "csrf_refused" in words, path
    ticket = paths["/socket-ticket"]["post"]
    assert ticket["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SocketTicket"
    )
    assert set(schemas["SocketTicket"]["required"]) == {"ticket", "expires_at"}
    assert schemas["ClientConfig"]["properties"]["socket_ticket"]["type"] == "boolean"
    for name, media in [
        ("sessionwire.js", "text/javascript"),
        ("sessionwire.d.ts", "application/typescript"),
    ]:
        assert media in paths[f"/sdk/{name}"]["get"]["responses"]["200"]["content"]
