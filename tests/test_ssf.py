"""The SSF transmitter through real processes (the API and the worker) and a receiver
written from the specifications (tests/ssf_receiver.py), on one Redis and on the 3+3
cluster: discovery, tokens, streams, push and poll delivery of verified CAEP SETs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.ssf.signing import new_pem
from tests.conftest import ENGINES, PASSWORD, on_engine, shared_engine, write_users
from tests.processes import Process, running
from tests.ssf_receiver import (
    POLL,
    PUSH,
    SESSION_ESTABLISHED,
    SESSION_REVOKED,
    STREAM_UPDATED,
    VERIFICATION,
    SsfReceiver,
)

ADMIN_TOKEN = "admin-" + "s" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AUDIENCE = "https://receiver.example.com"


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    return on_engine(request)


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ssf-keys")
    paths = folder / "current.pem", folder / "next.pem"
    for path in paths:
        path.write_bytes(new_pem())
    return paths


@contextmanager
def services(redis_url: str, tmp: Path, key: Path, **env: str) -> Iterator[tuple[Process, Process]]:
    env = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0,0.05,0.1,0.2,0.4,0.8",
        "SSF_SIGNING_KEY": str(key),
        **env,
    }
    # The worker signs with the API's issuer (by default the API's own address: its PORT).
    with (
        running("service", redis_url, tmp, **env) as api,
        running("workers", redis_url, tmp, PORT=str(api.port), **env) as worker,
    ):
        yield api, worker


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# One user per test of the shared stack: a stream takes every user's events, and a
# logout-all must revoke this test's sessions alone.
SHARED_USERS = ("pat", "polly", "paula", "dina", "rea", "dan", "ref")
SHARED_USERS_FILE = write_users(
    [{"username": name, "email": f"{name}@example.com"} for name in SHARED_USERS], PASSWORD
)


@pytest.fixture(scope="class", params=ENGINES)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    key_files: tuple[Path, Path],
) -> Iterator[tuple[Process, Process]]:
    """One API and one worker for all the tests of a class (two process starts, not two
    per test), on a Redis emptied for them. Only these processes use that Redis meanwhile:
    the class's tests run one after the other, with no other test in between."""
    tmp = tmp_path_factory.mktemp("ssf")
    users = {"USERS_FILE": str(SHARED_USERS_FILE)}
    with services(shared_engine(request), tmp, key_files[0], **users) as both:
        yield both


@pytest.fixture
async def transmitter(
    stack: tuple[Process, Process], http: aiohttp.ClientSession
) -> AsyncIterator[Process]:
    """The shared API, for a test that registers its own receivers (deleted afterwards,
    streams and all, so the next test's events go to its streams alone)."""
    yield stack[0]
    found = await call(http, "GET", stack[0].url + "/admin/ssf/receivers", 200, headers=ADMIN)
    for receiver in found["receivers"]:
        url = f"{stack[0].url}/admin/ssf/receivers/{receiver['client_id']}"
        await call(http, "DELETE", url, 204, headers=ADMIN)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, status: int | None = None, **kwargs: Any
) -> Any:
    async with http.request(method, url, **kwargs) as r:
        body = await r.read()
        assert r.status < 500, (r.status, body[:300])
        assert status is None or r.status == status, (r.status, body[:300])
        return json.loads(body) if body else None


async def connect(
    http: aiohttp.ClientSession,
    api: Process,
    delivery: dict[str, Any],
    receiver: SsfReceiver | None = None,
) -> tuple[SsfReceiver, dict[str, Any], dict[str, Any]]:
    """Register a receiver (admin API), configure it from discovery, create its stream."""
    created = await call(
        http, "POST", api.url + "/admin/ssf/receivers", 201, headers=ADMIN,
        json={"name": "proxy", "audience": AUDIENCE},
    )  # fmt: skip
    receiver = receiver or SsfReceiver(http, api.url, AUDIENCE)
    receiver.transmitter = api.url
    config = await receiver.discover()
    await receiver.get_token(created["client_id"], created["client_secret"])
    status, stream = await receiver.call(
        "POST", config["configuration_endpoint"], {"delivery": delivery}
    )
    assert status == 201, stream
    return receiver, created, stream


