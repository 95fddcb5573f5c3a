"""Forward auth: reverse proxies ask whether a request's bearer token is a live session.

nginx `auth_request` sends a GET (its subrequest copies the client's method unless the
config sets `proxy_method GET`, as docs/nginx does); Caddy's `forward_auth` always sends a
GET; Traefik's `forwardAuth` sends a GET, or with `preserveRequestMethod` the client's own
method. So the methods of an API call are answered alike (HEAD has no body anyway); TRACE
is not a request a product's API serves, and gets 405 (CONNECT never reaches a route: 404).
"""

from __future__ import annotations

from aiohttp import web

from service.api.appkeys import AUTH, USERS
from service.runtime.credentials import presented

routes = web.RouteTableDef()
VERIFY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def verify(request: web.Request) -> web.Response:
    """200 with who the caller is, in headers the proxy passes on; else /me's very 401."""
    caller = await request.app[AUTH].check(
        presented(request)
    )  # one Redis read: a revoked token fails at once
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


for _method in VERIFY_METHODS:
    if _method != "HEAD":  # aiohttp answers HEAD from the GET route
        routes.route(_method, "/auth/verify")(verify)
