"""Bad input to every SSF endpoint gets the specification's status (RFC 6749 §5.2 for the
token endpoint, SSF 1.0 §8 for the streams), never a 5xx; each receiver reaches only its
own stream. The API in process, on a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.api import ssf as ssf_api
from service.sessions import keys
from service.settings import ConfigError, Settings
from service.ssf.signing import load_key, new_pem
from tests.ssf_receiver import POLL, PUSH, basic

ADMIN_TOKEN = "admin-" + "i" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ISSUER = "https://auth.example.com"
MakeApi = Callable[..., Awaitable[TestClient]]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssf-key") / "key.pem"
    path.write_bytes(new_pem())
    return path


@pytest.fixture
async def api(make_api: MakeApi, key_file: Path) -> TestClient:
    return await make_api(admin_token=ADMIN_TOKEN, ssf_signing_key=str(key_file), ssf_issuer=ISSUER)


async def answer(api: TestClient, method: str, path: str, status: int, **kwargs: Any) -> Any:
    async with api.request(method, path, **kwargs) as r:
        body = await r.read()
        assert r.status == status, (r.status, body[:300])
        return await r.json(content_type=None) if body else None


async def receiver(api: TestClient) -> dict[str, Any]:
    body = {"name": "r", "audience": "https://r.example.com"}
    return await answer(api, "POST", "/admin/ssf/receivers", 201, headers=ADMIN, json=body)  # type: ignore[no-any-return]


async def token(
    api: TestClient, created: dict[str, Any], scope: str = "ssf.manage"
) -> dict[str, str]:
    found = await answer(
        api, "POST", "/ssf/token", 200,
        headers={"Authorization": basic(created["client_id"], created["client_secret"])},
        data={"grant_type": "client_credentials", "scope": scope},
    )  # fmt: skip
    assert found["token_type"] == "Bearer" and found["expires_in"] == 900
    return {"Authorization": f"Bearer {found['access_token']}"}


async def test_the_token_endpoint_answers_as_rfc_6749_says(
    api: TestClient, rdb: aioredis.Redis
) -> None:
    created = await receiver(api)
    good = basic(created["client_id"], created["client_secret"])
    form = {"grant_type": "client_credentials"}
    for headers in ({}, {"Authorization": basic(created["client_id"], "wrong")},
                    {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"},
                    {"Authorization": basic("rc_0000000000000000", "x")}):  # fmt: skip
        async with api.post("/ssf/token", headers=headers, data=form) as r:
            assert r.status == 401 and (await r.json())["error"] == "invalid_client"
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    found = await answer(
        api,
        "POST",
        "/ssf/token",
        400,
        headers={"Authorization": good},
        data={"grant_type": "password"},
    )
    assert found["error"] == "unsupported_grant_type"
    found = await answer(
        api, "POST", "/ssf/token", 400, headers={"Authorization": good},
        data={"grant_type": "client_credentials", "scope": "openid"},
    )  # fmt: skip
    assert found["error"] == "invalid_scope"
    found = await answer(api, "POST", "/ssf/token", 400, headers={"Authorization": good}, json=form)
    assert found["error"] == "invalid_request"
    bearer = await token(api, created)
    digest = hashlib.sha256(bearer["Authorization"].split()[1].encode()).hexdigest()
    assert 0 < await rdb.ttl(keys.ssf_token(digest)) <= 900  # short-lived, stored hashed
    await rdb.delete(keys.ssf_token(digest))  # as when it expires
    await answer(api, "GET", "/ssf/stream", 401, headers=bearer)


async def test_guessing_client_secrets_is_slowed_down_but_never_locks_out(
    api: TestClient,
) -> None:
    created = await receiver(api)
    form = {"grant_type": "client_credentials"}
    wrong = {"Authorization": basic(created["client_id"], "guess")}
    for _ in range(20):
        await answer(api, "POST", "/ssf/token", 401, headers=wrong, data=form)
    found = await answer(api, "POST", "/ssf/token", 429, headers=wrong, data=form)
    assert found["error"] == "slow_down"
    # Someone behind the same address guessed: the receiver with its secret still gets in.
    right = {"Authorization": basic(created["client_id"], created["client_secret"])}
    found = await answer(api, "POST", "/ssf/token", 200, headers=right, data=form)
    assert found["token_type"] == "Bearer"


async def test_a_form_in_an_unknown_charset_is_a_400(api: TestClient) -> None:
    created = await receiver(api)
    right = {
        "Authorization": basic(created["client_id"], created["client_secret"]),
        "Content-Type": "application/x-www-form-urlencoded; charset=bogus",
    }
    body = b"grant_type=client_credentials"
    found = await answer(api, "POST", "/ssf/token", 400, headers=right, data=body)
    assert found["error"] == "invalid_request"


async def test_verification_at_most_once_per_interval(api: TestClient) -> None:
    auth = await token(api, await receiver(api))
    stream = await answer(api, "POST", "/ssf/stream", 201, headers=auth, json={})
    sid = stream["stream_id"]
    assert stream["min_verification_interval"] == 15
    await answer(api, "POST", "/ssf/verify", 204, headers=auth, json={"stream_id": sid})
    async with api.post("/ssf/verify", headers=auth, json={"stream_id": sid}) as r:
        assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 15
    polled = await answer(
        api, "POST", f"/ssf/poll/{sid}", 200, headers=auth, json={"returnImmediately": True}
    )
    assert len(polled["sets"]) == 1  # the refused one signed and kept nothing


async def test_a_stream_holds_at_most_two_long_polls(api: TestClient) -> None:
    auth = await token(api, await receiver(api))
    sid = (await answer(api, "POST", "/ssf/stream", 201, headers=auth, json={}))["stream_id"]
    path = f"/ssf/poll/{sid}"
    waiting = [
        asyncio.create_task(answer(api, "POST", path, 200, headers=auth, json={})) for _ in range(2)
    ]
    await asyncio.sleep(0.5)  # both are waiting for a SET now
    third = await answer(api, "POST", path, 200, headers=auth, json={})
    assert third == {"sets": {}, "moreAvailable": False}
    assert not any(task.done() for task in waiting)  # the third did not wait like them
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_removed_subjects_are_bounded_and_never_dropped(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssf_api, "MAX_EXCLUDED", 3)
    auth = await token(api, await receiver(api))
    sid = (await answer(api, "POST", "/ssf/stream", 201, headers=auth, json={}))["stream_id"]

    def remove(name: str) -> dict[str, Any]:
        subject = {"format": "iss_sub", "iss": ISSUER, "sub": name}
        return {"json": {"stream_id": sid, "subject": subject}, "headers": auth}

    for name in ("a", "b", "c", "a"):  # "a" twice: already removed, nothing more kept
        await answer(api, "POST", "/ssf/subjects:remove", 204, **remove(name))
    found = await answer(api, "POST", "/ssf/subjects:remove", 400, **remove("d"))
    assert "at most 3" in found["detail"]
    # Nothing was dropped to make room (that would deliver "a" again, unasked): adding
    # one back makes room.
    add_a = {"format": "iss_sub", "iss": ISSUER, "sub": "a"}
    await answer(api, "POST", "/ssf/subjects:add", 200, headers=auth,
                 json={"stream_id": sid, "subject": add_a})  # fmt: skip
    await answer(api, "POST", "/ssf/subjects:remove", 204, **remove("d"))


async def test_scopes_tokens_and_other_receivers_streams(api: TestClient) -> None:
    mine, theirs = await receiver(api), await receiver(api)
    manage, read_only, other = (
        await token(api, mine),
        await token(api, mine, "ssf.read"),
        await token(api, theirs),
    )
    await answer(api, "POST", "/ssf/stream", 401, json={})
    await answer(
        api, "POST", "/ssf/stream", 401, headers={"Authorization": "Bearer sst_nope"}, json={}
    )
    await answer(api, "POST", "/ssf/stream", 403, headers=read_only, json={})
    stream = await answer(
        api, "POST", "/ssf/stream", 201, headers=manage, json={"delivery": {"method": POLL}}
    )
    await answer(api, "POST", "/ssf/stream", 409, headers=manage, json={})
    sid = stream["stream_id"]
    assert stream["iss"] == ISSUER and stream["aud"] == "https://r.example.com"
    assert (
        await answer(api, "GET", "/ssf/stream", 200, headers=read_only, params={"stream_id": sid})
    )["stream_id"] == sid
    assert await answer(api, "GET", "/ssf/stream", 200, headers=other) == []
    for method, path, kwargs in (
        ("GET", "/ssf/stream", {"params": {"stream_id": sid}}),
        ("PATCH", "/ssf/stream", {"json": {"stream_id": sid, "description": "x"}}),
        ("PUT", "/ssf/stream", {"json": {"stream_id": sid}}),
        ("DELETE", "/ssf/stream", {"params": {"stream_id": sid}}),
        ("GET", "/ssf/status", {"params": {"stream_id": sid}}),
        ("POST", "/ssf/status", {"json": {"stream_id": sid, "status": "paused"}}),
        ("POST", "/ssf/subjects:add", {"json": {"stream_id": sid, "subject": {}}}),
        ("POST", "/ssf/subjects:remove", {"json": {"stream_id": sid, "subject": {}}}),
        ("POST", "/ssf/verify", {"json": {"stream_id": sid}}),
        ("POST", f"/ssf/poll/{sid}", {"json": {}}),
    ):
        await answer(api, method, path, 404, headers=other, **kwargs)
    # The admin API deletes a receiver: its stream and tokens go with it.
    await answer(api, "DELETE", f"/admin/ssf/receivers/{mine['client_id']}", 204, headers=ADMIN)
    await answer(api, "GET", "/ssf/stream", 401, headers=manage)
    await answer(api, "GET", f"/admin/ssf/receivers/{mine['client_id']}", 404, headers=ADMIN)
    listed = await answer(api, "GET", "/admin/ssf/receivers", 200, headers=ADMIN)
    assert [r["client_id"] for r in listed["receivers"]] == [theirs["client_id"]]
    assert "client_secret" not in listed["receivers"][0]


async def test_malformed_bodies_are_400s_never_5xx(api: TestClient) -> None:
    auth = await token(api, await receiver(api))
    await answer(
        api,
        "POST",
        "/ssf/stream",
        400,
        headers={**auth, "Content-Type": "application/json"},
        data=b"{nope",
    )
    await answer(
        api,
        "POST",
        "/ssf/stream",
        400,
        headers={**auth, "Content-Type": "application/json"},
        data=b"\xff\xfe",
    )
    await answer(api, "POST", "/ssf/stream", 400, headers=auth, json=[1, 2])
    await answer(
        api, "POST", "/ssf/stream", 400, headers=auth, json={"delivery": {"method": "urn:x"}}
    )
    await answer(api, "POST", "/ssf/stream", 400, headers=auth, json={"delivery": {"method": PUSH}})
    await answer(api, "POST", "/ssf/stream", 400, headers=auth, json={"delivery": "poll"})
    await answer(api, "POST", "/ssf/stream", 400, headers=auth, json={"events_requested": "all"})
    # A push URL into the network is refused (no WEBHOOK_ALLOW_PRIVATE here).
    local = {"delivery": {"method": PUSH, "endpoint_url": "http://127.0.0.1:9/events"}}
    await answer(api, "POST", "/ssf/stream", 400, headers=auth, json=local)
    await answer(
        api,
        "POST",
        "/ssf/stream",
        413,
        headers={**auth, "Content-Type": "application/json"},
        data=b" " * 70_000,
    )
    stream = await answer(api, "POST", "/ssf/stream", 201, headers=auth, json={})
    sid = stream["stream_id"]
    assert stream["delivery"]["method"] == POLL  # the default
    await answer(
        api, "POST", "/ssf/status", 400, headers=auth, json={"stream_id": sid, "status": "on"}
    )
    await answer(
        api,
        "POST",
        "/ssf/status",
        400,
        headers=auth,
        json={"stream_id": sid, "status": "paused", "reason": 5},
    )
    for subject in (
        None,
        "alice",
        {"format": "email", "email": "a@b"},
        {"format": "iss_sub", "iss": "https://other", "sub": "alice"},
    ):
        await answer(
            api,
            "POST",
            "/ssf/subjects:add",
            400,
            headers=auth,
            json={"stream_id": sid, "subject": subject},
        )
    await answer(
        api, "POST", "/ssf/verify", 400, headers=auth, json={"stream_id": sid, "state": {}}
    )
    for body in (
        {"maxEvents": -1},
        {"maxEvents": "5"},
        {"returnImmediately": "yes"},
        {"ack": "x"},
        {"setErrs": []},
    ):
        await answer(api, "POST", f"/ssf/poll/{sid}", 400, headers=auth, json=body)
    await answer(api, "PATCH", "/ssf/stream", 404, headers=auth, json={"stream_id": 5})
    await answer(
        api, "POST", "/admin/ssf/receivers", 422, headers=ADMIN, json={"name": "", "audience": "x"}
    )
    await answer(
        api,
        "POST",
        "/admin/ssf/receivers",
        400,
        headers={**ADMIN, "Content-Type": "application/json"},
        data=b"[",
    )
    await answer(api, "POST", "/admin/ssf/receivers", 401, json={"name": "x", "audience": "y"})
    # Verification of a poll stream lands in its poll store: 204, then the SET is there.
    await answer(
        api, "POST", "/ssf/verify", 204, headers=auth, json={"stream_id": sid, "state": "s1"}
    )
    polled = await answer(
        api, "POST", f"/ssf/poll/{sid}", 200, headers=auth, json={"returnImmediately": True}
    )
    assert len(polled["sets"]) == 1 and polled["moreAvailable"] is False
    await answer(api, "DELETE", "/ssf/stream", 204, headers=auth, params={"stream_id": sid})
    await answer(api, "GET", "/ssf/status", 404, headers=auth, params={"stream_id": sid})


def test_small_or_odd_keys_are_refused(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="2048"):
        load_key(pem, "SSF_SIGNING_KEY")
    with pytest.raises(ConfigError, match="PEM"):
        load_key(b"not a key", "SSF_SIGNING_KEY")


def test_production_needs_an_https_issuer_with_a_key(tmp_path: Path) -> None:
    env = {
        "APP_ENV": "production", "REDIS_URL": "redis://r:6379/0", "JWT_SECRET": "j" * 40,
        "USERS_FILE": "users.json", "SSF_SIGNING_KEY": "key.pem",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="SSF_ISSUER"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "SSF_ISSUER": ISSUER}).ssf_enabled
    without = {k: v for k, v in env.items() if k != "SSF_SIGNING_KEY"}
    assert not Settings.from_env(without).ssf_enabled  # SSF is off: its paths are 404s


def test_every_revoke_reason_has_an_initiating_entity_and_words() -> None:
    from typing import get_args

    from service.sessions.records import Event, StoredSession
    from service.ssf import sets
    from service.wire.schemas import RevokeReason

    expected = {"logout": "user", "revoked": "user", "revoke_others": "user",
                "logout_all": "user", "admin": "admin", "password_changed": "admin",
                "evicted": "policy", "replaced": "policy", "expired": "system"}  # fmt: skip
    assert set(get_args(RevokeReason)) == set(expected)
    for reason, entity in expected.items():
        event = Event(type="session.revoked", user="alice", session_id="s1", at=1_700_000_000_123,
                      reason=reason, session=StoredSession(session_id="s1"))  # fmt: skip
        claims = sets.outbox_set(ISSUER, "aud", "ss_1", "msg_1_1-0", event, 1_700_000_001_000)
        (body,) = claims["events"].values()
        assert body["initiating_entity"] == entity
        assert set(body["reason_admin"]) == set(body["reason_user"]) == {"en"}
        assert body["event_timestamp"] == 1_700_000_000
        assert "sub" not in claims and "exp" not in claims and claims["txn"] == "msg_1_1-0"
