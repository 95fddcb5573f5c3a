"""The credential a request presents, read in one place, and how it came.

`Authorization: Bearer <jwt>` (phones, terminals, back ends) wins; else the session cookie
a browser sends by itself. How it came matters: a cookie rides along on requests another
site's page makes, so the API checks where a cookie-authenticated unsafe request comes
from (service/api/csrf.py), and the gateway wants an allowed `Origin` with it. A bearer
token is sent only by code that holds it, so it needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from service.runtime import cookies
from service.sessions.tokens import TokenError

BEARER_PROTOCOL_PREFIX = "bearer."


class Via(StrEnum):
    BEARER = "bearer"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class Credential:
    token: str  # a session JWT, or (over a socket's subprotocol) a socket ticket
    via: Via


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header; raise TokenError otherwise."""
    if not header:
        raise TokenError("missing_token", "Send the token as 'Authorization: Bearer <token>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("invalid_token", "The Authorization scheme must be 'Bearer <token>'.")
    return token.strip()


def presented(request: web.Request) -> Credential:
    """What the request presents; TokenError when it presents none, or a malformed one."""
    header = request.headers.get("Authorization")
    if header is None and (token := cookies.session_token(request)):
        return Credential(token, Via.COOKIE)
    return Credential(bearer_token(header), Via.BEARER)


def presented_on_upgrade(request: web.Request, offered: list[str]) -> Credential:
    """What a WebSocket upgrade presents: a `bearer.<token>` subprotocol (browsers can't set
    headers on a socket, and a token in a URL ends up in logs), else as `presented`."""
    for proto in offered:
        if proto.startswith(BEARER_PROTOCOL_PREFIX) and len(proto) > len(BEARER_PROTOCOL_PREFIX):
            return Credential(proto[len(BEARER_PROTOCOL_PREFIX) :], Via.BEARER)
    return presented(request)


def via_cookie(request: web.Request) -> bool:
    """Whether the request's credential is the session cookie."""
    try:
        return presented(request).via is Via.COOKIE
    except TokenError:
        return False
