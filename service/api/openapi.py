"""OpenAPI 3.1, generated from the msgspec schemas the handlers use."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec

from service.api.forward_auth import VERIFY_METHODS
from service.api.page import SDK_FILES
from service.wire.names import SESSION_ID
from service.wire.schemas import (
    ACTIVITY_LIMIT_DEFAULT,
    DELIVERIES_LIMIT_DEFAULT,
    ActivityLimit,
    ActivityResponse,
    AdminLogoutAllRequest,
    AdminSessionRequest,
    ClientConfig,
    DeliveriesLimit,
    DeliveriesResponse,
    Health,
    LoginRequest,
    LoginResponse,
    MeResponse,
    Problem,
    ReplayRequest,
    ReplayResponse,
    RevokedResponse,
    SecretResponse,
    Session,
    SessionCreatedMessage,
    SessionRenameRequest,
    SessionRevokedMessage,
    SessionsResponse,
    SessionView,
    SocketTicket,
    Username,
    UserSessionsResponse,
    Webhook,
    WebhookCreated,
    WebhookCreateRequest,
    WebhookPatchRequest,
    WebhooksResponse,
)

REF = "#/components/schemas/{name}"
SESSION_ID_PATTERN = f"^{SESSION_ID}$"
# A signed-in device: a bearer token, or (browser pages) the session cookie.
BEARER = [{"bearer": []}, {"cookie": []}]
ADMIN = [{"admin": []}]
# What each error status means, where the bare word "Problem" would not say enough.
CSRF_REFUSED = (
    "`csrf_refused`: authenticated by the session cookie, but not from an allowed page "
    "(ALLOWED_ORIGINS, CORS_ORIGINS)"
)
TOO_NEW = "`session_too_new` (with `retry_after`): the fresh-session guard; or " + CSRF_REFUSED
ERROR_TEXTS = {
    401: "`missing_token`, `invalid_token`, `token_expired` or `session_revoked` (with "
    "`revoked`); a cookie that fails is cleared",
    403: CSRF_REFUSED,
}

# (method, path, summary, request schema, response schema, auth, error statuses)
Operation = tuple[str, str, str, type | None, type | None, bool, tuple[int, ...]]
OPERATIONS: list[tuple[str, str, str, type | None, type | None, bool, tuple[int, ...]]] = [
    (
        "post",
        "/login",
        "Sign in; creates a session",
        LoginRequest,
        LoginResponse,
        False,
        (400, 401, 403, 408, 413, 415, 422, 429, 503),
    ),
    ("post", "/logout", "Sign out this device", None, RevokedResponse, True, (401, 403, 503)),
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
        (401, 403, 404, 503),
    ),
    (
        "patch",
        "/sessions/{session_id}",
        "Rename one device (this one or another); its devices get sessions.changed renamed",
        SessionRenameRequest,
        SessionView,
        True,
        (400, 401, 403, 404, 408, 413, 415, 422, 503),
    ),
    (
        "post",
        "/sessions/revoke-others",
        "Sign out every other device",
        None,
        RevokedResponse,
        True,
        (401, 403, 503),
    ),
    (
        "post",
        "/logout-all",
        "Sign out every device, this one too",
        None,
        RevokedResponse,
        True,
        (401, 403, 503),
    ),
    (
        "post",
        "/socket-ticket",
        "A ticket that opens one socket once within 30 s (a gateway the cookie can't reach)",
        None,
        SocketTicket,
        True,
        (401, 403, 503),
    ),
    ("get", "/healthz", "Liveness", None, Health, False, ()),
    ("get", "/readyz", "Readiness: Redis answers", None, Health, False, (503,)),
    ("get", "/config", "Where the page finds the WebSocket gateway", None, ClientConfig, False, ()),
]


# Your product on Sessionwire: the user's activity log and forward auth (user's Bearer).
PRODUCT_OPERATIONS: list[Operation] = [
    (
        "get",
        "/activity",
        "The user's recent session events and failed sign-ins, newest first",
        None,
        ActivityResponse,
        True,
        (401, 422, 503),
    ),
    (
        "get",
        "/auth/verify",
        "Forward auth for reverse proxies: is this bearer token (or cookie) a live session?",
        None,
        None,
        True,
        (401, 403, 503),
    ),
]

# The admin API (ADMIN_TOKEN as Bearer); all of it is a 404 while ADMIN_TOKEN is unset.
ADMIN_ERRORS = (401, 404, 422, 429, 503)
ADMIN_OPERATIONS: list[Operation] = [
    (
        "post",
        "/admin/sessions",
        "Open a session for a user the product signed in itself",
        AdminSessionRequest,
        LoginResponse,
        True,
        (400, 401, 404, 408, 413, 415, 422, 429, 503),
    ),
    (
        "get",
        "/admin/users/{username}/sessions",
        "A user's sessions, most recently seen first",
        None,
        UserSessionsResponse,
        True,
        ADMIN_ERRORS,
    ),
    (
        "delete",
        "/admin/users/{username}/sessions/{session_id}",
        "Sign out one of a user's devices (reason admin)",
        None,
        RevokedResponse,
        True,
        ADMIN_ERRORS,
    ),
    (
        "patch",
        "/admin/users/{username}/sessions/{session_id}",
        "Rename one of a user's devices, as PATCH /sessions/{session_id}",
        SessionRenameRequest,
        Session,
        True,
        (400, 401, 404, 408, 413, 415, 422, 429, 503),
    ),
    (
        "post",
        "/admin/users/{username}/logout-all",
        "Sign a user out everywhere (reason admin, or password_changed)",
        AdminLogoutAllRequest,
        RevokedResponse,
        True,
        (400, 401, 404, 408, 413, 415, 422, 429, 503),
    ),
    (
        "get",
        "/admin/users/{username}/activity",
        "A user's recent session events and failed sign-ins, as GET /activity",
        None,
        ActivityResponse,
        True,
        ADMIN_ERRORS,
    ),
]

# Events out: webhook endpoints (admin API). Success statuses other than 200 are set below.
WEBHOOK_ERRORS = (400, 401, 404, 408, 413, 415, 422, 429, 503)
WEBHOOK_OPERATIONS: list[Operation] = [
    ("post", "/admin/webhooks", "Register a webhook endpoint (its secret is in this answer only)",
     WebhookCreateRequest, WebhookCreated, True, WEBHOOK_ERRORS),
    ("get", "/admin/webhooks", "Every webhook endpoint (no secrets)", None, WebhooksResponse,
     True, ADMIN_ERRORS),
    ("get", "/admin/webhooks/{webhook_id}", "A webhook endpoint, with its last delivery", None,
     Webhook, True, ADMIN_ERRORS),
    ("patch", "/admin/webhooks/{webhook_id}",
     "Change an endpoint; enabling it again resumes where it stopped", WebhookPatchRequest,
     Webhook, True, WEBHOOK_ERRORS),
    ("delete", "/admin/webhooks/{webhook_id}", "Delete an endpoint: nothing more is sent to it",
     None, None, True, ADMIN_ERRORS),
    ("post", "/admin/webhooks/{webhook_id}/rotate-secret",
     "A new secret; the old one signs too for 24 h", None, SecretResponse, True, ADMIN_ERRORS),
    ("get", "/admin/webhooks/{webhook_id}/deliveries",
     "The endpoint's recent messages, newest first, each as its last attempt left it", None,
     DeliveriesResponse, True, ADMIN_ERRORS),
    ("post", "/admin/webhooks/{webhook_id}/replay",
     "Send every retained event since a time again, with its original webhook-id",
     ReplayRequest, ReplayResponse, True, WEBHOOK_ERRORS),
]  # fmt: skip
SUCCESS_STATUS = {
    ("post", "/admin/webhooks"): "201",
    ("delete", "/admin/webhooks/{webhook_id}"): "204",
    ("post", "/admin/webhooks/{webhook_id}/replay"): "202",
}
# What a receiver gets (OpenAPI 3.1 `webhooks`), signed as Standard Webhooks says.
MESSAGES = {"session.created": SessionCreatedMessage, "session.revoked": SessionRevokedMessage}
MESSAGE_HEADERS = {
    "webhook-id": "The event's id: the same on every retry and replay (an idempotency key).",
    "webhook-timestamp": "Unix seconds of this attempt.",
    "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body>, one per secret in force.",
}

# What GET /auth/verify says in headers (its 200 has no body); the proxy passes them on.
IDENTITY_HEADERS = {
    "X-Auth-Request-User": "The username.",
    "X-Auth-Request-Email": "The user's email; absent when the users file has none.",
    "X-Auth-Request-Session": "The session id.",
}
PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def _content(schema: type, *, media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": {"$ref": REF.format(name=schema.__name__)}}}


def _operation(
    summary: str,
    request: type | None,
    response: type | None,
    security: list[dict[str, list[str]]] | None,
    errors: tuple[int, ...],
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if response is not None:
        op["responses"]["200"] = {"description": "OK", "content": _content(response)}
    for status in errors:
        op["responses"][str(status)] = {
            "description": ERROR_TEXTS.get(status, "Problem") if security else "Problem",
            "content": _content(Problem, media="application/problem+json"),
        }
    if request is not None:
        content = _content(request)
        if request is LoginRequest:  # the one body that may also be a form
            content.update(_content(request, media="application/x-www-form-urlencoded"))
        op["requestBody"] = {"required": True, "content": content}
    if security:
        op["security"] = security
    return op


_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "username": msgspec.json.schema(Username),  # the users file's rules
    "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},  # as the routes match
    "webhook_id": {"type": "string", "pattern": "^ep_[0-9a-f]{16}$"},
}


def _parameters(path: str) -> list[dict[str, Any]]:
    """The path's `{name}` parameters, each with the rules its route matches."""
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PATH_SCHEMAS.get(name, {"type": "string"}),
        }
        for name in PATH_PARAMETER.findall(path)
    ]


