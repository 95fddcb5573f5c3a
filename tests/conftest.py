"""Shared fixtures: a private redis-server per test run, settings, processes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from service.api.app import create_app
from service.clock import SYSTEM_CLOCK, Clock
from service.engine.connect import connected
from service.engine.factory import engine_for
from service.engine.pubsub import ShardConnection
from service.sessions import keys
from service.settings import Settings
from service.users.directory import UserDirectory
from service.users.passwords import PasswordChecker

# The fixture modules' own asserts are rewritten too (their failures explain themselves).
pytest.register_assert_rewrite("tests.rediscluster")
from tests.rediscluster import (  # noqa: E402  (fixtures, registered by being imported)
    LocalCluster,
    cluster_url,
    free_port,
    make_cluster,
    own_cluster,
    redis_cluster,
    spare_clusters,
)

__all__ = [
    "cluster_url",
    "free_port",
    "make_cluster",
    "own_cluster",
    "redis_cluster",
    "spare_clusters",
]

ROOT = Path(__file__).resolve().parent.parent
# The engines a test module can run on, by overriding `redis_url` (see `on_engine`).
ENGINES = ("single", "cluster")
TEST_SECRET = "test-secret-" + "x" * 40
# The development SSF signing key tests use (generated once, out of the checkout).
TEST_DEV_DIR = Path(tempfile.gettempdir()) / "sessionwire-tests"
TEST_SSF_KEY_FILE = TEST_DEV_DIR / "dev-ssf-key.pem"


def wait_until(condition: Callable[[], object], limit: float, what: str) -> None:
    """Poll `condition` until it holds (for state a process changes without telling us)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


async def wait_ready(client: Any, limit: float = 15) -> None:
    """Wait for a test client's app (the API's or the worker's) to answer /readyz 200."""
    deadline = time.monotonic() + limit
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, f"not ready again within {limit}s"
        await asyncio.sleep(0.05)


