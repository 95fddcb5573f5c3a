"""JWTs that carry only who (`sub`) and which session (`sid`): HS256, pinned."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jwt

from service.clock import SYSTEM_CLOCK, Clock
from service.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "sid", "iat", "exp", "iss"]
# Time is checked against the injected clock, not PyJWT's (see TokenCodec.verify).
ISSUED_AT_LEEWAY_MS = 5_000  # clocks of the processes that issue and check may differ a little
DECODE_OPTIONS = {"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False}
INVALID_DETAIL = "The token is not valid."


class TokenError(Exception):
    """The token can't be used; `code` is the contract's 401 code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Claims:
    username: str
    session_id: str
    issued_at: int
    expires_at: int


# Verifying a signature costs ~50 us of pure Python in PyJWT; devices repeat their token
# on every request, so tokens already verified are remembered (expiry is still checked
# on every use, and the session itself is always checked in Redis).
VERIFIED_CACHE_SIZE = 8192


class TokenCodec:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._decode_cached = lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._decode)

    def issue(self, username: str, session_id: str, issued_ms: int, expires_ms: int) -> str:
        claims = {
            "sub": username,
            "sid": session_id,
            "iat": issued_ms // 1000,
            "exp": expires_ms // 1000,
            "iss": self._issuer,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        """Decode and check signature, algorithm, issuer and expiry; raise TokenError."""
        if not token.isascii():  # a JWT is ASCII; other bytes would break the encoders
            raise TokenError("invalid_token", INVALID_DETAIL)
        claims = self._decode_cached(token)
        now = self.clock.now_ms()
        if claims.expires_at * 1000 <= now:
            raise TokenError("token_expired", "The token has expired; sign in again.")
        if claims.issued_at * 1000 > now + ISSUED_AT_LEEWAY_MS:
            raise TokenError("invalid_token", "The token is not valid yet.")
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options=DECODE_OPTIONS,  # type: ignore[arg-type]
            )
        except jwt.InvalidTokenError:  # PyJWT's own words would tell a forger what failed
            raise TokenError("invalid_token", INVALID_DETAIL) from None
        sub, sid, iat, exp = claims["sub"], claims["sid"], claims["iat"], claims["exp"]
        if not isinstance(sub, str) or not isinstance(sid, str) or not sub or not sid:
            raise TokenError("invalid_token", "The token's sub and sid must be strings.")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in (iat, exp)):
            raise TokenError("invalid_token", "The token's iat and exp must be whole numbers.")
        return Claims(username=sub, session_id=sid, issued_at=iat, expires_at=exp)