def _limit_parameter() -> dict[str, Any]:
    schema = {**msgspec.json.schema(ActivityLimit), "default": ACTIVITY_LIMIT_DEFAULT}
    return {"name": "limit", "in": "query", "required": False, "schema": schema}


def _product_details(paths: dict[str, dict[str, Any]]) -> None:
    """What the table of operations cannot say: parameters, optional bodies, headers."""
    for path, operations in paths.items():
        for op in operations.values():
            if parameters := _parameters(path):
                op["parameters"] = parameters
    for path in ("/activity", "/admin/users/{username}/activity"):
        if path in paths:
            op = paths[path]["get"]
            op["parameters"] = [*op.get("parameters", []), _limit_parameter()]
    if deliveries := paths.get("/admin/webhooks/{webhook_id}/deliveries"):
        schema = {**msgspec.json.schema(DeliveriesLimit), "default": DELIVERIES_LIMIT_DEFAULT}
        limit = {"name": "limit", "in": "query", "required": False, "schema": schema}
        deliveries["get"]["parameters"] = [*deliveries["get"].get("parameters", []), limit]
    for (method, path), status in SUCCESS_STATUS.items():
        if op := paths.get(path, {}).get(method):
            responses = op["responses"]
            found = responses.pop("200", {"description": "No content"})
            op["responses"] = {status: found, **responses}
    if logout_all := paths.get("/admin/users/{username}/logout-all"):
        logout_all["post"]["requestBody"]["required"] = False
    verify = paths["/auth/verify"]["get"]
    verify["description"] = (
        "For nginx auth_request, Traefik forwardAuth and Caddy forward_auth. The methods of an "
        "API call are answered alike (Traefik's preserveRequestMethod sends the client's own)."
    )
    identity = {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in IDENTITY_HEADERS.items()
    }
    verify["responses"] = {
        "200": {"description": "A live session; who it is, in headers", "headers": identity},
        **verify["responses"],
    }
    for method in VERIFY_METHODS:
        if method != "GET":
            paths["/auth/verify"][method.lower()] = {**verify, "summary": "As GET /auth/verify"}
    _browser_details(paths)


