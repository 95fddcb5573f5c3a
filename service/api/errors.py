"""Domain errors become RFC 9457 problem+json in one middleware, never a traceback."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.appkeys import METRICS
from service.api.browsers import forget_session
from service.api.problems import ApiError
from service.engine.errors import REDIS_DOWN, broke_in_the_client
from service.events.endpoints import WebhookNotFound
from service.runtime.limits import RequestTimedOut
from service.runtime.responses import busy, problem_response, redis_unavailable, unauthorized
from service.sessions.store import SessionGone, SessionTooNew
from service.sessions.tokens import TokenError
from service.users.limiter import RateLimited, SignInBusy
from service.users.passwords import HashingBusy

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    400: "bad_request",
}


def _to_problem(exc: Exception) -> web.Response | None:
    """The problem+json answer for a domain error; None for anything unexpected."""
    match exc:
        case ApiError():
            return problem_response(
                exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, errors=exc.errors
            )
        case TokenError():
            return unauthorized(exc.code, exc.detail)
        case SessionGone(tombstone=tomb):
            detail = "This session has ended" + (f" ({tomb.reason})." if tomb else ".")
            return unauthorized("session_revoked", detail, tomb.to_wire() if tomb else None)
        case SessionTooNew(retry_after=wait):
            return problem_response(
                403,
                "session_too_new",
                "Session too new",
                "This device signed in too recently to sign out the account's older devices; "
                f"it may in {wait} s.",
                headers={"Retry-After": str(wait)},
                retry_after=wait,
            )
        case RateLimited():
            return problem_response(
                429,
                "rate_limited",
                "Too many failed sign-ins",
                f"Too many failed sign-in attempts; try again in {exc.retry_after} s.",
                headers={"Retry-After": str(exc.retry_after)},
                retry_after=exc.retry_after,
            )
        case SignInBusy():
            return busy("Sign-ins for this account are being checked; retry in a second.")
        case RequestTimedOut():
            response = problem_response(
                408, "request_timeout", "Request timeout", "The body took too long to arrive."
            )
            response.force_close()  # the rest of a slow body is not waited for
            return response
        case WebhookNotFound():
            return problem_response(
                404, "webhook_not_found", "Webhook not found", "No webhook endpoint has this id."
            )
        case HashingBusy(retry_after=seconds):
            return busy(
                f"Too many sign-ins are waiting to be checked; retry in {seconds} s.", seconds
            )
        case web.HTTPException():
            code = _HTTP_CODES.get(exc.status, "http_error")
            detail = (
                exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
            )
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return problem_response(exc.status, code, exc.reason, detail, headers=headers)
    return None


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to problem+json, count the request, and time it."""
    metrics = request.app[METRICS]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as exc:
        if isinstance(exc, REDIS_DOWN) or broke_in_the_client(exc):
            log.warning("Redis unavailable during %s %s: %r", request.method, request.path, exc)
            metrics.redis_errors.inc()
            response = redis_unavailable()
        elif isinstance(exc, web.HTTPException) and exc.status < 400:
            raise  # a redirect is an answer, not a failure
        elif isinstance(exc, ConnectionResetError):  # the client left mid-body: no error
            log.debug("%s %s: the client went away: %s", request.method, request.path, exc)
            response = problem_response(
                400, "bad_request", "Bad Request", "The connection ended before the body did."
            )
        else:
            response = _to_problem(exc) or _unexpected(request)
            if isinstance(exc, TokenError | SessionGone):  # a dead cookie is of no more use
                forget_session(request, response)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics.observe_request(route, request.method, response.status, time.perf_counter() - started)
    return response


def _unexpected(request: web.Request) -> web.Response:
    """A 500 without internals; the traceback goes to the log (called while handling)."""
    log.exception("unhandled error in %s %s", request.method, request.path)
    return problem_response(
        500, "internal_error", "Internal error", "Something went wrong on our side."
    )
