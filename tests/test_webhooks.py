"""Events out through real processes: the API and the worker, a webhook receiver on
loopback, on one Redis and on the 3+3 cluster. Every message the receiver gets is checked
with the Standard Webhooks reference library (`standardwebhooks`), never with our code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.sessions import keys
from tests.conftest import ENGINES, PASSWORD, on_engine, shared_engine
from tests.devices import wait_for
from tests.processes import Process, running

ADMIN_TOKEN = "admin-" + "t" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST = "0,0.05,0.1,0.2"  # the retry schedule in these tests: seconds, not hours
WAIT = 20.0


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    return on_engine(request)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> dict[str, Any]:
        """The message, once the reference library has verified its signature."""
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]


Answer = Callable[[Received], Awaitable[web.StreamResponse]]


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request, answers as told per path
    (204 by default)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, Answer] = {}
        self._arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(request.match_info["path"], dict(request.headers), await request.read())
        self.received.append(got)
        self._arrived.set()
        answer = self.answers.get(got.path)
        return await answer(got) if answer else web.Response(status=204)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def until(
        self, path: str, done: Callable[[list[Received]], bool], wait: float = WAIT
    ) -> list[Received]:
        """The requests to `path` once `done` holds for them (an assertion error if never)."""
        deadline = time.monotonic() + wait
        while not done(found := self.at(path)):
            left = deadline - time.monotonic()
            assert left > 0, f"{path}: {len(found)} requests after {wait}s"
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = await Receiver().start()
    yield found
    await found.stop()


@contextmanager
def services(
    redis_url: str, tmp: Path, *, worker_env: dict[str, str] | None = None, **env: str
) -> Iterator[tuple[Process, Process]]:
    """The API (admin token on) and a worker, with fast retries and private receivers."""
    env = {
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_RETRY_SCHEDULE": FAST,
        **env,
    }
    with (
        running("service", redis_url, tmp, **env) as api,
        running("workers", redis_url, tmp, **{**env, **(worker_env or {})}) as worker,
    ):
        yield api, worker


class Api:
    """Calls to the API process, as a product's back end and its users make them."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def call(
        self, method: str, path: str, *, status: int | None = None, **kwargs: Any
    ) -> Any:
        async with self.http.request(method, self.url + path, **kwargs) as resp:
            body = await resp.read()
            assert status is None or resp.status == status, (resp.status, body[:500])
            return json.loads(body) if body else None

    async def admin(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        return await self.call(method, path, status=status, headers=ADMIN, **kwargs)

    async def webhook(self, url: str, **fields: Any) -> dict[str, Any]:
        return await self.admin("POST", "/admin/webhooks", 201, json={"url": url, **fields})  # type: ignore[no-any-return]

    async def login(self, username: str = "alice", device: str = "laptop") -> dict[str, Any]:
        body = {"username": username, "password": PASSWORD, "device_name": device}
        return await self.call("POST", "/login", status=200, json=body)  # type: ignore[no-any-return]

    async def open(self, username: str, device: str = "laptop") -> dict[str, Any]:
        """A session opened by the admin API (any username)."""
        body = {"username": username, "device_name": device, "ip": "203.0.113.9"}
        return await self.admin("POST", "/admin/sessions", json=body)  # type: ignore[no-any-return]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# The retry schedule of the shared stack: the outage test's (its comments say why); the
# other tests on that stack never see a failure.
SHARED_SCHEDULE = "0,0.05,1.2,0.1"


@pytest.fixture(scope="class", params=ENGINES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Process, Process]]:
    """One API and one worker for all the tests of a class (two process starts, not two
    per test), on a Redis emptied for them. Only these processes use that Redis meanwhile:
    the class's tests run one after the other, with no other test in between."""
    tmp = tmp_path_factory.mktemp("webhooks")
    with services(shared_engine(request), tmp, WEBHOOK_RETRY_SCHEDULE=SHARED_SCHEDULE) as both:
        yield both


@pytest.fixture
async def shared(stack: tuple[Process, Process], http: aiohttp.ClientSession) -> AsyncIterator[Api]:
    """The shared API, for a test that creates its own endpoints (removed afterwards, so
    the next test's events go to its endpoints alone) and signs its own users in."""
    api = Api(http, stack[0].url)
    yield api
    for endpoint in (await api.admin("GET", "/admin/webhooks"))["webhooks"]:
        await api.admin("DELETE", f"/admin/webhooks/{endpoint['id']}", 204)


