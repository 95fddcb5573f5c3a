"""An SSF receiver written from the specifications, never from the transmitter's code.

It reads the transmitter's configuration (SSF 1.0 §7) and JWKS, then checks every SET it
is given as RFC 8417 and SSF/CAEP say: a JWS whose `kid` names a key of the JWKS and whose
signature that key verifies (RS256, as the CAEP interoperability profile requires), the
header's `typ` `secevent+jwt`, `iss` the configuration's issuer, `aud` ours, an `iat`, a
`jti` never seen before, no `sub` and no `exp`, exactly one event, and a `sub_id` of the
formats of RFC 9493. Push (RFC 8935) and poll (RFC 8936) deliveries go through it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import jwt
from aiohttp import web

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
SESSION_ESTABLISHED = "https://schemas.openid.net/secevent/caep/event-type/session-established"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
INITIATING_ENTITIES = {"admin", "user", "policy", "system"}


def basic(client_id: str, secret: str) -> str:
    """client_secret_basic (RFC 6749 §2.3.1): each part form-urlencoded, then Basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class BadSet(AssertionError):
    """A SET a receiver must refuse."""


@dataclass
class VerifiedSet:
    header: dict[str, Any]
    claims: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def event_type(self) -> str:
        return next(iter(self.claims["events"]))

    @property
    def event(self) -> dict[str, Any]:
        return self.claims["events"][self.event_type]

    @property
    def user(self) -> str | None:
        sub_id = self.claims["sub_id"]
        return sub_id["user"]["sub"] if sub_id["format"] == "complex" else None

    @property
    def session_id(self) -> str | None:
        sub_id = self.claims["sub_id"]
        return sub_id["session"]["id"] if sub_id["format"] == "complex" else None


def _check_subject(sub_id: Any, issuer: str) -> None:
    if not isinstance(sub_id, dict):
        raise BadSet("sub_id is not an object")
    kind = sub_id.get("format")
    if kind == "opaque":
        if not isinstance(sub_id.get("id"), str):
            raise BadSet("opaque sub_id without an id")
    elif kind == "complex":
        user, session = sub_id.get("user"), sub_id.get("session")
        if not (isinstance(user, dict) and user.get("format") == "iss_sub"):
            raise BadSet("complex sub_id without an iss_sub user")
        if user.get("iss") != issuer or not isinstance(user.get("sub"), str):
            raise BadSet("the user's iss is not the transmitter's")
        if not (isinstance(session, dict) and session.get("format") == "opaque"):
            raise BadSet("complex sub_id without an opaque session")
        if not isinstance(session.get("id"), str):
            raise BadSet("session without an id")
    else:
        raise BadSet(f"unexpected sub_id format {kind!r}")


def _check_event(event_type: str, event: Any) -> None:
    if not isinstance(event, dict):
        raise BadSet("an event is an object")
    if event_type in (SESSION_REVOKED, SESSION_ESTABLISHED):
        if not isinstance(event.get("event_timestamp"), int):
            raise BadSet("CAEP event without a numeric event_timestamp")
        if "initiating_entity" in event and event["initiating_entity"] not in INITIATING_ENTITIES:
            raise BadSet("initiating_entity outside CAEP's values")
        for name in ("reason_admin", "reason_user"):
            if name in event:
                value = event[name]
                if not isinstance(value, dict) or not all(
                    isinstance(v, str) for v in value.values()
                ):
                    raise BadSet(f"{name} is a language map")


