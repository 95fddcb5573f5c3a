"""Cross-site request forgery: a cookie-authenticated change must come from an allowed page.

A browser sends the session cookie with whatever request a page makes, another site's page
included: SameSite=Lax keeps it off cross-site POSTs, but "site" ignores ports and
subdomains, so `http://127.0.0.1:9000` may post to `http://127.0.0.1:8000` with it. So an
unsafe request (POST, PUT, PATCH, DELETE) authenticated by the cookie, and a sign-in that
would set it (login CSRF: signing the victim's browser in as the attacker), must come from
an allowed origin: the API's own pages (ALLOWED_ORIGINS, by default the API's own
addresses) or CORS_ORIGINS. It is judged by `Origin`, which browsers send on every such
request and page script cannot change; without one, by `Sec-Fetch-Site: same-origin`
(Fetch Metadata, also out of a script's reach); anything else is refused. A bearer token
is not ambient (only code holding it sends it), so bearer requests are not judged here.
"""

from __future__ import annotations

import logging
from functools import cache

from aiohttp import hdrs, web

from service.api.problems import ApiError
from service.runtime.appkeys import SETTINGS
from service.settings import Settings

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@cache
def allowed_origins(settings: Settings) -> frozenset[str]:
    """The pages that may act with the cookie: the API's own, and those of CORS_ORIGINS."""
    return settings.origins | frozenset(settings.cors_origins)


def check(request: web.Request, *, signing_in: bool = False) -> None:
    """Return if the request comes from an allowed page; raise 403 `csrf_refused` if not.

    `signing_in`: the request is a sign-in that would set the cookie (login CSRF).
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None:
        if origin in allowed_origins(request.app[SETTINGS]):
            return
        refused = f"from origin {origin[:100]!r}"
    elif request.headers.get("Sec-Fetch-Site") == "same-origin":
        return
    else:
        refused = f"with no Origin (Sec-Fetch-Site {request.headers.get('Sec-Fetch-Site')!r})"
    log.info("refused %s %s %s: not an allowed page", request.method, request.path[:100], refused)
    what = (
        "This sign-in would set the browser's session cookie"
        if signing_in
        else "This request uses the browser's session cookie"
    )
    raise ApiError(
        403,
        "csrf_refused",
        "Forbidden",
        f"{what} but does not come from an allowed page (ALLOWED_ORIGINS, CORS_ORIGINS).",
    )
