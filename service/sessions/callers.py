"""Who is calling: a valid token whose session is still live."""

from __future__ import annotations

from dataclasses import dataclass

from service.sessions.records import StoredSession
from service.sessions.store import SessionStore
from service.sessions.tokens import TokenCodec


@dataclass(frozen=True, slots=True)
class Caller:
    username: str
    session: StoredSession


class Authenticator:
    def __init__(self, tokens: TokenCodec, store: SessionStore) -> None:
        self.tokens, self.store = tokens, store

    async def check(self, token: str) -> Caller:
        """Verify the token, then check (and touch) its session in one round trip.

        Raises TokenError or SessionGone, which the edge turns into a 401.
        """
        claims = self.tokens.verify(token)
        session = await self.store.check(claims.username, claims.session_id)
        return Caller(username=claims.username, session=session)
