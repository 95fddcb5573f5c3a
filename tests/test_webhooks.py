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
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.sessions import keys
from tests.conftest import ENGINES, PASSWORD, on_engine
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
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass
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


async def test_every_event_reaches_the_endpoint_signed_and_in_order(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    with services(redis_url, tmp_path) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("hook"), description="audit")
        assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
        assert endpoint["events"] == ["session.created", "session.revoked"]
        laptop = await api.login("alice", "laptop")
        phone = await api.login("alice", "phone")
        auth = {"Authorization": f"Bearer {phone['token']}"}
        await api.call("DELETE", f"/sessions/{laptop['session']['session_id']}", headers=auth)
        await api.admin(
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
            "last_seen_at", "expires_at",
        }  # fmt: skip
        revoked = messages[2]["data"]
        assert revoked["session_id"] == laptop["session"]["session_id"]
        assert revoked["by"]["session_id"] == phone["session"]["session_id"]
        assert revoked["by"]["device_name"] == "phone" and revoked["at"].endswith("Z")
        assert messages[3]["data"]["by"] is None
        assert messages[3]["timestamp"] == messages[3]["data"]["at"]
        assert len({r.id for r in got}) == 4  # one id per event
        # The delivery log says so too.
        deliveries = await api.admin("GET", f"/admin/webhooks/{endpoint['id']}/deliveries")
        states = {d["message_id"]: d["state"] for d in deliveries["deliveries"]}
        assert states == {r.id: "delivered" for r in got}


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


async def test_an_outage_with_retry_after_then_every_message_in_order(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.answers["flaky"] = statuses(
        (500, {}),  # the schedule's next delay: 0.05 s
        (429, {"Retry-After": "3600"}),  # capped at the schedule's longest: 1.2 s
        (503, {"Retry-After": "1"}),  # replaces the schedule's 0.1 s
    )
    schedule = "0,0.05,1.2,0.1"
    with services(redis_url, tmp_path, WEBHOOK_RETRY_SCHEDULE=schedule) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("flaky"))
        sessions = [(await api.open("dave", f"device-{i}"))["session"] for i in range(5)]
        got = await receiver.until("flaky", lambda r: len(first_seen(r)) == 5 and len(r) >= 8)
        deliveries = await api.admin("GET", f"/admin/webhooks/{endpoint['id']}/deliveries")
    messages = {r.id: r.verified(endpoint["secret"]) for r in got}
    order = [messages[i]["data"]["session"]["session_id"] for i in first_seen(got)]
    assert order == [s["session_id"] for s in sessions]  # one user's events, in order
    head = got[0].id
    assert [r.id for r in got[:4]] == [head] * 4  # the first held the others back
    assert len(got) == 8  # and each later one went once
    gaps = [b.at - a.at for a, b in zip(got[:3], got[1:4], strict=True)]
    assert gaps[1] < 5  # Retry-After 3600 was capped
    assert gaps[2] >= 0.9  # Retry-After 1 replaced the schedule's 0.1 s
    # Each attempt was signed afresh (its own timestamp), under the same id.
    assert len({r.headers["webhook-timestamp"] for r in got[:4]}) >= 2
    [first] = [d for d in deliveries["deliveries"] if d["message_id"] == head]
    assert first["state"] == "delivered" and first["attempts"] == 4


async def metric_sum(worker: Process, http: aiohttp.ClientSession, name: str) -> float:
    async with http.get(worker.url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def until(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + WAIT
    while not done(value := await read()):
        assert time.monotonic() < deadline, f"still {value!r}"
        await asyncio.sleep(0.05)
    return value


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
            await until(
                lambda: asyncio.gather(*(metric_sum(w, http, shards) for w in (first, second))),
                lambda held: sum(held) == 16 and min(held) > 0,
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
            await until(lambda: metric_sum(idle, http, shards), lambda held: held == 16)
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


async def test_a_hanging_endpoint_never_delays_a_healthy_one(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def hang(got: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.answers["hang"] = hang
    with services(redis_url, tmp_path) as (api_proc, _):
        api = Api(http, api_proc.url)
        hanging = await api.webhook(receiver.url("hang"))
        healthy = await api.webhook(receiver.url("ok"))
        users = [f"user{i}" for i in range(40)]  # more users than one endpoint's 32 at once
        for user in users:
            await api.open(user)
        got = await receiver.until("ok", lambda r: len(r) == len(users))
        assert len(receiver.at("hang")) <= 32  # the hanging one holds only its own share
        release.set()
        late = await receiver.until("hang", lambda r: len(first_seen(r)) == len(users))
    assert {r.verified(healthy["secret"])["data"]["username"] for r in got} == set(users)
    assert {r.verified(hanging["secret"])["data"]["username"] for r in late} == set(users)


async def test_410_disables_the_endpoint_and_enabling_resumes_where_it_stopped(
    redis_url: str, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.answers["gone"] = statuses((410, {}))
    with services(redis_url, tmp_path) as (api_proc, _):
        api = Api(http, api_proc.url)
        endpoint = await api.webhook(receiver.url("gone"))
        path = f"/admin/webhooks/{endpoint['id']}"
        await api.open("fay", "one")
        [refused] = await receiver.until("gone", lambda r: len(r) == 1)
        found = await until(lambda: api.admin("GET", path), lambda e: e["status"] == "disabled")
        assert found["disabled_reason"] == "gone"
        assert found["last_delivery"]["last_status"] == 410
        await api.open("fay", "two")  # held while disabled
        changed = await api.admin("PATCH", path, json={"status": "enabled"})
        assert changed["status"] == "enabled" and changed["disabled_reason"] is None
        got = await receiver.until("gone", lambda r: len(first_seen(r)) == 2)
    assert got[1].id == refused.id  # the refused message first, then the held one
    devices = [r.verified(endpoint["secret"])["data"]["session"]["device_name"] for r in got]
    assert devices == ["one", "one", "two"]


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
        first = await receiver.until("hook", lambda r: len(r) == 3)
        new = (await api.admin("POST", path + "/rotate-secret"))["secret"]
        assert new.startswith("whsec_") and new != endpoint["secret"]
        # Workers pick the new secret up within a second (they reload endpoints): sign in
        # until a message carries it. Both secrets sign it, for a day.
        for n in itertools.count():
            await api.open(name := f"jay{n}")
            old = endpoint["secret"]
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
