"""JWTs that carry only who (`sub`) and which session (`sid`): HS256, pinned."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from functools import lru_cache

import jwt
import msgspec
from jwt.algorithms import HMACAlgorithm

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


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly the claims we issue, with their types: anything else is PyJWT's to judge."""

    sub: str
    sid: str
    iat: int
    exp: int
    iss: str


_payload_decoder = msgspec.json.Decoder(_Payload)


class FastHS256:
    """Verifies the tokens we issue, as PyJWT would, for a fraction of its cost.

    PyJWT 2.15 checks every base64 character in Python and prepares the key on each
    decode (~36 µs a token here); a reconnect storm pays it once per device. This path
    knows one shape only: the exact header we issue, canonical unpadded base64url, a
    signature that matches, and exactly our five claims with their types. For any other
    token it returns None and PyJWT decides, so it can only agree with PyJWT
    (tests/test_token_fastpath.py checks a corpus of tokens against it).
    """

    def __init__(self, secret: str) -> None:
        key = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)  # refuses what PyJWT does
        self._mac = hmac.new(key, digestmod="sha256")
        self._header = ISSUED_HEADER

    def decode(self, token: str) -> _Payload | None:
        """The payload of a token in exactly our shape whose signature matches; else None."""
        header, _, rest = token.partition(".")
        if header != self._header:
            return None
        body, _, signature = rest.partition(".")
        mac = self._mac.copy()
        mac.update(f"{header}.{body}".encode())
        expected = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")
        if not hmac.compare_digest(expected, signature.encode()):
            return None  # forged, more segments, or a variant encoding PyJWT may accept
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode():
                return None  # not canonical: PyJWT's own checks decide
            return _payload_decoder.decode(raw)
        except (binascii.Error, ValueError, msgspec.DecodeError):
            return None


class TokenCodec:
    def __init__(
        self,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        *,
        fast_path: bool = True,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        """`fast_path=False` leaves every decode to PyJWT (the differential test's reference);
        `cache_size` tokens already verified are remembered (0: none)."""
        self.clock = clock
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._fast = FastHS256(settings.jwt_secret) if fast_path else None
        self._decode_cached = lru_cache(maxsize=cache_size)(self._decode)

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
        fast = self._fast.decode(token) if self._fast else None
        if fast is not None and fast.sub and fast.sid and fast.iss == self._issuer:
            return Claims(fast.sub, fast.sid, fast.iat, fast.exp)
        return self._decode_pyjwt(token)

    def _decode_pyjwt(self, token: str) -> Claims:
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


# The header of every token we issue, as PyJWT writes it: the only one the fast path knows.
ISSUED_HEADER = jwt.encode({}, "k" * 32, algorithm=ALGORITHM).partition(".")[0]
