"""Socket tickets: a browser's session cookie traded for one socket, once, within 30 s.

A `__Host-` cookie reaches only the API's own host, so a gateway on another host
(GATEWAY_PUBLIC_URL) never sees it. The page then asks the API for a ticket
(`POST /socket-ticket`, cookie-authenticated and CSRF-checked) and offers it as its
`bearer.` subprotocol. A ticket is random and opaque; Redis keeps it under its digest, so
the store itself holds nothing a socket could be opened with. GETDEL takes it in one
command: of two upgrades racing with one ticket, exactly one gets it. Its life is judged
by the injected clock; the key's TTL only cleans up.
"""

from __future__ import annotations

import hashlib
import secrets

import msgspec

from service.clock import SYSTEM_CLOCK, Clock
from service.engine.connect import RedisClient
from service.sessions import keys

PREFIX = "swt_"  # tells a ticket from a JWT (which starts "eyJ")
TTL_MS = 30_000


class Ticket(msgspec.Struct, array_like=True):
    username: str
    session_id: str
    expires_ms: int


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Ticket)


def is_ticket(credential: str) -> bool:
    return credential.startswith(PREFIX)


def _key(ticket: str) -> str:
    return keys.socket_ticket(hashlib.sha256(ticket.encode()).hexdigest())


class SocketTickets:
    def __init__(self, client: RedisClient, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis, self.clock = client, clock

    async def issue(self, username: str, session_id: str) -> tuple[str, int]:
        """A new ticket for this session, and when it stops opening anything (ms)."""
        ticket = PREFIX + secrets.token_urlsafe(32)
        expires = self.clock.now_ms() + TTL_MS
        value = _encoder.encode(Ticket(username, session_id, expires))
        await self.redis.set(_key(ticket), value, px=TTL_MS)
        return ticket, expires

    async def redeem(self, ticket: str) -> tuple[str, str] | None:
        """(username, session id) of a live ticket, which is gone from then on; else None."""
        if not ticket.isascii():  # tickets are ASCII; other bytes could not even be hashed
            return None
        raw = await self.redis.getdel(_key(ticket))
        if raw is None:
            return None
        try:
            found = _decoder.decode(raw)
        except msgspec.DecodeError:  # not ours: no socket for it, never a 500
            return None
        if found.expires_ms <= self.clock.now_ms():
            return None
        return found.username, found.session_id
