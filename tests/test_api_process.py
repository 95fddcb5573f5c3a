"""`python -m service` as a process: embedded Redis, waiting for Redis, bad configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from service.engine.devredis import answers
from tests.conftest import PASSWORD, ROOT, RedisServer, free_port, wait_until
from tests.processes import Process, process_env, running


def call(url: str, path: str, body: object = None, token: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def embedded_env(**extra: str) -> dict[str, str]:
    """No REDIS_URL and a free DEV_REDIS_PORT, so the process starts a Redis of its own."""
    env = process_env("", DEV_REDIS_PORT=str(free_port()), **extra)
    del env["REDIS_URL"]
    return env


def sign_in_and_me(url: str) -> None:
    login = call(url, "/login", {"username": "alice", "password": PASSWORD})
    me = call(url, "/me", token=login["token"])
    assert me["username"] == "alice"
    assert me["session"]["session_id"] == login["session"]["session_id"]


def test_embedded_redis_server_when_none_is_configured(tmp_path: Path) -> None:
    env = embedded_env(PORT=str(free_port()))
    port = int(env["DEV_REDIS_PORT"])
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    proc.start(wait_for="/readyz")
    try:
        assert "started an embedded redis-server" in proc.log()
        assert answers("127.0.0.1", port)
        sign_in_and_me(proc.url)
    finally:
        assert proc.stop() == 0
    assert not answers("127.0.0.1", port), "the embedded redis-server outlived the API"


def test_embedded_fakeredis_without_redis_server_on_path(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = embedded_env(PORT=str(free_port()), PATH=str(empty_bin))
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    proc.start(wait_for="/readyz")
    try:
        log = proc.log()
        assert "fakeredis" in log
        assert "redis-server (" not in log
        sign_in_and_me(proc.url)
    finally:
        proc.stop()


def test_waits_for_a_redis_that_comes_up_later(tmp_path: Path) -> None:
    server = RedisServer()  # a free port, nothing listening yet
    env = process_env(server.url, PORT=str(free_port()))
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    errors: list[BaseException] = []

    def start_redis_once_retrying() -> None:
        try:
            wait_until(lambda: "(try 2:" in proc.log(), 20, "no retry was logged")
            server.start()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    starter = threading.Thread(target=start_redis_once_retrying)
    starter.start()
    try:
        proc.start(wait_for="/readyz", timeout=30)
        starter.join()
        assert not errors
        log = proc.log()
        assert "not answering (try 1:" in log
        assert "connected to Redis" in log
        sign_in_and_me(proc.url)
    finally:
        starter.join()
        proc.stop()
        server.stop()


def run_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "eighty", "PORT="),
        ("SESSION_IDLE_TIMEOUT", "0", "SESSION_IDLE_TIMEOUT="),
        ("REDIS_URL", "localhost:6379", "REDIS_URL="),
        ("USERS_FILE", "/no/such/users.json", "USERS_FILE="),
        ("JWT_SECRET", "", "JWT_SECRET is required"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_line(name: str, value: str, expected: str) -> None:
    env = process_env("redis://127.0.0.1:1/0", PORT=str(free_port()), APP_ENV="production")
    env[name] = value
    done = run_service(env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_a_secret_is_generated_in_development(tmp_path: Path) -> None:
    env = embedded_env(PORT=str(free_port()), APP_ENV="development")
    env.pop("JWT_SECRET")
    env["DEV_SECRET_FILE"] = str(tmp_path / "secret")
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    proc.start(wait_for="/readyz")
    try:
        assert "JWT_SECRET is not set" in proc.log()
        secret = (tmp_path / "secret").read_text().strip()
        assert len(secret) >= 32
        assert secret not in proc.log()
        sign_in_and_me(proc.url)
    finally:
        proc.stop()


def test_no_password_reaches_the_log(tmp_path: Path, redis_url: str) -> None:
    admin_token = "an-admin-token-" + "z" * 32
    env = process_env(redis_url, PORT=str(free_port()), LOG_LEVEL="DEBUG", ADMIN_TOKEN=admin_token)
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    proc.start(wait_for="/readyz")
    try:
        sign_in_and_me(proc.url)
        with pytest.raises(urllib.error.HTTPError):
            call(proc.url, "/login", {"username": "alice", "password": "a-wrong-one"})
    finally:
        proc.stop()
    log = proc.log()
    assert "failed sign-in" in log
    assert PASSWORD not in log
    assert "a-wrong-one" not in log
    assert "$argon2" not in log
    assert os.environ.get("JWT_SECRET", "\x00") not in log
    assert "the admin API is on" in log  # said at start, without its token
    assert admin_token not in log
    assert log.count("connected to Redis at redis://127.0.0.1:") == 1


@pytest.mark.parametrize(("event_loop", "seen"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_event_loop_can_be_chosen(
    tmp_path: Path, redis_url: str, event_loop: str, seen: str
) -> None:
    with running("service", redis_url, tmp_path, EVENT_LOOP=event_loop) as api:
        sign_in_and_me(api.url)
        assert f"API runs on {seen}" in api.log()
