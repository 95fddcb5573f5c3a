"""Rate limiting, trusted proxies, idle timeout, maximum age and last-seen throttling."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from service.sessions import keys
from service.users.directory import UserDirectory
from service.users.passwords import PasswordChecker
from tests.conftest import (
    ENGINES,
    PASSWORD,
    TEST_HASHER,
    EventWatch,
    ManualClock,
    bearer,
    login,
    on_engine,
)


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


MakeApi = Callable[..., Awaitable[TestClient]]


def proxies(*nets: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in nets)


async def attempt(
    api: TestClient, username: str = "alice", password: str = "wrong", xff: str | None = None
) -> tuple[int, dict[str, Any], Any]:
    headers = {"X-Forwarded-For": xff} if xff else {}
    resp = await api.post(
        "/login", json={"username": username, "password": password}, headers=headers
    )
    return resp.status, await resp.json(content_type=None), resp.headers


async def test_failures_per_username_are_limited(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=3, login_failure_window=300)
    for _ in range(3):
        assert (await attempt(api))[0] == 401
    status, body, headers = await attempt(api, password=PASSWORD)  # even the right one
    assert status == 429
    assert body["code"] == "rate_limited"
    assert 250 <= int(headers["Retry-After"]) <= 300
    assert body["retry_after"] == int(headers["Retry-After"])
    assert headers["Content-Type"] == "application/problem+json"
    assert (await attempt(api, "bob", PASSWORD))[0] == 200  # other names are not affected


async def test_the_limit_lifts_when_the_window_passes(
    make_api: MakeApi, clock: ManualClock
) -> None:
    api = await make_api(login_max_failures=2, login_failure_window=60, clock=clock)
    for _ in range(2):
        assert (await attempt(api))[0] == 401
    clock.advance(59)
    status, _, headers = await attempt(api, password=PASSWORD)
    assert status == 429
    assert headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await attempt(api, password=PASSWORD))[0] == 200


async def test_a_burst_of_right_passwords_is_asked_to_retry_not_refused(
    make_api: MakeApi, roomy_passwords: PasswordChecker
) -> None:
    # The limiter's rule, not the hashing queue's (whose caps are tested elsewhere).
    api = await make_api(login_max_failures=3, max_sessions_per_user=50, passwords=roomy_passwords)
    first = await asyncio.gather(*(attempt(api, password=PASSWORD) for _ in range(12)))
    statuses = [status for status, _, _ in first]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 3
    for status, body, headers in first:
        if status == 503:
            assert body["code"] == "busy" and headers["Retry-After"] == "1"
    for _ in range(12 - statuses.count(200)):  # each retried in turn gets in
        assert (await attempt(api, password=PASSWORD))[0] == 200


async def test_successes_are_never_limited(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=1, max_sessions_per_user=50)
    for _ in range(20):
        await login(api)


async def test_a_success_clears_the_usernames_failures(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=3)
    for _ in range(3):
        for _ in range(2):
            assert (await attempt(api))[0] == 401
        assert (await attempt(api, password=PASSWORD))[0] == 200


async def test_failures_per_client_ip_are_limited_at_five_times(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=1, trusted_proxies=proxies("127.0.0.1/32"))
    # Five names, one failure each, from one address: the address is now at 5 x 1.
    for name in ("alice", "bob", "carol", "dave", "erin"):
        assert (await attempt(api, name, xff="203.0.113.9"))[0] == 401
    status, body, _ = await attempt(api, "frank", xff="203.0.113.9")
    assert status == 429
    assert body["code"] == "rate_limited"
    # Another address is not limited by it; carol is still limited by her own count.
    assert (await attempt(api, "frank", xff="198.51.100.7"))[0] == 401
    assert (await attempt(api, "carol", PASSWORD, xff="198.51.100.7"))[0] == 429


async def test_forwarded_for_is_ignored_from_untrusted_peers(api: TestClient) -> None:
    resp = await api.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.5"},
    )
    assert (await resp.json())["session"]["ip"] == "127.0.0.1"


async def test_forwarded_for_is_honoured_from_trusted_proxies(make_api: MakeApi) -> None:
    api = await make_api(trusted_proxies=proxies("127.0.0.0/8", "10.0.0.0/8", "fd00::/8"))
    cases = {
        "203.0.113.5": "203.0.113.5",
        "203.0.113.5, 10.1.2.3": "203.0.113.5",  # the first hop a trusted proxy did not add
        "6.6.6.6, 203.0.113.5, 10.1.2.3": "203.0.113.5",  # a client can't spoof past it
        "not-an-ip": "127.0.0.1",
        "10.0.0.1": "10.0.0.1",
        "2001:db8::1": "2001:db8::1",
        # A hop with a zone id (any text) is not an address: no hop before it is believed.
        "2001:db8::1%eth0": "127.0.0.1",
        "2001:db8::1%X-Evil: 1": "127.0.0.1",
        "203.0.113.5, fd00::1%x": "127.0.0.1",
    }
    for header, expected in cases.items():
        resp = await api.post(
            "/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": header},
        )
        assert (await resp.json())["session"]["ip"] == expected, header


async def test_forwarded_for_spoofing_does_not_dodge_the_ip_limit(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=1)  # no trusted proxies
    for i, name in enumerate(("alice", "bob", "carol", "dave", "erin")):
        assert (await attempt(api, name, xff=f"192.0.2.{i}"))[0] == 401
    assert (await attempt(api, "frank", xff="192.0.2.99"))[0] == 429


async def test_unknown_user_and_wrong_password_cost_the_same(tmp_path: Path) -> None:
    # With real (default) argon2 parameters, as in production.
    path = tmp_path / "users.json"
    real_hash = PasswordHasher().hash(PASSWORD)
    path.write_text(json.dumps({"users": [{"username": "alice", "password_hash": real_hash}]}))
    users, checker = UserDirectory.load(path), PasswordChecker()

    async def cost(username: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert await users.authenticate(username, "wrong", checker) is None
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    try:
        known, unknown = await cost("alice"), await cost("nobody")
    finally:
        checker.close()
    assert 0.33 < unknown / known < 3, (known, unknown)  # loose: CI machines are noisy


async def test_idle_sessions_expire(
    make_api: MakeApi, watch_events: Callable[[str], EventWatch], clock: ManualClock
) -> None:
    api = await make_api(session_idle_timeout=60, clock=clock)
    body = await login(api)
    async with watch_events("alice") as events:
        clock.advance(60)
        resp = await api.get("/me", headers=bearer(body["token"]))
        (event,) = await events.take()
    assert resp.status == 401
    problem = await resp.json(content_type=None)
    assert problem["code"] == "session_revoked"
    assert problem["revoked"]["reason"] == "expired"
    assert problem["revoked"]["by"] is None
    assert event["reason"] == "expired"
    assert event["session_id"] == body["session"]["session_id"]
    assert event["by"] is None


@pytest.mark.parametrize(("idle", "touch"), [(60, 0), (60, 30)])
async def test_activity_keeps_a_session_alive(
    make_api: MakeApi, clock: ManualClock, idle: int, touch: int
) -> None:
    api = await make_api(session_idle_timeout=idle, session_touch_interval=touch, clock=clock)
    body = await login(api)
    for _ in range(8):  # twice the idle timeout in all, each step well inside it
        clock.advance(idle / 4)
        resp = await api.get("/me", headers=bearer(body["token"]))
        assert resp.status == 200


async def test_an_idle_session_is_not_listed_and_has_a_ttl(
    make_api: MakeApi, rdb: aioredis.Redis, clock: ManualClock
) -> None:
    short = await make_api(session_idle_timeout=1, clock=clock)
    idle = await login(short, device_name="Idle")
    sid = idle["session"]["session_id"]
    ttl = await rdb.pttl(keys.session_record("alice", sid))
    assert 0 < ttl <= 1000 + 60_000  # the deadline plus a grace for the sweeper
    api = await make_api(clock=clock)
    active = await login(api, device_name="Active")
    clock.advance(1)
    resp = await api.get("/sessions", headers=bearer(active["token"]))
    names = [s["device_name"] for s in (await resp.json())["sessions"]]
    assert names == ["Active"]


async def test_sessions_end_at_their_maximum_age(make_api: MakeApi, clock: ManualClock) -> None:
    api = await make_api(session_max_age=120, session_idle_timeout=3600, clock=clock)
    body = await login(api)
    created = datetime.fromisoformat(body["session"]["created_at"])
    assert (datetime.fromisoformat(body["expires_at"]) - created).total_seconds() == 120
    assert datetime.fromisoformat(body["session"]["expires_at"]) == datetime.fromisoformat(
        body["expires_at"]
    )
    clock.advance(119)
    assert (await api.get("/me", headers=bearer(body["token"]))).status == 200
    clock.advance(1)
    resp = await api.get("/me", headers=bearer(body["token"]))
    problem = await resp.json(content_type=None)
    assert resp.status == 401
    assert problem["code"] == "token_expired"


async def test_last_seen_is_written_at_most_once_per_interval(
    make_api: MakeApi, rdb: aioredis.Redis, clock: ManualClock
) -> None:
    api = await make_api(session_touch_interval=60, clock=clock)
    body = await login(api)
    record = keys.session_record("alice", body["session"]["session_id"])
    seen_before = await rdb.hget(record, "seen_ms")
    for _ in range(5):
        clock.advance(11)
        me = await (await api.get("/me", headers=bearer(body["token"]))).json()
        assert me["session"]["last_seen_at"] == body["session"]["last_seen_at"]
    assert await rdb.hget(record, "seen_ms") == seen_before


async def test_last_seen_advances_after_the_interval(make_api: MakeApi, clock: ManualClock) -> None:
    api = await make_api(session_touch_interval=60, clock=clock)
    body = await login(api)
    first = datetime.fromisoformat(body["session"]["last_seen_at"])
    clock.advance(60)
    me = await (await api.get("/me", headers=bearer(body["token"]))).json()
    assert (datetime.fromisoformat(me["session"]["last_seen_at"]) - first).total_seconds() == 60
    listed = await (await api.get("/sessions", headers=bearer(body["token"]))).json()
    assert listed["sessions"][0]["last_seen_at"] == me["session"]["last_seen_at"]


async def test_concurrent_guesses_get_no_more_answers_than_the_limit(
    make_api: MakeApi, roomy_passwords: PasswordChecker
) -> None:
    api = await make_api(login_max_failures=3, passwords=roomy_passwords)
    guesses = [f"guess-{i}" for i in range(40)]
    results = await asyncio.gather(*(attempt(api, "alice", guess) for guess in guesses))
    statuses = [status for status, _, _ in results]
    # Three guesses are checked; the rest learn nothing: refused (429) while the window
    # is spent, or told to retry (503) while the three are still being checked.
    assert statuses.count(401) == 3
    assert set(statuses) - {401} <= {429, 503}
    assert (await attempt(api, "alice", PASSWORD))[0] == 429


async def test_a_burst_of_guesses_never_holds_up_another_clients_sign_in(
    make_api: MakeApi, tmp_path: Path
) -> None:
    """150 concurrent wrong passwords from one address, with real argon2 parameters."""
    path = tmp_path / "users.json"
    real_hash = PasswordHasher().hash(PASSWORD)
    path.write_text(json.dumps({"users": [{"username": "alice", "password_hash": real_hash}]}))
    api = await make_api(users=UserDirectory.load(path), trusted_proxies=proxies("127.0.0.1/32"))
    started = time.perf_counter()
    assert (await attempt(api, "alice", PASSWORD, xff="198.51.100.7"))[0] == 200
    alone = time.perf_counter() - started  # one sign-in, one real hash, on this machine now
    names = [f"user{i}" for i in range(150)]  # many names: only the IP's budget applies
    burst = [asyncio.create_task(attempt(api, name, xff="203.0.113.9")) for name in names]
    await asyncio.sleep(0)  # let the burst reach the server first
    started = time.perf_counter()
    status, body, _ = await attempt(api, "alice", PASSWORD, xff="198.51.100.7")
    waited = time.perf_counter() - started
    results = await asyncio.gather(*burst)
    assert status == 200, body
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {401, 429, 503}
    # The burst hashed no more than the address's budget (5 x LOGIN_MAX_FAILURES) ...
    assert statuses.count(401) <= 25, statuses.count(401)
    # ... and the right password from elsewhere waited behind at most a few of them.
    # Relative to one sign-in alone, as machines differ: behind a few checks, never all 25
    # the address may make (with an unbounded queue it waited ~25 times as long).
    assert waited < 8 * alone + 0.25, (waited, alone)


async def test_a_known_device_signs_in_while_its_user_is_locked_out(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=3, trusted_proxies=proxies("127.0.0.1/32"))
    device_token = (await login(api))["device_token"]
    for _ in range(3):  # a guesser elsewhere locks the username
        assert (await attempt(api, xff="203.0.113.9"))[0] == 401
    assert (await attempt(api, password=PASSWORD, xff="198.51.100.7"))[0] == 429
    status, body, _ = await device_attempt(api, PASSWORD, device_token)
    assert status == 200, body
    assert body["device_token"]  # renewed: keep the newest


async def test_a_known_device_has_a_budget_of_its_own(make_api: MakeApi) -> None:
    api = await make_api(login_max_failures=3)
    device_token = (await login(api))["device_token"]
    for _ in range(3):
        assert (await device_attempt(api, "wrong", device_token))[0] == 401
    assert (await device_attempt(api, PASSWORD, device_token))[0] == 429
    assert (await attempt(api, password=PASSWORD))[0] == 200  # the username's is untouched


@pytest.mark.parametrize("kind", ["another user's", "a session token", "garbage", "tampered"])
async def test_other_device_tokens_count_as_none(make_api: MakeApi, kind: str) -> None:
    api = await make_api(login_max_failures=2)
    alices = await login(api)
    token = {
        "another user's": (await login(api, "bob"))["device_token"],
        "a session token": alices["token"],
        "garbage": "not.a.token",
        "tampered": alices["device_token"][:-2] + "xx",
    }[kind]
    for _ in range(2):
        assert (await attempt(api))[0] == 401
    assert (await device_attempt(api, PASSWORD, token))[0] == 429


async def test_a_device_token_is_no_session_token(api: TestClient) -> None:
    device_token = (await login(api))["device_token"]
    resp = await api.get("/me", headers=bearer(device_token))
    assert resp.status == 401


async def test_device_tokens_expire(make_api: MakeApi, clock: ManualClock) -> None:
    api = await make_api(login_max_failures=1, clock=clock)
    device_token = (await login(api))["device_token"]
    clock.advance(180 * 24 * 3600)
    assert (await attempt(api))[0] == 401
    assert (await device_attempt(api, PASSWORD, device_token))[0] == 429


async def device_attempt(
    api: TestClient, password: str, device_token: str
) -> tuple[int, dict[str, Any], Any]:
    resp = await api.post(
        "/login",
        json={"username": "alice", "password": password, "device_token": device_token},
    )
    return resp.status, await resp.json(content_type=None), resp.headers


async def rate_limit_keys(rdb: aioredis.Redis) -> list[str]:
    # The counters' names (keys.py): `sw:rl:...` per client, `sw:{u:<name>}:rl...` per user
    # (never `*rl*`: a random session id holds "rl" now and then).
    found = []
    for pattern in ("sw:rl:*", "sw:*}:rl*"):
        found += [key async for key in rdb.scan_iter(match=pattern, count=1000)]
    return found


async def test_a_busy_burst_of_new_names_leaves_no_keys_for_free(
    make_api: MakeApi, rdb: aioredis.Redis
) -> None:
    # A hashing queue that turns most of the burst away: those attempts test nothing, so
    # they must leave nothing in Redis (they left one username counter each: 300 attempts
    # made 308 keys, none of which spent the address's budget).
    checker = PasswordChecker(TEST_HASHER, threads=1, max_waiting=2, max_waiting_per_client=2)
    api = await make_api(passwords=checker)  # 5 per username, 25 per address
    try:
        results = await asyncio.gather(*(attempt(api, f"new-{i}") for i in range(300)))
    finally:
        checker.close()
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {401, 429, 503} and 503 in statuses
    # What is left: the address's counter, and one per name that really failed (each
    # spent the address's budget, so at most 25 of them per window).
    left = await rate_limit_keys(rdb)
    assert len(left) <= 1 + min(statuses.count(401), 25), left
    assert len(left) == 1 + statuses.count(401)


async def test_successes_and_refusals_leave_no_counters(
    make_api: MakeApi, rdb: aioredis.Redis
) -> None:
    api = await make_api(login_max_failures=2)
    for _ in range(3):
        await login(api)
    assert await rate_limit_keys(rdb) == []
    for _ in range(2):
        assert (await attempt(api, "bob"))[0] == 401
    assert (await attempt(api, "bob"))[0] == 429
    assert (await attempt(api, "alice", PASSWORD))[0] == 200
    assert sorted(await rate_limit_keys(rdb)) == sorted(
        [keys.login_failures_by_ip("127.0.0.1"), keys.login_failures_by_user("bob")]
    )


async def test_an_ipv6_slash_64_is_one_client(make_api: MakeApi, rdb: aioredis.Redis) -> None:
    api = await make_api(login_max_failures=1, trusted_proxies=proxies("127.0.0.1/32"))
    for i in range(5):  # five addresses of one /64, five names: the /64's budget is spent
        assert (await attempt(api, f"name{i}", xff=f"2001:db8:1:2::{i + 1}"))[0] == 401
    assert (await attempt(api, "other", xff="2001:db8:1:2:ffff:ffff:ffff:ffff"))[0] == 429
    assert (await attempt(api, "other", xff="2001:db8:1:3::1"))[0] == 401  # the next /64
    assert (await attempt(api, "more", xff="::ffff:203.0.113.9"))[0] == 401  # IPv4, mapped
    ip_keys = sorted(k for k in await rate_limit_keys(rdb) if k.startswith("sw:rl:ip:"))
    assert ip_keys == [
        "sw:rl:ip:2001:db8:1:2::/64",
        "sw:rl:ip:2001:db8:1:3::/64",
        "sw:rl:ip:203.0.113.9",
    ]


async def test_known_devices_failures_are_bounded_per_client(make_api: MakeApi) -> None:
    # Each success mints a device token, and a device's budget is its own; yet all the
    # devices of one client share one budget for their failures (5 x the user limit).
    api = await make_api(login_max_failures=1, max_sessions_per_user=50)
    tokens = [(await login(api))["device_token"] for _ in range(6)]
    for token in tokens[:5]:
        assert (await device_attempt(api, "wrong", token))[0] == 401
    assert (await device_attempt(api, "wrong", tokens[5]))[0] == 429
    assert (await attempt(api, "bob", PASSWORD))[0] == 200  # other sign-ins are not held up
