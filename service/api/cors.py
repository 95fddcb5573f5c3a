"""CORS for the pages of CORS_ORIGINS: their preflights are answered here, and every answer
to them says so, problems and 401s included.

A listed origin gets itself back in `Access-Control-Allow-Origin` (never `*`); any other
origin gets no CORS header at all, so its browser refuses to let the page read the answer.
Every answer carries `Vary: Origin`, because whether it has the CORS headers depends on it:
a cache must not hand one origin's answer to another (Fetch standard, "CORS protocol and
HTTP caches"). Listed pages may send the browser's session cookie (`credentials:
"include"`), so their answers say `Access-Control-Allow-Credentials: true`, which browsers
accept only with the exact origin, never `*`. That serves front ends on another origin of
the same site; SameSite=Lax keeps the cookie from third-party sites anyway. What a listed
page may do with the cookie is still judged per request (service/api/csrf.py). The module
file of the client library (/sdk/sessionwire.js) gets these headers too: a page imports an
ES module from another origin only if its answer allows it.

Own middleware rather than aiohttp-cors: that library is configured route by route, and it
sends no `Vary: Origin` (aio-libs/aiohttp-cors#351, open).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type"
# What a page may read beyond the simple headers: when to retry, and why a token failed.
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"
MAX_AGE = "600"  # seconds a browser may reuse a preflight; Chromium caps it at 7200


def cors_middleware(origins: frozenset[str]) -> Middleware:
    """Outermost middleware, so the problem middleware's answers are labelled too."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        allowed = origin if origin in origins else None
        if allowed and _is_preflight(request):
            return web.Response(status=204, headers=_preflight_headers(allowed))
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # what the problem middleware lets by (redirects)
            _label(exc.headers, allowed)
            raise
        _label(response.headers, allowed)
        return response

    return cors


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOW_METHODS,
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOW_HEADERS,
        hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
        hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE,
        hdrs.VARY: hdrs.ORIGIN,
    }


def _label(headers: CIMultiDict[str], origin: str | None) -> None:
    vary = headers.get(hdrs.VARY)
    headers[hdrs.VARY] = f"{vary}, {hdrs.ORIGIN}" if vary else hdrs.ORIGIN
    if origin:
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS
