"""OpenAPI 3.1, generated from the msgspec schemas the handlers use."""

from __future__ import annotations

from typing import Any

import msgspec

from service.schemas import (
    ClientConfig,
    Health,
    LoginRequest,
    LoginResponse,
    MeResponse,
    Problem,
    RevokedResponse,
    SessionsResponse,
)

REF = "#/components/schemas/{name}"
SESSION_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
BEARER = [{"bearer": []}]

# (method, path, summary, request schema, response schema, auth, error statuses)
OPERATIONS: list[tuple[str, str, str, type | None, type | None, bool, tuple[int, ...]]] = [
    (
        "post",
        "/login",
        "Sign in; creates a session",
        LoginRequest,
        LoginResponse,
        False,
        (400, 401, 408, 413, 415, 422, 429, 503),
    ),
    ("post", "/logout", "Sign out this device", None, RevokedResponse, True, (401, 503)),
    ("get", "/me", "The signed-in user and this session", None, MeResponse, True, (401, 503)),
    (
        "get",
        "/sessions",
        "Every session of the user, most recently seen first",
        None,
        SessionsResponse,
        True,
        (401, 503),
    ),
    (
        "delete",
        "/sessions/{session_id}",
        "Sign out one device",
        None,
        RevokedResponse,
        True,
        (401, 404, 503),
    ),
    (
        "post",
        "/sessions/revoke-others",
        "Sign out every other device",
        None,
        RevokedResponse,
        True,
        (401, 503),
    ),
    (
        "post",
        "/logout-all",
        "Sign out every device, this one too",
        None,
        RevokedResponse,
        True,
        (401, 503),
    ),
    ("get", "/healthz", "Liveness", None, Health, False, ()),
    ("get", "/readyz", "Readiness: Redis answers", None, Health, False, (503,)),
    ("get", "/config", "Where the page finds the WebSocket gateway", None, ClientConfig, False, ()),
]


def _content(schema: type, *, media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": {"$ref": REF.format(name=schema.__name__)}}}


def _operation(
    summary: str, request: type | None, response: type | None, auth: bool, errors: tuple[int, ...]
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if response is not None:
        op["responses"]["200"] = {"description": "OK", "content": _content(response)}
    for status in errors:
        op["responses"][str(status)] = {
            "description": "Problem",
            "content": _content(Problem, media="application/problem+json"),
        }
    if request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {
                **_content(request),
                **_content(request, media="application/x-www-form-urlencoded"),
            },
        }
    if auth:
        op["security"] = BEARER
    return op


def build_openapi() -> dict[str, Any]:
    types = [op[3] for op in OPERATIONS if op[3]] + [op[4] for op in OPERATIONS if op[4]]
    _, components = msgspec.json.schema_components(
        [*dict.fromkeys(types), Problem], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, response, auth, errors in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(summary, request, response, auth, errors)
    paths["/sessions/{session_id}"]["delete"]["parameters"] = [
        {
            "name": "session_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": SESSION_ID_PATTERN},
        }
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sessionwire",
            "version": "1.0.0",
            "description": "Multi-device sign-in with instant sign-out notices.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
