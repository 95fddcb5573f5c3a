"""Forward auth: reverse proxies ask whether a request's bearer token is a live session.

nginx `auth_request` sends a GET (its subrequest copies the client's method unless the
config sets `proxy_method GET`, as docs/nginx does); Caddy's `forward_auth` always sends a
GET; Traefik's `forwardAuth` sends a GET, or with `preserveRequestMethod` the client's own
method. So the methods of an API call are answered alike (HEAD has no body anyway); TRACE
is not a request a product's API serves, and gets 405 (CONNECT never reaches a route: 404).
"""

from __future__ import annotations

from aiohttp import web

from service.api.appkeys import USERS
from service.api.auth import caller_of

routes = web.RouteTableDef()
VERIFY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def verify(request: web.Request) -> web.Response:
    """200 with who the caller is, in headers the proxy passes on; else /me's very 401."""
    # One Redis read: a revoked token fails at once. A browser's cookie is judged by the
    # method of the request the proxy is asking about (nginx's subrequest is a GET).
    caller = await caller_of(request, method=_original_method(request))
    headers = {
        "X-Auth-Request-User": caller.username,
        "X-Auth-Request-Session": caller.session.session_id,
        "Cache-Control": "no-store",  # a cached yes would outlive a revocation
    }
    user = request.app[USERS].get(caller.username)
    # The users file is the operator's, yet a line break in a header would be a 500.
    if user and user.email and user.email.isprintable():
        headers["X-Auth-Request-Email"] = user.email
    return web.Response(status=200, headers=headers)


def _original_method(request: web.Request) -> str:
    """The method of the request being verified: nginx passes it as X-Original-Method
    (docs/nginx), Traefik as X-Forwarded-Method; Caddy's and Traefik's own method is it."""
    for header in ("X-Original-Method", "X-Forwarded-Method"):
        if method := request.headers.get(header, "").strip().upper():
            return method
    return request.method


for _method in VERIFY_METHODS:
    if _method != "HEAD":  # aiohttp answers HEAD from the GET route
        routes.route(_method, "/auth/verify")(verify)