async def sign_in(
    http: aiohttp.ClientSession, api: Process, device: str = "laptop", user: str = "alice"
) -> dict[str, Any]:
    body = {"username": user, "password": PASSWORD, "device_name": device}
    return await call(http, "POST", api.url + "/login", 200, json=body)  # type: ignore[no-any-return]


async def sign_out(http: aiohttp.ClientSession, api: Process, token: str) -> float:
    """Sign out; when the request was sent."""
    sent = time.monotonic()
    await call(
        http, "POST", api.url + "/logout", None, headers={"Authorization": f"Bearer {token}"}
    )
    return sent


def revoked_of(found: list[Any], session_id: str) -> list[Any]:
    return [v for v in found if v.event_type == SESSION_REVOKED and v.session_id == session_id]


@pytest.fixture
async def pushed(http: aiohttp.ClientSession) -> AsyncIterator[tuple[SsfReceiver, str]]:
    receiver = SsfReceiver(http, "", AUDIENCE)
    url = await receiver.listen()
    yield receiver, url
    await receiver.close()


async def push_stream(
    http: aiohttp.ClientSession, api: Process, pushed: tuple[SsfReceiver, str]
) -> tuple[SsfReceiver, str]:
    receiver, url = pushed
    _, _, stream = await connect(http, api, {"method": PUSH, "endpoint_url": url}, receiver)
    return receiver, stream["stream_id"]


async def reloaded(http: aiohttp.ClientSession, api: Process) -> None:
    """Wait until the worker applies every stream change answered so far.

    Workers apply a change when they next read the streams, all at once (every second, or
    later on a loaded machine; docs/SSF.md). They send a push stream's verification SET
    only once a read has shown them that stream: the first SET of a stream created now
    comes after a read that saw every earlier change.
    """
    probe = SsfReceiver(http, "", AUDIENCE)
    probe_url = await probe.listen()
    try:
        probe, created, stream = await connect(
            http, api, {"method": PUSH, "endpoint_url": probe_url}, probe
        )
        verify = {"stream_id": stream["stream_id"], "state": "reloaded"}
        status, _ = await probe.call("POST", api.url + "/ssf/verify", verify)
        assert status == 204
        await probe.until(lambda v: any(x.event_type == VERIFICATION for x in v))
        url = f"{api.url}/admin/ssf/receivers/{created['client_id']}"
        await call(http, "DELETE", url, 204, headers=ADMIN)
    finally:
        await probe.close()


# How long nothing must come, to believe nothing will: past the worker's next reload of
# the streams (every second, later on a loaded machine: 1.5 s was once too little in CI).
QUIET = 3.0


# These run on one server only, as they did with a stack each.
one_server = pytest.mark.parametrize("stack", ["single"], indirect=True)


