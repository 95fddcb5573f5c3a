"""The credential a request presents: the token of its `Authorization: Bearer` header."""

from __future__ import annotations

from aiohttp import web

from service.sessions.tokens import TokenError


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header; raise TokenError otherwise."""
    if not header:
        raise TokenError("missing_token", "Send the token as 'Authorization: Bearer <token>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("invalid_token", "The Authorization scheme must be 'Bearer <token>'.")
    return token.strip()


def presented(request: web.Request) -> str:
    """The token the request presents; TokenError when it presents none, or a malformed one."""
    return bearer_token(request.headers.get("Authorization"))
