"""Bad input of every kind gets a 4xx problem+json naming what is wrong, never a 5xx."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import PASSWORD, login

PROBLEM = "application/problem+json"


def challenge(code: str) -> str:
    """The WWW-Authenticate of a 401 with `code`: RFC 6750 gives a request that sent no
    credentials no error code."""
    return (
        'Bearer realm="sessionwire"' if code == "missing_token" else 'Bearer error="invalid_token"'
    )


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Check a problem+json response and return its body."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"]
    assert "Traceback" not in json.dumps(body)
    return body  # type: ignore[no-any-return]


async def post_raw(api: TestClient, data: bytes, content_type: str | None) -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return await api.post("/login", data=data, headers=headers)


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"",
        b"not json",
        b'{"username": "alice",}',
        b'{"username": "\xff\xfe"}',
        b"\x00",
        b'{"pad": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    ],
    ids=["open", "empty", "text", "trailing-comma", "not-utf8", "nul", "deep-nesting"],
)
async def test_malformed_json_is_400(api: TestClient, data: bytes) -> None:
    await problem(await post_raw(api, data, "application/json"), 400, "malformed_body")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "image/png"])
async def test_wrong_content_type_is_415(api: TestClient, content_type: str | None) -> None:
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    await problem(await post_raw(api, body, content_type), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "alice"}, "password"),
        ({"username": 1, "password": PASSWORD}, "username"),
        ({"username": "alice", "password": None}, "password"),
        ({"username": ["alice"], "password": PASSWORD}, "username"),
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "alice", "password": ""}, "password"),
        ({"username": "alice", "password": PASSWORD, "device_name": ""}, "device_name"),
        ({"username": "alice", "password": PASSWORD, "device_name": 7}, "device_name"),
        ({"username": "alice", "password": PASSWORD, "device_id": ""}, "device_id"),
        ({"username": "alice", "password": PASSWORD, "device_id": "a b/c"}, "device_id"),
        ({"username": "a" * 129, "password": PASSWORD}, "username"),
        ({"username": "alice", "password": "p" * 1025}, "password"),
        ({"username": "alice", "password": PASSWORD, "device_name": "d" * 101}, "device_name"),
        ({"username": "alice", "password": PASSWORD, "device_id": "i" * 129}, "device_id"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    resp = await api.post("/login", json=body)
    found = await problem(resp, 422, "validation_error")
    assert [e["field"] for e in found["errors"]] == [field]
    assert field in found["detail"]


@pytest.mark.parametrize("data", [b"[]", b'"alice"', b"3", b"null"])
async def test_a_body_that_is_not_an_object_is_422(api: TestClient, data: bytes) -> None:
    found = await problem(await post_raw(api, data, "application/json"), 422, "validation_error")
    assert found["errors"][0]["field"] == "body"


async def test_bad_form_fields_are_422_naming_the_field(api: TestClient) -> None:
    resp = await api.post("/login", data={"username": "alice"})
    found = await problem(resp, 422, "validation_error")
    assert found["errors"][0]["field"] == "password"


async def test_unknown_fields_are_ignored(api: TestClient) -> None:
    resp = await api.post(
        "/login", json={"username": "alice", "password": PASSWORD, "admin": True, "x": [1]}
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"username=\xff\xfe&password=x", "application/x-www-form-urlencoded"),
        (b"username=alice", "multipart/form-data"),
        (b"--zz\r\nnot a header\r\n\r\n", "multipart/form-data; boundary=zz"),
    ],
)
async def test_malformed_forms_are_400(api: TestClient, data: bytes, content_type: str) -> None:
    await problem(await post_raw(api, data, content_type), 400, "malformed_body")


async def test_ten_megabytes_is_413(api: TestClient) -> None:
    big = io.BytesIO(b'{"username": "' + b"a" * 10_000_000 + b'"}')
    resp = await api.post("/login", data=big, headers={"Content-Type": "application/json"})
    await problem(resp, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_ten_megabytes_chunked_is_413(api: TestClient, content_type: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"a" * 100_000

    resp = await api.post("/login", data=chunks(), headers={"Content-Type": content_type})
    await problem(resp, 413, "payload_too_large")


async def test_a_body_just_under_the_limit_is_read(api: TestClient) -> None:
    body = {"username": "alice", "password": PASSWORD, "pad": "x" * 60_000}
    assert (await api.post("/login", json=body)).status == 200


async def test_unknown_path_is_404_problem(api: TestClient) -> None:
    await problem(await api.get("/no/such/thing"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/me"), ("GET", "/login"), ("POST", "/sessions"), ("PATCH", "/logout-all")],
)
async def test_wrong_method_is_405_problem_with_allow(
    api: TestClient, method: str, path: str
) -> None:
    resp = await api.request(method, path)
    await problem(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer not.a.jwt",
        "Bearer a.b",
        "Bearer ....",
        "Bearer \u00e9\u00e9.\u00e9.\u00e9",
        "Token abc",
        "bearer",
        "Basic YWxpY2U6cGFzcw==",
        "Bearer a b c",
        "Bearer " + "a" * 4000,
    ],
)
async def test_broken_authorization_headers_are_401(api: TestClient, header: str) -> None:
    resp = await api.get("/me", headers={"Authorization": header})
    await problem(resp, 401, "invalid_token")
    assert resp.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


async def test_raw_non_utf8_authorization_header_is_401(api: TestClient) -> None:
    resp = await api.get("/me", headers={"Authorization": "Bearer \xff\xfe.\xff.\xff"})
    await problem(resp, 401, "invalid_token")


async def test_an_oversized_header_is_a_4xx_not_a_5xx(api: TestClient) -> None:
    resp = await api.get("/me", headers={"Authorization": "Bearer " + "a" * 9000})
    assert 400 <= resp.status < 500


async def test_odd_path_parameters_are_404_not_5xx(api: TestClient) -> None:
    token = (await login(api))["token"]
    headers = {"Authorization": f"Bearer {token}"}
    for sid in ("%00", "..%2F..", "x" * 2000, "%E2%98%83", "}{u:bob}", "x" * 64):
        resp = await api.delete(f"/sessions/{sid}", headers=headers)
        # what can't be a session id doesn't match the route at all: plain not_found
        code = "session_not_found" if sid == "x" * 64 else "not_found"
        await problem(resp, 404, code)


@pytest.mark.parametrize(
    "path",
    ["/static/../settings.py", "/static/%2e%2e/settings.py", "/static/..%2f..%2fpyproject.toml"],
)
async def test_static_files_do_not_escape_their_folder(api: TestClient, path: str) -> None:
    resp = await api.get(path)
    assert resp.status in (403, 404)
    text = await resp.text()
    assert "JWT_SECRET" not in text
    assert "[project]" not in text


async def test_a_file_name_too_long_for_the_disk_is_not_found(api: TestClient) -> None:
    resp = await api.get("/static/" + "a" * 256 + ".js")
    await problem(resp, 404, "not_found")
    metrics = await (await api.get("/metrics")).text()
    assert "sessionwire_redis_unavailable_total 0.0" in metrics  # not taken for an outage
