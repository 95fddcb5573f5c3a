"""Events out through real processes: the API and the worker, a webhook receiver on
loopback, on one Redis and on the 3+3 cluster. Every message the receiver gets is checked
with the Standard Webhooks reference library (`standardwebhooks`), never with our code.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.engine.connect import connected
from service.sessions import keys
from tests.conftest import ENGINES, PASSWORD, make_settings, on_engine
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