def _browser_details(paths: dict[str, dict[str, Any]]) -> None:
    """Cookie mode and the fresh-session guard, which the table cannot say."""
    login = paths["/login"]["post"]
    login["description"] = (
        "A browser page (Sec-Fetch-Mode sent, or `cookie: true`; AUTH_COOKIE) gets the "
        "session in the HttpOnly cookie `__Host-sessionwire` and its device token in "
        "`__Host-sessionwire-device`: the answer then has no `token` or `device_token`. "
        "Such a sign-in must come from an allowed page (login CSRF)."
    )
    login["responses"]["200"]["headers"] = {
        "Set-Cookie": {
            "description": "In cookie mode: `__Host-sessionwire` (Secure; HttpOnly; Path=/; "
            "SameSite=Lax) and `__Host-sessionwire-device` (SameSite=Strict, 180 days)",
            "schema": {"type": "string"},
        }
    }
    login["responses"]["403"]["description"] = CSRF_REFUSED
    for method, path in (
        ("delete", "/sessions/{session_id}"),
        ("post", "/sessions/revoke-others"),
        ("post", "/logout-all"),
    ):
        paths[path][method]["responses"]["403"]["description"] = TOO_NEW
    for name, media in SDK_FILES.items():
        paths[f"/sdk/{name}"] = {
            "get": {
                "summary": "The browser client library"
                + (" (ES module)" if name.endswith(".js") else " (TypeScript types)"),
                "responses": {
                    "200": {
                        "description": "CORS-readable by CORS_ORIGINS pages",
                        "content": {media: {"schema": {"type": "string"}}},
                    }
                },
            }
        }