def statuses(*answers: tuple[int, dict[str, str]]) -> Answer:
    """Answer with these (status, headers) in turn, then 200 for ever."""
    queue = list(answers)

    async def answer(got: Received) -> web.StreamResponse:
        status, headers = queue.pop(0) if queue else (200, {})
        return web.Response(status=status, headers=headers)

    return answer


def usernames(got: list[Received], *secrets: str) -> set[str]:
    """Whose events these are, from the messages any of `secrets` verify."""
    found = set()
    for r in got:
        for secret in secrets:
            with suppress(WebhookVerificationError):
                found.add(r.verified(secret)["data"]["username"])
    return found


def first_seen(got: list[Received]) -> list[str]:
    return list(dict.fromkeys(r.id for r in got))


class TestOnOneStack:
    """Tests that share the class's API and worker (the `shared` fixture)."""

    async def test_every_event_reaches_the_endpoint_signed_and_in_order(
        self, shared: Api, receiver: Receiver
    ) -> None:
        endpoint = await shared.webhook(receiver.url("hook"), description="audit")
        assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
        assert endpoint["events"] == ["session.created", "session.revoked"]
        laptop = await shared.login("alice", "laptop")
        phone = await shared.login("alice", "phone")
        auth = {"Authorization": f"Bearer {phone['token']}"}
        await shared.call("DELETE", f"/sessions/{laptop['session']['session_id']}", headers=auth)
        await shared.admin(
            "POST", "/admin/users/alice/logout-all", json={"reason": "password_changed"}
        )
        got = await receiver.until("hook", lambda r: len(r) >= 4)
        messages = [r.verified(endpoint["secret"]) for r in got]
        assert [(m["type"], m["data"].get("reason")) for m in messages] == [
            ("session.created", None),
            ("session.created", None),
            ("session.revoked", "revoked"),
            ("session.revoked", "password_changed"),
        ]
        created = messages[0]
        assert created["data"]["username"] == "alice"
        assert created["data"]["session"]["session_id"] == laptop["session"]["session_id"]
        assert set(created["data"]["session"]) == {
            "session_id", "device_id", "device_name", "user_agent", "ip", "created_at",
            "last_seen_at", "expires_at", "online", "browser", "os", "device_type", "location",
        }  # fmt: skip
        assert created["data"]["session"]["online"] is False  # a new session has no socket
        revoked = messages[2]["data"]
        assert revoked["session_id"] == laptop["session"]["session_id"]
        assert revoked["by"]["session_id"] == phone["session"]["session_id"]
        assert revoked["by"]["device_name"] == "phone" and revoked["at"].endswith("Z")
        assert messages[3]["data"]["by"] is None
        assert messages[3]["timestamp"] == messages[3]["data"]["at"]
        assert len({r.id for r in got}) == 4  # one id per event
        # The delivery log says so too, once the worker has written the last outcome.
        path = f"/admin/webhooks/{endpoint['id']}/deliveries"
        delivered = {r.id: "delivered" for r in got}
        await wait_for(
            lambda: shared.admin("GET", path),
            lambda found: {d["message_id"]: d["state"] for d in found["deliveries"]} == delivered,
            WAIT,
        )

    async def test_an_outage_with_retry_after_then_every_message_in_order(
        self, shared: Api, receiver: Receiver
    ) -> None:
        receiver.answers["flaky"] = statuses(
            (500, {}),  # the schedule's next delay: 0.05 s
            (429, {"Retry-After": "3600"}),  # capped at the schedule's longest: 1.2 s
            (503, {"Retry-After": "1"}),  # replaces the schedule's 0.1 s
        )
        endpoint = await shared.webhook(receiver.url("flaky"))
        sessions = [(await shared.open("dave", f"device-{i}"))["session"] for i in range(5)]
        got = await receiver.until("flaky", lambda r: len(first_seen(r)) == 5 and len(r) >= 8)
        deliveries = await shared.admin("GET", f"/admin/webhooks/{endpoint['id']}/deliveries")
        messages = {r.id: r.verified(endpoint["secret"]) for r in got}
        order = [messages[i]["data"]["session"]["session_id"] for i in first_seen(got)]
        assert order == [s["session_id"] for s in sessions]  # one user's events, in order
        head = got[0].id
        assert [r.id for r in got[:4]] == [head] * 4  # the first held the others back
        assert len(got) == 8  # and each later one went once
        gaps = [b.at - a.at for a, b in itertools.pairwise(got[:4])]
        assert gaps[1] < 5  # Retry-After 3600 was capped
        assert gaps[2] >= 0.9  # Retry-After 1 replaced the schedule's 0.1 s
        # Each attempt was signed afresh (its own timestamp), under the same id.
        assert len({r.headers["webhook-timestamp"] for r in got[:4]}) >= 2
        [first] = [d for d in deliveries["deliveries"] if d["message_id"] == head]
        assert first["state"] == "delivered" and first["attempts"] == 4

    async def test_a_hanging_endpoint_never_delays_a_healthy_one(
        self, shared: Api, receiver: Receiver
    ) -> None:
        release = asyncio.Event()

        async def hang(got: Received) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=204)

        receiver.answers["hang"] = hang
        hanging = await shared.webhook(receiver.url("hang"))
        healthy = await shared.webhook(receiver.url("ok"))
        users = [f"user{i}" for i in range(40)]  # more users than one endpoint's 32 at once
        for user in users:
            await shared.open(user)
        got = await receiver.until("ok", lambda r: len(r) == len(users))
        assert len(receiver.at("hang")) <= 32  # the hanging one holds only its own share
        release.set()
        late = await receiver.until("hang", lambda r: len(first_seen(r)) == len(users))
        assert {r.verified(healthy["secret"])["data"]["username"] for r in got} == set(users)
        assert {r.verified(hanging["secret"])["data"]["username"] for r in late} == set(users)

    async def test_410_disables_the_endpoint_and_enabling_resumes_where_it_stopped(
        self, shared: Api, receiver: Receiver
    ) -> None:
        receiver.answers["gone"] = statuses((410, {}))
        endpoint = await shared.webhook(receiver.url("gone"))
        path = f"/admin/webhooks/{endpoint['id']}"
        await shared.open("fay", "one")
        [refused] = await receiver.until("gone", lambda r: len(r) == 1)
        found = await wait_for(
            lambda: shared.admin("GET", path), lambda e: e["status"] == "disabled", WAIT
        )
        assert found["disabled_reason"] == "gone"
        assert found["last_delivery"]["last_status"] == 410
        await shared.open("fay", "two")  # held while disabled
        changed = await shared.admin("PATCH", path, json={"status": "enabled"})
        assert changed["status"] == "enabled" and changed["disabled_reason"] is None
        got = await receiver.until("gone", lambda r: len(first_seen(r)) == 2)
        assert got[1].id == refused.id  # the refused message first, then the held one
        devices = [r.verified(endpoint["secret"])["data"]["session"]["device_name"] for r in got]
        assert devices == ["one", "one", "two"]


