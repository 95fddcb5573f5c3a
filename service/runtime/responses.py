"""The shapes of answers, shared by the API and the worker's gateway."""

from __future__ import annotations

from aiohttp import web

from service.wire.schemas import FieldError, Problem, Revocation, json_encoder

PROBLEM_TYPE = "application/problem+json"
INVALID_TOKEN = 'Bearer error="invalid_token"'


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json_encoder.encode(body), status=status, content_type="application/json"
    )


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
    revoked: Revocation | None = None,
    retry_after: int | None = None,
) -> web.Response:
    body = Problem(
        type=f"https://sessionwire.dev/problems/{code}",
        title=title,
        status=status,
        detail=detail,
        code=code,
        errors=errors,
        revoked=revoked,
        retry_after=retry_after,
    )
    return web.Response(
        status=status, body=json_encoder.encode(body), content_type=PROBLEM_TYPE, headers=headers
    )


def unauthorized(code: str, detail: str, revoked: Revocation | None = None) -> web.Response:
    """401 with its challenge. RFC 6750 (3.1): a request that sent no credentials at all
    gets no error code in the challenge; the others `invalid_token` (the code is in the
    body)."""
    challenge = 'Bearer realm="sessionwire"' if code == "missing_token" else INVALID_TOKEN
    headers = {"WWW-Authenticate": challenge}
    return problem_response(401, code, "Unauthorized", detail, headers=headers, revoked=revoked)


def redis_unavailable(
    detail: str = "The session store is unavailable; try again shortly.",
) -> web.Response:
    return problem_response(
        503, "redis_unavailable", "Service unavailable", detail, headers={"Retry-After": "1"}
    )


def busy(detail: str, retry_after: int = 1) -> web.Response:
    """503 for work the server sheds to stay responsive; the client retries shortly."""
    return problem_response(
        503,
        "busy",
        "Busy",
        detail,
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )
