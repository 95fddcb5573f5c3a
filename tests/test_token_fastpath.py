"""The HS256 fast path agrees with PyJWT on every token: valid, expired, forged,
re-encoded, padded, of another algorithm, with other claims, or mangled at random."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.sessions.tokens import ISSUED_HEADER, Claims, FastHS256, TokenCodec, TokenError
from service.settings import Settings
from tests.conftest import TEST_SECRET, ManualClock

ISSUER = "sessionwire"
SETTINGS = Settings(jwt_secret=TEST_SECRET, jwt_issuer=ISSUER)
CLOCK = ManualClock()
NOW = CLOCK.now_ms() // 1000
GOOD = {"sub": "alice", "sid": "s-1", "iat": NOW, "exp": NOW + 3600, "iss": ISSUER}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: str, payload: str, secret: str = TEST_SECRET, digest: str = "sha256") -> str:
    """A token of these exact segments, with a valid HMAC over them."""
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), digest).digest()
    return f"{header}.{payload}.{b64(mac)}"


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


def claims(**changes: Any) -> str:
    """A claims segment: ours, with `changes`."""
    return segment({**GOOD, **changes})


def raw(header: object, payload: object, secret: str = TEST_SECRET) -> str:
    """Segments from JSON text written exactly as given (str) or compactly (a value)."""

    def text(value: object) -> bytes:
        return value.encode() if isinstance(value, str) else json.dumps(value).encode()

    return sign(b64(text(header)), b64(text(payload)), secret)


def issued(**claims: Any) -> str:
    return jwt.encode({**GOOD, **claims}, TEST_SECRET, algorithm="HS256")


def corpus() -> dict[str, str]:
    good = issued()
    head, body, sig = good.split(".")
    other_key = "another-secret-" + "y" * 40
    return {
        "valid": good,
        "valid, unicode user": issued(sub="zoë", sid="ß-2"),
        "expired": issued(exp=NOW - 1, iat=NOW - 7200),
        "expires this second": issued(exp=NOW),
        "issued in the future": issued(iat=NOW + 3600, exp=NOW + 7200),
        "forged: another secret": jwt.encode(GOOD, other_key, algorithm="HS256"),
        "forged: signature of another token": f"{head}.{body}.{issued(sub='bob').split('.')[2]}",
        "forged: one signature bit": f"{head}.{body}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        "forged: claims changed": f"{head}.{claims(sub='bob')}.{sig}",
        "forged: empty signature": f"{head}.{body}.",
        "re-encoded: header keys swapped": raw({"typ": "JWT", "alg": "HS256"}, GOOD),
        "re-encoded: header with spaces": raw('{"alg": "HS256", "typ": "JWT"}', GOOD),
        "re-encoded: header without typ": raw({"alg": "HS256"}, GOOD),
        "re-encoded: claims reordered": raw(
            json.loads(base64.urlsafe_b64decode(head + "==")), dict(reversed(GOOD.items()))
        ),
        "re-encoded: claims with spaces": sign(head, b64(json.dumps(GOOD, indent=1).encode())),
        "re-encoded: escaped characters": sign(
            head, b64(json.dumps({**GOOD, "sub": "\u00e9l\u00e8ve"}, ensure_ascii=True).encode())
        ),
        "re-encoded: UTF-16 claims": sign(head, b64(json.dumps(GOOD).encode("utf-16"))),
        "re-encoded: duplicate sub": sign(
            head, b64(json.dumps(GOOD)[:-1].encode() + b', "sub": "mallory"}')
        ),
        "re-encoded: non-canonical base64 bits": sign(head, body[:-1] + chr(ord(body[-1]) + 1)),
        "re-encoded: base64 with +/": sign(head, body.replace("-", "+").replace("_", "/") + "+"),
        "padded signature": f"{good}=",
        "padded signature, too much": f"{good}===",
        "padded payload": sign(
            head, body + "=" * (-len(body) % 4) if len(body) % 4 else body + "="
        ),
        "padded header": sign(head + "=" * (-len(head) % 4 or 4), body),
        "wrong algorithm: HS384": sign(
            segment({"alg": "HS384", "typ": "JWT"}), body, digest="sha384"
        ),
        "wrong algorithm: HS512": sign(
            segment({"alg": "HS512", "typ": "JWT"}), body, digest="sha512"
        ),
        "wrong algorithm: none": f"{segment({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "wrong algorithm: our header, HS512 mac": sign(head, body, digest="sha512"),
        "wrong algorithm: RS256": jwt.encode(GOOD, RSA_KEY, algorithm="RS256"),
        "wrong algorithm: header says hs256": raw({"alg": "hs256", "typ": "JWT"}, GOOD),
        "header with kid": jwt.encode(GOOD, TEST_SECRET, algorithm="HS256", headers={"kid": "1"}),
        "header b64 false": raw({"alg": "HS256", "b64": False, "crit": ["b64"]}, GOOD),
        "wrong issuer": issued(iss="someone-else"),
        "issuer missing": jwt.encode({k: v for k, v in GOOD.items() if k != "iss"}, TEST_SECRET),
        "sid missing": jwt.encode({k: v for k, v in GOOD.items() if k != "sid"}, TEST_SECRET),
        "sub null": sign(head, claims(sub=None)),
        "sub empty": issued(sub=""),
        "sid a number": sign(head, claims(sid=7)),
        "sub a list": sign(head, claims(sub=["a"])),
        "iat a float": sign(head, claims(iat=NOW + 0.5)),
        "exp a float": sign(head, claims(exp=float(NOW + 60))),
        "exp true": sign(head, claims(exp=True)),
        "exp a string": sign(head, claims(exp=str(NOW + 60))),
        "exp huge": sign(head, claims(exp=10**30)),
        "exp negative": sign(head, claims(exp=-5)),
        "exp NaN": sign(head, claims(exp=float("nan"))),
        "extra claim nbf in the future": issued(nbf=NOW + 600),
        "extra claim aud": issued(aud="someone"),
        "extra claim jti a number": issued(jti=5),
        "extra claim harmless": issued(device="phone"),
        "claims not an object": sign(head, b64(b"[1, 2]")),
        "claims not JSON": sign(head, b64(b"not json")),
        "claims empty": sign(head, ""),
        "two segments": f"{head}.{body}",
        "four segments": f"{good}.{sig}",
        "dots only": "..",
        "empty": "",
        "junk": "!!!!.!!!!.!!!!",
        "our header, junk after": f"{ISSUED_HEADER}.@@@.@@@",
        "whitespace inside": f"{head}.{body[:5]} {body[5:]}.{sig}",
        "newline at the end": f"{good}\n",
    }


def outcome(codec: TokenCodec, token: str) -> Claims | tuple[str, str] | str:
    try:
        return codec.verify(token)
    except TokenError as exc:
        return (exc.code, exc.detail)
    except Exception as exc:  # the reference's own failures must be the fast path's too
        return type(exc).__name__


FAST = TokenCodec(SETTINGS, CLOCK)
REFERENCE = TokenCodec(SETTINGS, CLOCK, fast_path=False)


@pytest.mark.parametrize(("name", "token"), corpus().items(), ids=list(corpus()))
def test_fast_path_agrees_with_pyjwt(name: str, token: str) -> None:
    assert outcome(FAST, token) == outcome(REFERENCE, token)


def test_the_corpus_has_both_verdicts_and_our_tokens_take_the_fast_path() -> None:
    """Not a vacuous agreement: some tokens pass, most fail, and ours skip PyJWT."""
    verdicts = {name: outcome(REFERENCE, token) for name, token in corpus().items()}
    assert isinstance(verdicts["valid"], Claims)
    assert isinstance(verdicts["re-encoded: header keys swapped"], Claims)  # PyJWT's to take
    assert isinstance(verdicts["padded signature"], Claims)  # PyJWT accepts padding
    assert verdicts["forged: another secret"] == ("invalid_token", "The token is not valid.")
    assert verdicts["expired"][0] == "token_expired"  # type: ignore[index]
    fast = FastHS256(TEST_SECRET)
    assert fast.decode(corpus()["valid"]) is not None
    assert fast.decode(corpus()["valid, unicode user"]) is not None
    for name in ("re-encoded: header keys swapped", "padded signature", "forged: another secret"):
        assert fast.decode(corpus()[name]) is None, name
    assert TokenCodec(SETTINGS, CLOCK).issue("a", "b", 0, 1).startswith(ISSUED_HEADER + ".")


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ !"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(sorted(corpus())),
    at=st.integers(min_value=0, max_value=400),
    cut=st.integers(min_value=0, max_value=3),
    insert=st.text(alphabet=ALPHABET, max_size=3),
)
def test_fast_path_agrees_on_mangled_tokens(base: str, at: int, cut: int, insert: str) -> None:
    token = corpus()[base]
    at = at % (len(token) + 1)
    mangled = token[:at] + insert + token[at + cut :]
    assert outcome(FAST, mangled) == outcome(REFERENCE, mangled)


@settings(max_examples=200, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(["sub", "sid", "iat", "exp", "iss", "nbf", "aud", "x"]),
        st.one_of(
            st.text(max_size=4),
            st.integers(min_value=NOW - 10**6, max_value=NOW + 10**6),
            st.floats(allow_nan=False),
            st.booleans(),
            st.none(),
            st.just(ISSUER),
        ),
    )
)
def test_fast_path_agrees_on_any_claims_we_could_have_signed(changes: dict[str, Any]) -> None:
    """Claims of every shape, signed with our secret under our exact header."""
    token = sign(ISSUED_HEADER, claims(**changes))
    assert outcome(FAST, token) == outcome(REFERENCE, token)
