"""`bash scripts/run` itself: the environment beats .env, and a second copy is one line.

The repository's .env names PORT=8000 and GATEWAY_PORT=8001; these tests set both to free
ports in the environment, which must win.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import PASSWORD, ROOT, free_port
from tests.devices import Device
from tests.processes import process_env

START_WAIT = 90  # the first run may install the `run` extra into .venv


class Run:
    """`bash scripts/run` in a process group of its own, with its output in a file."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.api, self.gateway = int(env["PORT"]), int(env["GATEWAY_PORT"])
        self.log_path = tmp / f"run-{self.api}-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "scripts/run"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, stopped as one
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_WAIT
        for port in (self.api, self.gateway):
            while not answers(port):
                assert self.proc.poll() is None, f"scripts/run ended:\n{self.log()}"
                assert time.monotonic() < deadline, f"nothing on {port}:\n{self.log()}"
                time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


def run_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = process_env(redis_url, PORT=str(free_port()), GATEWAY_PORT=str(free_port()), **extra)
    env.pop("RUN_PORT", None)
    return env


@contextmanager
def running_script(tmp: Path, env: dict[str, str]) -> Iterator[Run]:
    run = Run(tmp, env)
    try:
        run.wait_until_serving()
        yield run
    finally:
        run.stop()


async def connect_from(run: Run, origin: str) -> None:
    """Sign in, then open the socket as a page of `origin` would (and close it)."""
    async with aiohttp.ClientSession() as http:
        body = {"username": "alice", "password": PASSWORD}
        async with http.post(f"http://127.0.0.1:{run.api}/login", json=body) as resp:
            token = (await resp.json())["token"]
        url = f"ws://127.0.0.1:{run.gateway}/ws"
        device = await Device.connect(http, url, token, origin=origin)
        await device.ready()
        await device.ws.close()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.json()


async def test_the_environment_beats_dotenv(tmp_path: Path, redis_url: str) -> None:
    assert "PORT=8000" in (ROOT / ".env").read_text()  # what the environment overrides
    with running_script(tmp_path, run_env(redis_url)) as run:
        config = await get_json(f"http://127.0.0.1:{run.api}/config")
        assert config["gateway_url"] == f"ws://127.0.0.1:{run.gateway}/ws"
        # The worker knows the page's port: the page's origin may open the socket.
        await connect_from(run, f"http://127.0.0.1:{run.api}")
        await connect_from(run, f"http://localhost:{run.api}")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect_from(run, "http://127.0.0.1:8000")
        assert refused.value.status == 403
    assert "Traceback" not in run.log()


async def test_allowed_origins_from_the_environment_are_used(
    tmp_path: Path, redis_url: str
) -> None:
    env = run_env(redis_url, ALLOWED_ORIGINS="https://app.example")
    with running_script(tmp_path, env) as run:
        await connect_from(run, "https://app.example")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect_from(run, f"http://127.0.0.1:{run.api}")
        assert refused.value.status == 403


def test_a_second_copy_says_the_port_is_in_use(tmp_path: Path, redis_url: str) -> None:
    env = run_env(redis_url, WEB_CONCURRENCY="2")
    with running_script(tmp_path, env):
        second = Run(tmp_path, env)
        status = second.proc.wait(timeout=60)
        output = second.log()
    assert status != 0
    assert "Traceback" not in output
    busy = [line for line in output.splitlines() if "is in use" in line]
    assert busy, output
    assert any(f"port {port} is in use" in busy[0] for port in (second.api, second.gateway))
    assert "listening" not in output