async def metric_sum(worker: Process, http: aiohttp.ClientSession, name: str) -> float:
    async with http.get(worker.url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_a_worker_killed_mid_delivery_loses_nothing(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def hang(got: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.answers["slow"] = hang
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_RETRY_SCHEDULE": FAST}
    shards = "sessionwire_outbox_shards"
    with services(redis_url, tmp_path) as (api_proc, first):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("slow"))
        with running("workers", redis_url, tmp_path, **env) as second:
            # The two processes share the shards, each holding a part.
            await wait_for(
                lambda: asyncio.gather(*(metric_sum(w, http, shards) for w in (first, second))),
                lambda held: sum(held) == 16 and min(held) > 0,
                WAIT,
            )
            await api.open("erin", "one")
            [stuck] = await receiver.until("slow", lambda r: len(r) == 1)
            shard = keys.shard_of_slot(keys.slot_of_user("erin"))
            busy, idle = (first, second) if shard in held_shards(first) else (second, first)
            assert busy.proc is not None
            busy.proc.send_signal(signal.SIGKILL)  # kill -9, with the message out
            busy.proc.wait()
            await api.open("erin", "two")  # while the duty moves to the other process
            release.set()
            got = await receiver.until("slow", lambda r: len(first_seen(r)) == 2)
            await wait_for(lambda: metric_sum(idle, http, shards), lambda held: held == 16, WAIT)
    assert got[1].id == stuck.id  # sent again, with its id
    devices = [r.verified(endpoint["secret"])["data"]["session"]["device_name"] for r in got]
    assert devices == ["one", "one", "two"]


def held_shards(worker: Process) -> set[int]:
    """The outbox shards a worker process says it holds (from its log)."""
    held: set[int] = set()
    for line in worker.log().splitlines():
        if "outbox shards [" in line:
            listed = line.split("[", 1)[1].split("]", 1)[0]
            shards = {int(n) for n in listed.split(",") if n.strip()}
            held = held | shards if line.rstrip().endswith("delivered here") else held - shards
    return held


async def test_replay_and_a_rotated_secret(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    with services(redis_url, tmp_path) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("hook"), events=["session.created"])
        path = f"/admin/webhooks/{endpoint['id']}"
        since = time.time() - 1
        for user in ("gus", "hal", "ivy"):
            await api.open(user)
        await api.admin("POST", "/admin/users/gus/logout-all")  # not a type it takes
        await receiver.until("hook", lambda r: len(r) == 3)
        new = (await api.admin("POST", path + "/rotate-secret"))["secret"]
        assert new.startswith("whsec_") and new != endpoint["secret"]
        # Workers pick the new secret up within a second (they reload endpoints): sign in
        # until a message carries it. Both secrets sign it, for a day.
        old = endpoint["secret"]
        for n in itertools.count():
            await api.open(name := f"jay{n}")
            found = await receiver.until("hook", lambda r, n=name: n in usernames(r, new, old))
            [after] = [r for r in found if name in usernames([r], new, old)]
            if len(after.headers["webhook-signature"].split(" ")) == 2:
                break
        assert after.verified(new) == after.verified(endpoint["secret"])
        sent = len(receiver.at("hook"))
        since_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        queued = await api.admin("POST", path + "/replay", 202, json={"since": since_text})
        assert queued == {"queued": sent}
        again = (await receiver.until("hook", lambda r: len(r) == 2 * sent))[sent:]
        assert not any(
            "secret" in w for w in (await api.admin("GET", "/admin/webhooks"))["webhooks"]
        )
    assert sorted(r.id for r in again) == sorted(r.id for r in receiver.at("hook")[:sent])
    assert {r.verified(new)["type"] for r in again} == {"session.created"}


@pytest.fixture
async def admin_api(make_api: Callable[..., Awaitable[Any]]) -> Any:
    """The API in process, with the admin token on and private addresses refused."""
    return await make_api(admin_token=ADMIN_TOKEN)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",  # a name that resolves to loopback
        "http://[::1]:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://100.64.0.1/hook",  # CGNAT
        "http://[fd00::1]/hook",  # unique local
        "http://[::ffff:127.0.0.1]/hook",
        "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata service
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo: not global
        "https://user:secret@example.com/hook",  # credentials
        "ftp://example.com/hook",
        "http:///nohost",
        "not a url",
        "https://no-such-host.invalid/hook",
    ],
)
async def test_urls_into_the_network_are_refused(admin_api: Any, url: str) -> None:
    resp = await admin_api.post("/admin/webhooks", json={"url": url}, headers=ADMIN)
    body = await resp.json()
    assert resp.status == 422 and body["code"] == "webhook_url_refused", body
    assert (await (await admin_api.get("/admin/webhooks", headers=ADMIN)).json()) == {
        "webhooks": []
    }


