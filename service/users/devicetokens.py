"""Device tokens, OWASP's "device cookies": a device that signed in before has a failure
budget of its own, so guesses from elsewhere can't lock its owner out of it.

A device token is a JWT signed with a key of its own (derived from JWT_SECRET) and with
an audience of its own, so it can never pass as a session token, nor the reverse. It names
the user and a random device id, and lives long (a device is known for months).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import jwt

from service.clock import SYSTEM_CLOCK, Clock
from service.settings import Settings

ALGORITHM = "HS256"
AUDIENCE = "sessionwire:device"
LIFETIME_S = 180 * 24 * 3600
REQUIRED_CLAIMS = ["sub", "did", "iat", "exp", "iss", "aud"]
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _derived_key(secret: str) -> str:
    return hmac.new(secret.encode(), b"sessionwire device tokens v1", hashlib.sha256).hexdigest()


class DeviceTokens:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._key = _derived_key(settings.jwt_secret)
        self._issuer = settings.jwt_issuer

    def issue(self, username: str, device_id: str | None = None) -> str:
        """A token for this device of `username` (a new device unless `device_id` is given)."""
        now = self.clock.now_ms() // 1000
        claims = {
            "sub": username,
            "did": device_id or new_device_id(),
            "iat": now,
            "exp": now + LIFETIME_S,
            "iss": self._issuer,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def device_of(self, token: str | None, username: str) -> str | None:
        """The device id of a valid, unexpired token of `username`; None for anything else."""
        claims = self._claims(token)
        return claims[1] if claims and claims[0] == username else None

    def user_of(self, token: str | None) -> str | None:
        """Whose valid, unexpired token this is; None for anything else."""
        claims = self._claims(token)
        return claims[0] if claims else None

    def _claims(self, token: str | None) -> tuple[str, str] | None:
        """(username, device id) of a valid, unexpired token."""
        if not token or not token.isascii():
            return None
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return None
        username, device, expires = claims["sub"], claims["did"], claims["exp"]
        if not isinstance(username, str) or not isinstance(device, str):
            return None
        if not DEVICE_ID.match(device):
            return None
        if not isinstance(expires, int) or expires * 1000 <= self.clock.now_ms():
            return None
        return username, device


def new_device_id() -> str:
    """A random id for a device seen for the first time (it fits DEVICE_ID)."""
    return secrets.token_urlsafe(16)
