"""Who is calling: a valid token whose session is still live."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service.runtime.appkeys import STORE, TOKENS
from service.runtime.credentials import bearer_token
from service.sessions.records import StoredSession


@dataclass(frozen=True, slots=True)
class Caller:
    username: str
    session: StoredSession


async def authenticate(request: web.Request) -> Caller:
    """Verify the bearer token, then check (and touch) its session in one round trip.

    Raises TokenError or SessionGone, which the error middleware turns into a 401.
    """
    claims = request.app[TOKENS].verify(bearer_token(request.headers.get("Authorization")))
    session = await request.app[STORE].check(claims.username, claims.session_id)
    return Caller(username=claims.username, session=session)