async def test_production_wants_https(make_api: Callable[..., Awaitable[Any]]) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, app_env="production", webhook_allow_private=True)
    resp = await api.post("/admin/webhooks", json={"url": "http://127.0.0.1/x"}, headers=ADMIN)
    assert resp.status == 422 and (await resp.json())["code"] == "webhook_url_refused"
    ok = await api.post("/admin/webhooks", json={"url": "https://127.0.0.1/x"}, headers=ADMIN)
    assert ok.status == 201


async def test_bad_input_to_every_admin_webhook_endpoint(admin_api: Any) -> None:
    api = admin_api
    path = "/admin/webhooks"
    cases: list[tuple[str, str, Any]] = [
        ("POST", path, {"url": 5}),
        ("POST", path, {"url": ""}),
        ("POST", path, {"url": "https://a.example/" + "x" * 3000}),
        ("POST", path, {"url": "http://127.0.0.1/", "events": ["session.exploded"]}),
        ("POST", path, {"url": "http://127.0.0.1/", "events": []}),
        ("POST", path, {"url": "http://127.0.0.1/", "description": "d" * 501}),
        ("POST", path, b"{not json"),
        ("POST", path, b"\xff\xfe"),
        ("POST", path, []),
        ("GET", path + "/ep_0000000000000000", None),
        ("GET", path + "/nonsense", None),
        ("GET", path + "/" + "%ff" * 10, None),
        ("PATCH", path + "/ep_0000000000000000", {"status": "enabled"}),
        ("DELETE", path + "/ep_0000000000000000", None),
        ("POST", path + "/ep_0000000000000000/rotate-secret", None),
        ("GET", path + "/ep_0000000000000000/deliveries", None),
        ("POST", path + "/ep_0000000000000000/replay", {"since": "2024-01-01T00:00:00Z"}),
    ]
    for method, url, body in cases:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        resp = await api.request(method, url, headers=ADMIN, **kwargs)
        assert 400 <= resp.status < 500, (method, url, body, resp.status)
        assert resp.content_type == "application/problem+json", (method, url)
    unauthorized = await api.get(path, headers={"Authorization": "Bearer nope"})
    assert unauthorized.status == 401