class SsfReceiver:
    """Configured from the transmitter's discovery document; verifies SETs."""

    def __init__(self, http: aiohttp.ClientSession, transmitter: str, audience: str) -> None:
        self.http, self.transmitter, self.audience = http, transmitter.rstrip("/"), audience
        self.config: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}
        self.seen_jti: set[str] = set()
        self.verified: list[VerifiedSet] = []
        self.token = ""
        self._arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.push_status = 202
        self.push_headers: list[dict[str, str]] = []
        self.port = 0

    async def discover(self) -> dict[str, Any]:
        async with self.http.get(f"{self.transmitter}/.well-known/ssf-configuration") as r:
            assert r.status == 200, r.status
            self.config = await r.json()
        assert self.config["spec_version"] == "1_0"
        await self.fetch_keys()
        return self.config

    async def fetch_keys(self) -> None:
        async with self.http.get(self.config["jwks_uri"]) as r:
            assert r.status == 200
            jwks = await r.json()
        self.keys = {k["kid"]: jwt.PyJWK(k, algorithm="RS256") for k in jwks["keys"]}

    async def get_token(
        self, client_id: str, secret: str, scope: str = "ssf.manage ssf.read"
    ) -> str:
        async with self.http.post(
            f"{self.transmitter}/ssf/token",
            headers={"Authorization": basic(client_id, secret)},
            data={"grant_type": "client_credentials", "scope": scope},
        ) as r:
            assert r.status == 200, await r.text()
            self.token = (await r.json())["access_token"]
        return self.token

    async def call(self, method: str, url: str, body: Any = None, **params: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, url, json=body, params=params, headers=headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    def verify(self, token: str) -> VerifiedSet:
        """The SET, once it passed every check; BadSet (or PyJWT's error) otherwise."""
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "secevent+jwt":
            raise BadSet(f"typ {header.get('typ')!r}")
        if header.get("alg") != "RS256":
            raise BadSet(f"alg {header.get('alg')!r}")
        key = self.keys.get(header.get("kid", ""))
        if key is None:
            raise BadSet(f"kid {header.get('kid')!r} is not in the JWKS {list(self.keys)}")
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=self.audience,
            issuer=self.config["issuer"],
            options={"require": ["iss", "iat", "jti", "aud"], "verify_exp": False},
        )
        if "sub" in claims or "exp" in claims:
            raise BadSet("a SET carries neither sub nor exp")
        if claims["jti"] in self.seen_jti:
            raise BadSet(f"jti {claims['jti']} seen twice")
        events = claims.get("events")
        if not isinstance(events, dict) or len(events) != 1:
            raise BadSet("exactly one event per SET")
        _check_subject(claims.get("sub_id"), self.config["issuer"])
        event_type = next(iter(events))
        _check_event(event_type, events[event_type])
        self.seen_jti.add(claims["jti"])
        found = VerifiedSet(header, claims)
        self.verified.append(found)
        self._arrived.set()
        return found

    # -- push: a loopback HTTP server (RFC 8935) ------------------------------------------

    async def listen(self) -> str:
        app = web.Application()
        app.router.add_post("/events", self._pushed)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}/events"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _pushed(self, request: web.Request) -> web.Response:
        self.push_headers.append(dict(request.headers))
        if self.push_status == 400:  # RFC 8935 §2.3: the SET is refused, with why
            refusal = {"err": "invalid_key", "description": "told to refuse"}
            return web.json_response(refusal, status=400)
        if self.push_status != 202:
            return web.Response(status=self.push_status)
        if request.content_type != "application/secevent+jwt":
            return web.json_response({"err": "invalid_request", "description": "type"}, status=400)
        try:
            self.verify((await request.read()).decode())
        except (BadSet, jwt.InvalidTokenError) as exc:
            return web.json_response(
                {"err": "invalid_request", "description": str(exc)}, status=400
            )
        return web.Response(status=202)

    # -- poll (RFC 8936) -----------------------------------------------------------------

    async def poll_once(
        self, url: str, *, wait: bool = True, ack: bool = True
    ) -> list[VerifiedSet]:
        status, answer = await self.call(
            "POST", url, {"maxEvents": 100, "returnImmediately": not wait}
        )
        assert status == 200, (status, answer)
        assert set(answer) >= {"sets", "moreAvailable"}
        got = [self.verify(token) for jti, token in answer["sets"].items()]
        for jti, found in zip(answer["sets"], got, strict=True):
            assert found.claims["jti"] == jti
        if ack and answer["sets"]:
            status, _ = await self.call(
                "POST",
                url,
                {"ack": list(answer["sets"]), "maxEvents": 0, "returnImmediately": True},
            )
            assert status == 200
        return got

    async def until(
        self, done: Any, wait: float = 20.0, poll_url: str | None = None
    ) -> list[VerifiedSet]:
        """The verified SETs once `done(verified)` holds (an AssertionError if never)."""
        deadline = time.monotonic() + wait
        while not done(self.verified):
            left = deadline - time.monotonic()
            assert left > 0, (
                f"{len(self.verified)} SETs after {wait}s: {[v.event_type for v in self.verified]}"
            )
            if poll_url:
                await self.poll_once(poll_url, wait=True)
                continue
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.verified

    def of(self, event_type: str) -> list[VerifiedSet]:
        return [v for v in self.verified if v.event_type == event_type]
