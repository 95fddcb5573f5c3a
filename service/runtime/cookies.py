"""The browser's cookies: the session's and the device's, their names and attributes.

A browser page gets its session in a cookie its script cannot read (HttpOnly), so an XSS
flaw cannot carry the token away (OWASP: no token in localStorage or sessionStorage). The
`__Host-` prefix makes the browser refuse the cookie unless it is Secure, has `Path=/` and
no `Domain`: a sibling subdomain can then neither set nor shadow it (cookie tossing).
`Secure` needs https, or localhost and 127.0.0.1, which browsers treat as secure; over plain
http on any other host (development on a LAN address) the cookie has to go without the
prefix and `Secure`, and a warning says so. Production always sets the `__Host-` cookie: it
must be served over https. A request is read with the names it would be set with, so the
unprefixed name, which any sibling host could set, is never read where `__Host-` is used.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from service.runtime.appkeys import SETTINGS
from service.settings import Settings

log = logging.getLogger(__name__)

SESSION = "sessionwire"
DEVICE = "sessionwire-device"
SECURE_PREFIX = "__Host-"
# Hosts browsers count as secure contexts over plain http (Chromium, Firefox, Safari).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A device is known for as long as its device token lives (service/users/devicetokens.py).
DEVICE_MAX_AGE = 180 * 24 * 3600
# Device tokens of the last few users who signed in on this browser, newest first; each is
# a ~250-byte JWT, so the cookie stays far below the 4 KiB browsers keep.
MAX_DEVICE_TOKENS = 4
DEVICE_TOKEN_SEPARATOR = "~"  # a cookie-safe character no JWT contains


def is_secure(request: web.Request) -> bool:
    """Whether this request's browser takes a Secure cookie from the answer."""
    settings = request.app[SETTINGS]
    if settings.app_env == "production" or request.secure:
        return True
    if _forwarded_https(request, settings):
        return True
    try:
        host = (request.url.host or "").strip("[]").lower()
    except ValueError:  # a Host header that is no host at all
        return False
    return host in LOOPBACK_HOSTS


def _forwarded_https(request: web.Request, settings: Settings) -> bool:
    """A trusted proxy (TRUSTED_PROXIES) says the browser reached it over https."""
    if not settings.trusted_proxies:
        return False
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if not any(peer in network for network in settings.trusted_proxies):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https"


def name(base: str, secure: bool) -> str:
    return SECURE_PREFIX + base if secure else base


def session_token(request: web.Request) -> str | None:
    """The session cookie's value, read under the name this request's answer would set."""
    return request.cookies.get(name(SESSION, is_secure(request))) or None


def device_tokens(request: web.Request) -> list[str]:
    """The device tokens this browser keeps (newest first), each still to be verified."""
    raw = request.cookies.get(name(DEVICE, is_secure(request)), "")
    return [token for token in raw.split(DEVICE_TOKEN_SEPARATOR) if token][:MAX_DEVICE_TOKENS]


def set_session(
    request: web.Request, response: web.StreamResponse, token: str, max_age: int
) -> None:
    """Hand the browser its session: HttpOnly, SameSite=Lax, until the session's end."""
    _set(request, response, SESSION, token, max_age, samesite="Lax")


def clear_session(request: web.Request, response: web.StreamResponse) -> None:
    # A deletion must carry the attributes the cookie was set with, or a browser keeps a
    # `__Host-` cookie: Secure and Path=/ are part of what names it.
    _set(request, response, SESSION, "", 0, samesite="Lax")


def set_device_tokens(
    request: web.Request, response: web.StreamResponse, newest: str, kept: list[str]
) -> None:
    """Keep `newest` first, then the tokens of other users of this browser (`kept`).

    Strict: only a sign-in from the API's own site ever needs it.
    """
    tokens = [newest, *kept][:MAX_DEVICE_TOKENS]
    value = DEVICE_TOKEN_SEPARATOR.join(tokens)
    _set(request, response, DEVICE, value, DEVICE_MAX_AGE, samesite="Strict")


def _set(
    request: web.Request,
    response: web.StreamResponse,
    base: str,
    value: str,
    max_age: int,
    *,
    samesite: str,
) -> None:
    secure = is_secure(request)
    if not secure and value:
        log.warning(
            "setting the %s cookie without Secure and the __Host- prefix: %s is plain http "
            "on a host browsers do not treat as secure (serve it over https)",
            base,
            request.host[:100],
        )
    response.set_cookie(
        name(base, secure),
        value,
        max_age=max(0, max_age),
        path="/",
        secure=secure,
        httponly=True,
        samesite=samesite,
    )