async def test_bad_input_to_an_existing_endpoint(
    make_api: Callable[..., Awaitable[Any]],
) -> None:
    api = await make_api(admin_token=ADMIN_TOKEN, webhook_allow_private=True)
    created = await api.post("/admin/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=ADMIN)
    assert created.status == 201
    one = f"/admin/webhooks/{(await created.json())['id']}"
    cases: list[tuple[str, str, Any]] = [
        ("PATCH", one, {"status": "paused"}),
        ("PATCH", one, {"url": "ftp://x/"}),
        ("PATCH", one, {"events": "session.created"}),
        ("PATCH", one, b"\x00"),
        ("GET", one + "/deliveries?limit=0", None),
        ("GET", one + "/deliveries?limit=101", None),
        ("GET", one + "/deliveries?limit=%D9%A1", None),  # an Arabic-Indic digit
        ("GET", one + "/deliveries?limit=9" * 5000, None),
        ("POST", one + "/replay", {"since": "yesterday"}),
        ("POST", one + "/replay", {"since": "2024-01-01T00:00:00"}),  # no offset
        ("POST", one + "/replay", {}),
        ("POST", one + "/replay", b"[[[[" * 3000),
    ]
    for method, url, body in cases:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        resp = await api.request(method, url, headers=ADMIN, **kwargs)
        assert 400 <= resp.status < 500, (method, url, resp.status, await resp.text())
    assert (await api.get(one, headers=ADMIN)).status == 200  # nothing was changed
    listed = await (await api.get("/admin/webhooks", headers=ADMIN)).json()
    assert [w["status"] for w in listed["webhooks"]] == ["enabled"]
    assert (await api.delete(one, headers=ADMIN)).status == 204
    assert (await api.get(one, headers=ADMIN)).status == 404


async def test_the_worker_refuses_a_private_address_at_delivery(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    """The API let the URL in (private allowed there); the worker checks the address it
    connects to, and refuses: the receiver never hears a thing."""
    off = {"WEBHOOK_ALLOW_PRIVATE": "0"}
    with services(redis_url, tmp_path, worker_env=off) as (api_proc, worker):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("private", host="localhost"))
        await api.open("kim")
        path = f"/admin/webhooks/{endpoint['id']}/deliveries"
        found = await wait_for(
            lambda: api.admin("GET", path),
            lambda d: d["deliveries"] and d["deliveries"][0]["state"] == "failed",
            WAIT,
        )
        log = worker.log()
    assert found["deliveries"][0]["attempts"] == 4 and found["deliveries"][0]["last_status"] is None
    assert receiver.at("private") == []
    assert "is not a public address" in log
    assert endpoint["secret"] not in log


async def test_events_past_retention_are_trimmed_whatever_receivers_do(
    single_redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.answers["down"] = statuses(*[(500, {})] * 100)
    env = {"EVENTS_RETENTION": "3", "WEBHOOK_RETRY_SCHEDULE": "0,3600"}
    async with aioredis.from_url(single_redis_url, decode_responses=True) as rdb:
        with services(single_redis_url, tmp_path, **env) as (api_proc, worker):
            api = Api(http, api_proc.url)
            endpoint = await api.webhook(receiver.url("down"))
            await api.open("lee")
            await receiver.until("down", lambda r: len(r) == 1)
            outbox = keys.outbox(keys.slot_of_user("lee"))
            await wait_for(lambda: rdb.xlen(outbox), lambda n: n == 0, WAIT)  # trimmed after ~3 s
            path = f"/admin/webhooks/{endpoint['id']}/replay"
            replayed = await api.admin("POST", path, 202, json={"since": "2020-01-01T00:00:00Z"})
            text = await (await http.get(worker.url + "/metrics")).text()
    assert replayed == {"queued": 0}
    assert "sessionwire_outbox_events 0.0" in text


async def test_an_endpoint_that_keeps_failing_is_disabled(
    single_redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.answers["broken"] = statuses(*[(500, {})] * 1000)
    env = {"WEBHOOK_DISABLE_AFTER": "1", "WEBHOOK_RETRY_SCHEDULE": ",".join(["0.2"] * 20)}
    with services(single_redis_url, tmp_path, **env) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("broken"))
        await api.open("max")
        path = f"/admin/webhooks/{endpoint['id']}"
        found = await wait_for(
            lambda: api.admin("GET", path), lambda e: e["status"] == "disabled", WAIT
        )
    assert found["disabled_reason"] == "failing"
    assert len(receiver.at("broken")) >= 5  # a second of failures, 0.2 s apart


async def open_through(api: Api, username: str, device: str) -> str:
    """Open a session, retrying the 503s of a failover; its id once the API said 200."""
    body = {"username": username, "device_name": device}
    deadline = time.monotonic() + 60
    while True:
        async with api.http.post(api.url + "/admin/sessions", json=body, headers=ADMIN) as resp:
            if resp.status == 200:
                return str((await resp.json())["session"]["session_id"])
            assert resp.status == 503, await resp.text()
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_master_killed_mid_delivery_loses_no_event(
    own_cluster: Any, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    victim, spared, _ = own_cluster.masters()
    names = (f"user{i}" for i in range(5000))
    doomed = [n for n in names if own_cluster.owner_of_slot(keys.slot_of_user(n)) == victim][:4]
    url = f"redis://127.0.0.1:{spared}/0"
    opened: dict[str, list[str]] = {name: [] for name in doomed}  # the API said 200
    with services(url, tmp_path) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("hook"))
        for name in doomed:
            opened[name].append(await open_through(api, name, "before"))
        await receiver.until("hook", lambda r: len(r) >= len(doomed))
        await asyncio.to_thread(own_cluster.kill, victim)  # kill -9

        async def keep_signing_in(name: str) -> None:
            for i in range(3):
                opened[name].append(await open_through(api, name, f"during-{i}"))

        signing_in = asyncio.gather(*(keep_signing_in(name) for name in doomed))
        await asyncio.to_thread(own_cluster.wait_for_failover, victim)
        await asyncio.wait_for(signing_in, 60)
        every = {sid for sids in opened.values() for sid in sids}
        got = await receiver.until("hook", lambda r: every <= session_ids(r, endpoint["secret"]))
    by_user: dict[str, list[str]] = {}
    for r in got:
        data = r.verified(endpoint["secret"])["data"]
        seen = by_user.setdefault(data["username"], [])
        if data["session"]["session_id"] not in seen:
            seen.append(data["session"]["session_id"])
    assert by_user == opened  # none lost, each user's in order
    ids_of: dict[str, set[str]] = {}
    for r in got:  # a message sent twice kept its id
        ids_of.setdefault(
            r.verified(endpoint["secret"])["data"]["session"]["session_id"], set()
        ).add(r.id)
    assert all(len(ids) == 1 for ids in ids_of.values())


def session_ids(got: list[Received], secret: str) -> set[str]:
    return {r.verified(secret)["data"]["session"]["session_id"] for r in got}