class RedisServer:
    """A redis-server of our own on a free port, which a test may stop and start again."""

    def __init__(self) -> None:
        if not shutil.which("redis-server"):
            pytest.fail("redis-server is not installed (bash .ci/run installs it)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sw-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def flush(self) -> None:
        with redis.Redis(port=self.port) as client:
            client.flushall()

    def emptied_url(self) -> str:
        """Its URL, running again (a test may have stopped it) and emptied."""
        if self.proc is None:
            self.start()
        self.flush()
        return self.url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole run; each test starts from an empty one."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def single_redis_url(redis_server: RedisServer) -> str:
    """The run's redis-server, emptied for this test."""
    return redis_server.emptied_url()


@pytest.fixture
def redis_url(single_redis_url: str) -> str:
    """The Redis a test runs on: one server, unless its module runs on both engines:

    @pytest.fixture(params=ENGINES)
    def redis_url(request: pytest.FixtureRequest) -> str:
        return on_engine(request)
    """
    return single_redis_url


def on_engine(request: pytest.FixtureRequest) -> str:
    """The emptied URL of the engine named by the fixture's param: one server or a cluster."""
    name = "single_redis_url" if request.param == "single" else "cluster_url"
    return str(request.getfixturevalue(name))


def shared_engine(request: pytest.FixtureRequest) -> str:
    """As `on_engine`, for a fixture of a wider scope (a class's processes): the run's
    server or cluster, emptied now, once for all the fixture's tests."""
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.emptied_url()
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    return cluster.emptied_url()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test alone, for tests that stop and restart it."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class ManualClock:
    """A clock the test moves: expiry is tested by advancing it, never by sleeping.

    It starts at the real time, because Redis's own clock sets the keys' TTLs.
    """

    def __init__(self) -> None:
        self.now = SYSTEM_CLOCK.now_ms()

    def now_ms(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1000)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


PASSWORD = "correct horse"
TEST_USERS = ("alice", "bob", "carol")
# Cheap to verify, so tests can sign in hundreds of times; the test settings hash with
# them too (PASSWORD_HASH_*), so no sign-in "upgrades" the shared test users file.
TEST_HASHING = {
    "password_hash_time_cost": 1,
    "password_hash_memory_cost": 8,
    "password_hash_parallelism": 1,
}
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def write_users(users: list[dict[str, Any]], password: str) -> Path:
    """A users file whose hashes (all of `password`) are TEST_HASHER's."""
    hashed = [{**user, "password_hash": TEST_HASHER.hash(password)} for user in users]
    path = Path(tempfile.mkdtemp(prefix="sw-users-")) / "users.json"
    path.write_text(json.dumps({"users": hashed}))
    return path


TEST_USERS_FILE = write_users(
    [
        {"username": name, "email": f"{name}@example.com", "bio": f"{name} tests things"}
        for name in TEST_USERS
    ],
    PASSWORD,
)


def make_settings(redis_url: str, **overrides: object) -> Settings:
    """Settings for a test: its own Redis, a fixed secret, cheap test users."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "jwt_secret": TEST_SECRET,
        "jwt_secret_generated": False,
        "app_env": "test",
        "users_file": str(TEST_USERS_FILE),
        "session_touch_interval": 0,
        "ssf_dev_key_file": str(TEST_SSF_KEY_FILE),
        **TEST_HASHING,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


# --- API test helpers (tests/test_api_*.py) ---

FIREFOX_UA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


@pytest.fixture(scope="session")
def shared_users() -> UserDirectory:
    """The test users, loaded once: building the dummy hash costs a real argon2 run."""
    return UserDirectory.load(TEST_USERS_FILE)


@pytest.fixture
def make_api(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
    redis_url: str,
    shared_users: UserDirectory,
) -> Callable[..., Awaitable[TestClient]]:
    """Start the API with settings overrides (on the per-test Redis unless `url` is given)."""

    async def make(
        *,
        url: str | None = None,
        users: UserDirectory | None = None,
        clock: Clock = SYSTEM_CLOCK,
        passwords: PasswordChecker | None = None,
        **overrides: object,
    ) -> TestClient:
        settings = make_settings(url or redis_url, **overrides)
        app = create_app(settings, users=users or shared_users, clock=clock, passwords=passwords)
        return await aiohttp_client(app)

    return make


@pytest.fixture
def roomy_passwords() -> Iterator[PasswordChecker]:
    """A hashing queue long enough for every concurrent sign-in of a test that races
    something else (the store, Redis's connections): pass it to make_api as `passwords`.
    Its hashes are TEST_HASHER's."""
    checker = PasswordChecker(TEST_HASHER, max_waiting=1000, max_waiting_per_client=1000)
    yield checker
    checker.close()


@pytest.fixture
async def api(make_api: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """The API with the test settings."""
    return await make_api()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(
    client: TestClient | aiohttp.ClientSession,
    username: str = "alice",
    password: str = PASSWORD,
    *,
    url: str = "",
    status: int = 200,
    user_agent: str = FIREFOX_UA,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> dict[str, Any]:
    """POST /login and return the answer, which must have `status` (200 by default).

    `client` is a test client of the API, or an HTTP session and the `url` of a running
    API (a process, or nginx in front of one).
    """
    async with client.post(
        f"{url}/login",
        json={"username": username, "password": password, **fields},
        headers={"User-Agent": user_agent, **(headers or {})},
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, body
    return body  # type: ignore[no-any-return]


@pytest.fixture
async def rdb(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the per-test Redis (a cluster client on a cluster), for looking at what
    the API stored."""
    async with connected(make_settings(redis_url)) as client:
        yield client  # type: ignore[misc]


class EventWatch:
    """One user's session events, read from the event log and the user's shard channel."""

    def __init__(self, client: aioredis.Redis, username: str) -> None:
        self.client, self.username = client, username
        self.channel = keys.channel(username)
        engine = engine_for(client)
        self.feed = ShardConnection(engine, engine.node_of(self.channel))
        self.mark = "0-0"

    async def __aenter__(self) -> EventWatch:
        await self.feed.open()
        await self.feed.subscribe([self.channel])
        confirm = await self.feed.read(5)
        assert confirm and confirm.kind == "ssubscribe"
        last = await self.client.xrevrange(keys.event_log(self.username), count=1)
        self.mark = last[0][0] if last else "0-0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.feed.close()

    async def take(self) -> list[dict[str, Any]]:
        """The events since the last take; the channel must carry exactly the logged ones."""
        entries = await self.client.xrange(keys.event_log(self.username), min=f"({self.mark}")
        if entries:
            self.mark = entries[-1][0]
        published = []
        for _ in entries:
            message = await self.feed.read(5)
            assert message is not None, "an event was logged but not published"
            assert message.kind == "smessage" and message.channel == self.channel
            published.append(json.loads(message.data))
        assert [e["id"] for e in published] == [entry_id for entry_id, _ in entries]
        for event, (_, fields) in zip(published, entries, strict=True):
            assert {k: v for k, v in event.items() if k != "id"} == json.loads(fields["e"])
        return published


@pytest.fixture
def watch_events(rdb: aioredis.Redis) -> Callable[[str], EventWatch]:
    """`async with watch_events("alice") as events: ...; await events.take()`."""
    return lambda username: EventWatch(rdb, username)