class TestOnOneStack:
    """Tests that share the class's API and worker (the `transmitter` fixture), each with
    its own user."""

    async def test_discovery_and_jwks(
        self, transmitter: Process, http: aiohttp.ClientSession
    ) -> None:
        api = transmitter
        config = await call(http, "GET", api.url + "/.well-known/ssf-configuration", 200)
        assert config["spec_version"] == "1_0" and config["issuer"] == api.url
        assert config["delivery_methods_supported"] == [PUSH, POLL]
        assert config["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
        assert config["default_subjects"] == "ALL"
        for name in ("configuration", "status", "add_subject", "remove_subject", "verification"):
            assert config[f"{name}_endpoint"].startswith(api.url + "/ssf/")
        jwks = await call(http, "GET", config["jwks_uri"], 200)
        (key,) = jwks["keys"]
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key
        members = json.dumps({k: key[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
        thumb = base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=")
        assert key["kid"] == thumb.decode()  # RFC 7638

    async def test_push_delivers_verified_caep_sets(
        self,
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api, (receiver, url) = transmitter, pushed
        receiver, _, stream = await connect(
            http,
            api,
            {"method": PUSH, "endpoint_url": url, "authorization_header": "Bearer r1"},
            receiver,
        )
        sid = stream["stream_id"]
        status, _ = await receiver.call(
            "POST", api.url + "/ssf/verify", {"stream_id": sid, "state": "abc"}
        )
        assert status == 204
        found = await receiver.until(lambda v: any(x.event_type == VERIFICATION for x in v))
        check = next(x for x in found if x.event_type == VERIFICATION)
        assert check.event == {"state": "abc"}
        assert check.claims["sub_id"] == {"format": "opaque", "id": sid}
        signed_in = await sign_in(http, api, user="pat")
        session_id = signed_in["session"]["session_id"]
        await receiver.until(lambda v: any(x.event_type == SESSION_ESTABLISHED for x in v))
        out_at = await sign_out(http, api, signed_in["token"])
        await receiver.until(lambda v: revoked_of(v, session_id))
        revoked = revoked_of(receiver.verified, session_id)[0]
        print(f"sign-out -> verified push SET: {(revoked.at - out_at) * 1000:.0f} ms")
        assert revoked.user == "pat"
        assert revoked.event["initiating_entity"] == "user"
        assert revoked.event["reason_admin"] == {"en": "The user signed out on this device."}
        assert revoked.claims["txn"].startswith("msg_")
        assert all(h.get("Authorization") == "Bearer r1" for h in receiver.push_headers)
        assert all(h["Content-Type"] == "application/secevent+jwt" for h in receiver.push_headers)

    async def test_poll_delivers_and_offers_unacknowledged_sets_again(
        self, transmitter: Process, http: aiohttp.ClientSession
    ) -> None:
        api = transmitter
        receiver, _, stream = await connect(http, api, {"method": POLL})
        poll_url = stream["delivery"]["endpoint_url"]
        assert stream["delivery"]["method"] == POLL and poll_url.startswith(api.url)
        signed_in = await sign_in(http, api, user="polly")
        session_id = signed_in["session"]["session_id"]
        # Not acknowledged: offered again on the next poll (same jti).
        first = []
        while not first:
            status, answer = await receiver.call("POST", poll_url, {"maxEvents": 10})
            assert status == 200
            first = list(answer["sets"])
        status, again = await receiver.call("POST", poll_url, {"returnImmediately": True})
        assert list(again["sets"])[: len(first)] == first
        for token in answer["sets"].values():
            assert receiver.verify(token).event_type == SESSION_ESTABLISHED
        status, _ = await receiver.call("POST", poll_url, {"ack": first, "returnImmediately": True})
        assert status == 200
        out_at = await sign_out(http, api, signed_in["token"])
        got = await receiver.poll_once(poll_url, wait=True)
        while not revoked_of(got, session_id):
            got += await receiver.poll_once(poll_url, wait=True)
        print(f"sign-out -> verified poll SET: {(time.monotonic() - out_at) * 1000:.0f} ms")
        assert revoked_of(got, session_id)[0].event["initiating_entity"] == "user"
        status, empty = await receiver.call("POST", poll_url, {"returnImmediately": True})
        assert empty == {"sets": {}, "moreAvailable": False}

    @one_server
    async def test_pause_holds_events_in_order_and_enable_delivers_them(
        self,
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api = transmitter
        receiver, sid = await push_stream(http, api, pushed)
        status_url = api.url + "/ssf/status"
        status, answer = await receiver.call(
            "POST", status_url, {"stream_id": sid, "status": "paused", "reason": "maintenance"}
        )
        assert (status, answer) == (
            200,
            {"stream_id": sid, "status": "paused", "reason": "maintenance"},
        )
        await receiver.until(lambda v: receiver.of(STREAM_UPDATED))
        assert receiver.of(STREAM_UPDATED)[0].event == {"status": "paused", "reason": "maintenance"}
        await reloaded(http, api)
        sessions = [await sign_in(http, api, f"device{i}", "paula") for i in range(3)]
        for signed in sessions:
            await sign_out(http, api, signed["token"])
        await asyncio.sleep(1.5)  # nothing comes while paused (the worker reloads each second)
        assert not receiver.of(SESSION_ESTABLISHED) and not receiver.of(SESSION_REVOKED)
        status, answer = await receiver.call("GET", status_url, stream_id=sid)
        assert answer["status"] == "paused"
        status, _ = await receiver.call("POST", status_url, {"stream_id": sid, "status": "enabled"})
        assert status == 200
        await receiver.until(lambda v: len(receiver.of(SESSION_REVOKED)) == 3)
        order = [
            (v.event_type, v.session_id)
            for v in receiver.verified
            if v.event_type in (SESSION_ESTABLISHED, SESSION_REVOKED)
        ]
        expected = [(SESSION_ESTABLISHED, s["session"]["session_id"]) for s in sessions]
        expected += [(SESSION_REVOKED, s["session"]["session_id"]) for s in sessions]
        assert order == expected  # one user's events, in order

    @one_server
    async def test_disabled_drops_events_and_subjects_filter(
        self,
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api = transmitter
        receiver, sid = await push_stream(http, api, pushed)
        status_url = api.url + "/ssf/status"
        await receiver.call("POST", status_url, {"stream_id": sid, "status": "disabled"})
        await receiver.until(lambda v: receiver.of(STREAM_UPDATED))
        await reloaded(http, api)
        dropped = await sign_in(http, api, "while-disabled", "dina")
        await reloaded(http, api)  # the worker saw it while disabled
        await receiver.call("POST", status_url, {"stream_id": sid, "status": "enabled"})
        subject = {"format": "iss_sub", "iss": api.url, "sub": "dina"}
        remove = api.url + "/ssf/subjects:remove"
        status, _ = await receiver.call("POST", remove, {"stream_id": sid, "subject": subject})
        assert status == 204
        await reloaded(http, api)
        await sign_in(http, api, "removed", "dina")
        add = api.url + "/ssf/subjects:add"
        complex_subject = {"format": "complex", "user": subject}
        status, _ = await receiver.call("POST", add, {"stream_id": sid, "subject": complex_subject})
        assert status == 200
        await reloaded(http, api)
        kept = await sign_in(http, api, "added-again", "dina")
        await receiver.until(lambda v: receiver.of(SESSION_ESTABLISHED))
        await asyncio.sleep(QUIET)  # nothing else comes
        ids = [v.session_id for v in receiver.of(SESSION_ESTABLISHED)]
        assert ids == [kept["session"]["session_id"]]
        assert dropped["session"]["session_id"] not in ids

    @one_server
    async def test_reasons_map_to_initiating_entities(
        self,
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api = transmitter
        receiver, _ = await push_stream(http, api, pushed)
        laptop = await sign_in(http, api, "laptop", "rea")
        phone = await sign_in(http, api, "phone", "rea")
        auth = {"Authorization": f"Bearer {phone['token']}"}
        await call(
            http,
            "DELETE",
            f"{api.url}/sessions/{laptop['session']['session_id']}",
            200,
            headers=auth,
        )
        await call(
            http, "POST", api.url + "/admin/users/rea/logout-all", 200, headers=ADMIN,
            json={"reason": "password_changed"},
        )  # fmt: skip
        await receiver.until(lambda v: len(receiver.of(SESSION_REVOKED)) == 2)
        by_session = {v.session_id: v.event for v in receiver.of(SESSION_REVOKED)}
        assert by_session[laptop["session"]["session_id"]]["initiating_entity"] == "user"
        changed = by_session[phone["session"]["session_id"]]
        assert changed["initiating_entity"] == "admin"
        assert changed["reason_user"] == {"en": "Your password was changed."}

    @one_server
    async def test_a_receiver_down_then_up_gets_its_sets(
        self,
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api = transmitter
        receiver, _ = await push_stream(http, api, pushed)
        receiver.push_status = 503
        signed = await sign_in(http, api, user="dan")
        deadline = time.monotonic() + 10
        while len(receiver.push_headers) < 2:  # tried, and tried again
            assert time.monotonic() < deadline, receiver.push_headers
            await asyncio.sleep(0.05)
        assert not receiver.verified
        receiver.push_status = 202
        await receiver.until(lambda v: receiver.of(SESSION_ESTABLISHED))
        assert receiver.of(SESSION_ESTABLISHED)[0].session_id == signed["session"]["session_id"]

    @one_server
    async def test_a_refused_set_is_failed_for_good_and_counted(
        self,
        stack: tuple[Process, Process],
        transmitter: Process,
        http: aiohttp.ClientSession,
        pushed: tuple[SsfReceiver, str],
    ) -> None:
        api, worker = transmitter, stack[1]
        logged = len(worker.log())  # the log of the tests before this one
        receiver, sid = await push_stream(http, api, pushed)
        receiver.push_status = 400
        refused = await sign_in(http, api, "refused", "ref")
        deadline = time.monotonic() + 10
        while not receiver.push_headers:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        receiver.push_status = 202
        taken = await sign_in(http, api, "taken", "ref")
        await receiver.until(lambda v: receiver.of(SESSION_ESTABLISHED))
        # In order per user: once the second came, the first was not going to be retried.
        assert [v.session_id for v in receiver.of(SESSION_ESTABLISHED)] == [
            taken["session"]["session_id"]
        ]
        assert len(receiver.push_headers) == 2
        async with http.get(worker.url + "/metrics") as r:
            text = await r.text()
        line = f'sessionwire_webhook_deliveries_total{{endpoint="{sid}",outcome="failed"}} 1.0'
        assert line in text, [x for x in text.splitlines() if sid in x]
        assert "invalid_key: told to refuse" in worker.log()[logged:]
        assert refused["session"]["session_id"] not in {v.session_id for v in receiver.verified}


async def test_key_rotation_keeps_the_previous_key_in_the_jwks(
    single_redis_url: str,
    tmp_path: Path,
    key_files: tuple[Path, Path],
    http: aiohttp.ClientSession,
    pushed: tuple[SsfReceiver, str],
) -> None:
    old, new = key_files
    with services(single_redis_url, tmp_path, old) as (api, _):
        receiver, sid = await push_stream(http, api, pushed)
        await sign_in(http, api)
        await receiver.until(lambda v: receiver.of(SESSION_ESTABLISHED))
        old_kid = receiver.of(SESSION_ESTABLISHED)[0].header["kid"]
        client = receiver.token
    rotated = {"SSF_PREVIOUS_SIGNING_KEY": str(old)}
    with services(single_redis_url, tmp_path, new, **rotated) as (api, _):
        receiver.transmitter = api.url
        await receiver.discover()  # the JWKS now has both keys
        assert old_kid in receiver.keys and len(receiver.keys) == 2
        receiver.token = client  # tokens outlive a restart (they are in Redis)
        signed = await sign_in(http, api, "phone")
        await receiver.until(lambda v: len(receiver.of(SESSION_ESTABLISHED)) == 2)
        latest = receiver.of(SESSION_ESTABLISHED)[1]
        assert (
            latest.header["kid"] != old_kid and latest.session_id == signed["session"]["session_id"]
        )
        assert sid


async def test_the_worker_killed_mid_delivery_loses_nothing(
    single_redis_url: str,
    tmp_path: Path,
    key_files: tuple[Path, Path],
    http: aiohttp.ClientSession,
    pushed: tuple[SsfReceiver, str],
) -> None:
    env = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0,0.05,0.1",
        "SSF_SIGNING_KEY": str(key_files[0]),
    }
    with running("service", single_redis_url, tmp_path, **env) as api:
        worker_env = {**env, "PORT": str(api.port)}
        with running("workers", single_redis_url, tmp_path, **worker_env) as worker:
            receiver, _ = await push_stream(http, api, pushed)
            receiver.push_status = 503  # nothing gets through: all of it is pending
            sessions = [await sign_in(http, api, f"d{i}") for i in range(5)]
            await asyncio.sleep(0.3)
            worker.stop(signal.SIGKILL)
        receiver.push_status = 202
        with running("workers", single_redis_url, tmp_path, **worker_env):
            await receiver.until(lambda v: len(receiver.of(SESSION_ESTABLISHED)) == 5)
        got = [v.session_id for v in receiver.of(SESSION_ESTABLISHED)]
        assert got == [s["session"]["session_id"] for s in sessions]
