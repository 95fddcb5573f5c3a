"""The SSF transmitter's part of the OpenAPI document (docs/SSF.md).

Its bodies are the specifications' (SSF 1.0, RFC 6749, RFC 8936), written here as JSON
Schema rather than msgspec types: the handlers read them member by member to answer 400
as the specification says, where a schema would answer 422.
"""

from __future__ import annotations

from typing import Any

OBJECT = {"type": "object"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
STREAM_ID = {"name": "stream_id", "in": "query", "required": True, "schema": {"type": "string"}}
BEARER = [{"ssf": []}]
TEXTS = {
    400: "`invalid_request`, `malformed_body` or `invalid_subject`: the body is not what the "
    "specification says",
    401: "`invalid_token`: no bearer token from /ssf/token, or one that expired",
    403: "`insufficient_scope`",
    404: "`stream_not_found`: no such stream, or another receiver's",
    409: "`stream_exists` (one stream per receiver), or `stream_disabled`",
    413: "`payload_too_large`",
    415: "`unsupported_media_type`",
    429: "`rate_limited`",
    503: "`redis_unavailable`",
}
ERRORS = (400, 401, 403, 404, 413, 415, 503)
RECEIVER_BODY = {
    "type": "object",
    "required": ["name", "audience"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "audience": {"type": "string", "minLength": 1, "maxLength": 2048},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    ok: str,
    *,
    body: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    errors: tuple[int, ...] = ERRORS,
    query: bool = False,
    security: list[dict[str, list[str]]] | None = BEARER,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "OK"}}
    if answer is not None:
        responses[ok]["content"] = _json(answer)
    for status in errors:
        responses[str(status)] = {"description": TEXTS.get(status, "Problem"), "content": PROBLEM}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": bool(body.get("required")), "content": _json(body)}
    if query:
        op["parameters"] = [STREAM_ID]
    if security:
        op["security"] = security
    return op


def _stream_body(*required: str) -> dict[str, Any]:
    return {"type": "object", "required": list(required)}


def ssf_paths(*, admin: bool) -> dict[str, dict[str, Any]]:
    token_errors = {
        "description": "RFC 6749 §5.2: `invalid_client` (401, `WWW-Authenticate: Basic`), "
        "`invalid_request`, `unsupported_grant_type`, `invalid_scope` (400), `slow_down` (429)",
        "content": _json({"type": "object", "required": ["error"]}),
    }
    token = {
        "summary": "A bearer token for a receiver (OAuth 2.0 client credentials, "
        "client_secret_basic; 15 minutes; scopes ssf.manage ssf.read)",
        "security": [{"ssf_client": []}],
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": OBJECT}},
        },
        "responses": {
            "200": {"description": "OK", "content": _json(OBJECT)},
            "400": token_errors,
            "401": token_errors,
            "429": token_errors,
            "413": {"description": TEXTS[413], "content": PROBLEM},
            "503": {"description": TEXTS[503], "content": PROBLEM},
        },
    }
    paths: dict[str, dict[str, Any]] = {
        "/.well-known/ssf-configuration": {
            "get": _op("The transmitter's configuration (SSF 1.0)", "200", answer=OBJECT,
                       errors=(), security=None)
        },
        "/ssf/jwks.json": {
            "get": _op("The keys that sign SETs (RS256; the previous one during a rotation)",
                       "200", answer=OBJECT, errors=(), security=None)
        },
        "/ssf/token": {"post": token},
        "/ssf/stream": {
            "post": _op("Create the receiver's stream", "201", body=OBJECT, answer=OBJECT,
                        errors=(*ERRORS, 409)),
            "get": {**_op("The receiver's stream (with stream_id), or a list of its streams",
                          "200", answer={}), "parameters": [{**STREAM_ID, "required": False}]},
            "patch": _op("Update the stream's members given", "200",
                         body=_stream_body("stream_id"), answer=OBJECT),
            "put": _op("Replace the stream's receiver-supplied members", "200",
                       body=_stream_body("stream_id"), answer=OBJECT),
            "delete": _op("Delete the stream", "204", query=True),
        },
        "/ssf/status": {
            "get": _op("The stream's status", "200", answer=OBJECT, query=True),
            "post": _op("Enable, pause (events held) or disable (events dropped) the stream",
                        "200", body=_stream_body("stream_id", "status"), answer=OBJECT),
        },
        "/ssf/subjects:add": {
            "post": _op("Deliver a user's events again", "200",
                        body=_stream_body("stream_id", "subject")),
        },
        "/ssf/subjects:remove": {
            "post": _op("Stop delivering a user's events", "204",
                        body=_stream_body("stream_id", "subject")),
        },
        "/ssf/verify": {
            "post": _op("Ask for a verification SET (204, then the SET)", "204",
                        body=_stream_body("stream_id"), errors=(*ERRORS, 409)),
        },
        "/ssf/poll/{stream_id}": {
            "post": {
                **_op("Poll for SETs (RFC 8936): acknowledge, then take up to maxEvents",
                      "200", body=OBJECT, answer=OBJECT),
                "parameters": [{**STREAM_ID, "in": "path"}],
            }
        },
    }  # fmt: skip
    if admin:
        paths.update(_admin_paths())
    return paths


def _admin_paths() -> dict[str, dict[str, Any]]:
    admin = [{"admin": []}]
    client = {"name": "client_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^rc_[0-9a-f]{16}$"}}  # fmt: skip
    errors = (401, 404, 429, 503)
    return {
        "/admin/ssf/receivers": {
            "post": _op("Register an SSF receiver (its client_secret is in this answer only)",
                        "201", body=RECEIVER_BODY,
                        answer=OBJECT, errors=(400, 401, 408, 413, 415, 422, 429, 503),
                        security=admin),
            "get": _op("Every SSF receiver (no secrets)", "200", answer=OBJECT,
                       errors=(401, 429, 503), security=admin),
        },
        "/admin/ssf/receivers/{client_id}": {
            "get": {**_op("An SSF receiver", "200", answer=OBJECT, errors=errors,
                          security=admin), "parameters": [client]},
            "delete": {**_op("Delete a receiver, its stream and its tokens", "204",
                             errors=errors, security=admin), "parameters": [client]},
        },
    }  # fmt: skip


SECURITY_SCHEMES = {
    "ssf": {
        "type": "http",
        "scheme": "bearer",
        "description": "A receiver's token from /ssf/token",
    },
    "ssf_client": {
        "type": "http",
        "scheme": "basic",
        "description": "A receiver's client_id and client_secret (RFC 6749 §2.3.1)",
    },
}
