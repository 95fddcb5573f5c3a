"""The keys that sign SETs (RS256), and the JWKS receivers verify them with.

SSF_SIGNING_KEY names a PEM file of an RSA private key of 2048 bits or more; during a
rotation SSF_PREVIOUS_SIGNING_KEY names the one it replaces, still published in the JWKS
(never used to sign) so a receiver that cached the old set keeps verifying. Each key's
`kid` is its RFC 7638 thumbprint, so the same key has the same kid on every process. In
development the key is generated once and kept next to the development JWT secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from service.settings import ConfigError, Settings

MIN_BITS = 2048
ALGORITHM = "RS256"
SET_TYPE = "secevent+jwt"


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


class Signer:
    """Signs SETs with the current key; publishes it and the previous one."""

    def __init__(self, current: SigningKey, previous: SigningKey | None = None) -> None:
        self.current, self.previous = current, previous

    def jwks(self) -> dict[str, Any]:
        keys = [self.current] + ([self.previous] if self.previous else [])
        return {"keys": [k.public_jwk for k in keys]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims,
            self.current.private,
            algorithm=ALGORITHM,
            headers={"typ": SET_TYPE, "kid": self.current.kid},
        )


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 of the JWK's required members (e, kty, n), sorted, no spaces."""
    jwk = json.loads(RSAAlgorithm.to_jwk(public))
    members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(members.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_key(pem: bytes, name: str) -> SigningKey:
    """A signing key from a PEM; a ConfigError for anything but RSA of MIN_BITS or more."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigError(f"{name}: an RSA key is required (RS256)")
    if private.key_size < MIN_BITS:
        raise ConfigError(f"{name}: {private.key_size}-bit RSA; {MIN_BITS} bits or more needed")
    return SigningKey(private, thumbprint(private.public_key()))


def _read(path: str, name: str) -> SigningKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    return load_key(pem, name)


def new_pem(bits: int = MIN_BITS) -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _dev_key(path: Path) -> None:
    """Create the development key at `path` unless it exists (atomic, as the JWT secret)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False) as tmp:
        tmp.write(new_pem())
    try:
        os.chmod(tmp.name, 0o600)
        os.link(tmp.name, path)  # a racing process keeps whichever came first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp.name)


def load_signer(settings: Settings) -> Signer | None:
    """The signer of these settings; None when SSF is off (production without a key)."""
    if not settings.ssf_enabled:
        return None
    path = settings.ssf_signing_key
    if not path:
        _dev_key(Path(settings.ssf_dev_key_file))
        path = settings.ssf_dev_key_file
    current = _read(path, "SSF_SIGNING_KEY")
    previous = None
    if settings.ssf_previous_signing_key:
        previous = _read(settings.ssf_previous_signing_key, "SSF_PREVIOUS_SIGNING_KEY")
    return Signer(current, previous)
