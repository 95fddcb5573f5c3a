"""JWT attacks: each gets a 401 with the right code and never reaches a session."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_SECRET, login


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


def unb64json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def claims_of(token: str) -> dict[str, Any]:
    return unb64json(token.split(".")[1])


async def status_and_code(api: TestClient, token: str, scheme: str = "Bearer") -> tuple[int, str]:
    resp = await api.get("/me", headers={"Authorization": f"{scheme} {token}"})
    body = await resp.json(content_type=None)
    if resp.status == 401:
        assert resp.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    return resp.status, body.get("code", "")


@pytest.fixture
async def signed_in(api: TestClient) -> dict[str, Any]:
    """A live session of alice: its login body."""
    return await login(api)


async def test_the_genuine_token_works(api: TestClient, signed_in: dict[str, Any]) -> None:
    assert await status_and_code(api, signed_in["token"]) == (200, "")
    claims = claims_of(signed_in["token"])
    assert set(claims) == {"sub", "sid", "iat", "exp", "iss"}
    assert claims["sub"] == "alice"
    assert claims["iss"] == "sessionwire"
    header = unb64json(signed_in["token"].split(".")[0])
    assert header["alg"] == "HS256"


async def test_alg_none_is_refused(api: TestClient, signed_in: dict[str, Any]) -> None:
    claims = claims_of(signed_in["token"])
    for alg in ("none", "None", "NONE"):
        token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims)}."
        assert await status_and_code(api, token) == (401, "invalid_token")
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert await status_and_code(api, unsigned) == (401, "invalid_token")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
async def test_other_hmac_algorithms_are_refused(
    api: TestClient, signed_in: dict[str, Any], alg: str
) -> None:
    with warnings.catch_warnings():  # the test secret is short for HS512: beside the point
        warnings.simplefilter("ignore")
        token = jwt.encode(claims_of(signed_in["token"]), TEST_SECRET, algorithm=alg)
    assert await status_and_code(api, token) == (401, "invalid_token")


async def test_rsa_signed_tokens_are_refused(api: TestClient, signed_in: dict[str, Any]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims_of(signed_in["token"]), key, algorithm="RS256")
    assert await status_and_code(api, token) == (401, "invalid_token")
    # The key-confusion trick: claim RS256 but sign with HMAC over the secret.
    head = b64json({"alg": "RS256", "typ": "JWT"})
    body = signed_in["token"].split(".")[1]
    forged = f"{head}.{body}.{signed_in['token'].split('.')[2]}"
    assert await status_and_code(api, forged) == (401, "invalid_token")


async def test_wrong_key_is_refused(api: TestClient, signed_in: dict[str, Any]) -> None:
    token = jwt.encode(claims_of(signed_in["token"]), "another-secret-" + "y" * 40)
    assert await status_and_code(api, token) == (401, "invalid_token")


async def test_tampered_payload_is_refused(api: TestClient, signed_in: dict[str, Any]) -> None:
    await login(api, "bob")
    head, _, signature = signed_in["token"].split(".")
    for change in ({"sub": "bob"}, {"exp": int(time.time()) + 10**8}, {"sid": "other"}):
        payload = b64json({**claims_of(signed_in["token"]), **change})
        assert await status_and_code(api, f"{head}.{payload}.{signature}") == (
            401,
            "invalid_token",
        )
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert await status_and_code(api, f"{head}.{signed_in['token'].split('.')[1]}.{flipped}") == (
        401,
        "invalid_token",
    )


@pytest.mark.parametrize("claim", ["sub", "sid", "iat", "exp", "iss"])
async def test_each_missing_claim_is_refused(
    api: TestClient, signed_in: dict[str, Any], claim: str
) -> None:
    claims = claims_of(signed_in["token"])
    del claims[claim]
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert await status_and_code(api, token) == (401, "invalid_token")


@pytest.mark.parametrize(
    "change",
    [
        {"sub": 7},
        {"sid": ["x"]},
        {"sub": ""},
        {"sid": ""},
        {"exp": "tomorrow"},
        {"iat": "today"},
        {"iat": int(time.time()) + 3600},
    ],
)
async def test_malformed_claims_are_refused(
    api: TestClient, signed_in: dict[str, Any], change: dict[str, object]
) -> None:
    token = jwt.encode({**claims_of(signed_in["token"]), **change}, TEST_SECRET)
    assert await status_and_code(api, token) == (401, "invalid_token")


async def test_expired_token(api: TestClient, signed_in: dict[str, Any]) -> None:
    now = int(time.time())
    claims = {**claims_of(signed_in["token"]), "iat": now - 100, "exp": now - 1}
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert await status_and_code(api, token) == (401, "token_expired")


async def test_wrong_issuer_is_refused(api: TestClient, signed_in: dict[str, Any]) -> None:
    for issuer in ("someone-else", "", "Sessionwire"):
        claims = {**claims_of(signed_in["token"]), "iss": issuer}
        token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
        assert await status_and_code(api, token) == (401, "invalid_token")


async def test_only_the_bearer_scheme_is_accepted(
    api: TestClient, signed_in: dict[str, Any]
) -> None:
    for scheme in ("Basic", "Token", "JWT", "Bearer:"):
        assert await status_and_code(api, signed_in["token"], scheme) == (401, "invalid_token")


async def test_a_valid_token_for_a_session_that_never_existed(
    api: TestClient, signed_in: dict[str, Any]
) -> None:
    claims = {**claims_of(signed_in["token"]), "sid": "never-existed"}
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    resp = await api.get("/me", headers={"Authorization": f"Bearer {token}"})
    body = await resp.json(content_type=None)
    assert resp.status == 401
    assert body["code"] == "session_revoked"
    assert "revoked" not in body  # no tombstone: nothing to tell


async def test_a_session_id_belongs_to_its_user(api: TestClient) -> None:
    bob = await login(api, "bob")
    forged = {**claims_of(bob["token"]), "sub": "alice"}  # even with the real key
    token = jwt.encode(forged, TEST_SECRET, algorithm="HS256")
    assert await status_and_code(api, token) == (401, "session_revoked")


async def test_a_token_from_another_deployment_is_refused(
    make_api: Any, signed_in: dict[str, Any]
) -> None:
    other = await make_api(jwt_secret="z" * 40, jwt_issuer="elsewhere")
    assert await status_and_code(other, signed_in["token"]) == (401, "invalid_token")