def build_openapi(*, admin: bool) -> dict[str, Any]:
    """The document of what this server serves: the admin API only when it is on."""
    user_ops = OPERATIONS + PRODUCT_OPERATIONS
    every = [(op, BEARER if op[5] else None) for op in user_ops]
    if admin:
        every += [(op, ADMIN) for op in ADMIN_OPERATIONS + WEBHOOK_OPERATIONS]
    types = [op[3] for op, _ in every if op[3]] + [op[4] for op, _ in every if op[4]]
    messages = list(MESSAGES.values()) if admin else []
    _, components = msgspec.json.schema_components(
        [*dict.fromkeys(types), *messages, Problem], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for (method, path, summary, request, response, _, errors), security in every:
        paths.setdefault(path, {})[method] = _operation(
            summary, request, response, security, errors
        )
    _product_details(paths)
    schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "cookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": "__Host-sessionwire",
            "description": "Browser pages: set by /login, HttpOnly. Unsafe methods must come "
            "from an allowed page (Origin, else Sec-Fetch-Site), or get 403 `csrf_refused`. "
            "Over plain http on a host other than localhost its name is `sessionwire`.",
        },
    }
    if admin:
        schemes["admin"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "ADMIN_TOKEN, for the product's back end",
        }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Sessionwire",
            "version": _version(),
            "description": "Multi-device sign-in with instant sign-out notices.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": schemes,
        },
    }
    if admin:
        document["webhooks"] = _webhooks()
    return document


def _webhooks() -> dict[str, Any]:
    """The messages a registered endpoint receives: a POST per event."""
    headers = [
        {"name": name, "in": "header", "required": True, "description": text,
         "schema": {"type": "string"}}
        for name, text in MESSAGE_HEADERS.items()
    ]  # fmt: skip
    return {
        event: {
            "post": {
                "summary": f"A {event} event (Standard Webhooks)",
                "parameters": headers,
                "requestBody": {"required": True, "content": _content(message)},
                "responses": {
                    "2XX": {"description": "Delivered"},
                    "410": {"description": "Gone: the endpoint is disabled"},
                },
            }
        }
        for event, message in MESSAGES.items()
    }


def _version() -> str:
    """The installed package's version (pyproject.toml); a checkout that was never
    installed has none to give."""
    try:
        return version("sessionwire")
    except PackageNotFoundError:
        return "0+unknown"
