"""What operators rely on, with real processes: /metrics counts every process, metrics on a
port of their own, one log line per ended session, JSON logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ManualClock, bearer, free_port, login, wait_until
from tests.devices import Device
from tests.processes import Process, running

MakeApi = Callable[..., Awaitable[TestClient]]


async def fresh_get(url: str) -> tuple[int, str]:
    """One GET on a connection of its own (SO_REUSEPORT spreads connections, not requests)."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


def value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in:\n{text}")


async def both_answer(supervised: Process) -> None:
    """Once the supervisor says both children listen, both answer (on fresh connections)."""
    wait_until(lambda: "(2 processes: " in supervised.log(), 20, "two processes listening")
    url = f"{supervised.url}/healthz"
    answered = {json.loads((await fresh_get(url))[1])["pid"] for _ in range(30)}
    assert len(answered) == 2, answered


async def sign_in(api: Process) -> Any:
    """Alice signs in to a running API on a connection of her own."""
    async with aiohttp.ClientSession() as http:
        return await login(http, url=api.url)


async def test_api_metrics_count_every_process_and_can_have_their_own_port(
    redis_url: str, tmp_path: Path
) -> None:
    metrics_port = free_port()
    with running(
        "service", redis_url, tmp_path, WEB_CONCURRENCY="2", METRICS_PORT=str(metrics_port)
    ) as api:
        await both_answer(api)
        for _ in range(12):  # each on a connection of its own: both processes sign in
            await sign_in(api)
        assert (await fresh_get(f"{api.url}/metrics"))[0] == 404  # off the public port
        for _ in range(6):  # whichever process answers the scrape counts them all
            status, text = await fresh_get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            assert value(text, 'sessionwire_logins_total{outcome="success"}') == 12


async def test_gateway_metrics_count_every_process(redis_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    with (
        running("service", redis_url, tmp_path) as api,
        running(
            "workers",
            redis_url,
            tmp_path,
            GATEWAY_CONCURRENCY="2",
            GATEWAY_METRICS_PORT=str(metrics_port),
        ) as worker,
    ):
        await both_answer(worker)
        assert (await fresh_get(f"{worker.url}/metrics"))[0] == 404
        sessions = [aiohttp.ClientSession() for _ in range(6)]
        devices = []
        try:
            for http in sessions:  # a connection each, spread over both processes
                signed_in = await sign_in(api)
                device = await Device.connect(
                    http, f"ws://127.0.0.1:{worker.port}/ws", signed_in["token"]
                )
                await device.ready()
                devices.append(device)
            scrape = f"http://127.0.0.1:{metrics_port}/metrics"
            ready = 'sessionwire_gateway_notices_total{type="ready"}'
            # A notice is counted right after it is written: its socket may read it first.
            await wait_until_async(lambda text: value(text, ready) == 6, scrape)
            for _ in range(6):
                status, text = await fresh_get(scrape)
                assert status == 200
                assert value(text, "sessionwire_gateway_sockets ") == 6
                assert value(text, ready) == 6
        finally:
            for http in sessions:
                await http.close()


async def wait_until_async(condition: Callable[[str], bool], url: str, wait: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + wait
    while not condition((await fresh_get(url))[1]):
        assert asyncio.get_running_loop().time() < deadline, f"{url} never showed it"
        await asyncio.sleep(0.05)


def test_a_metrics_port_in_use_stops_start_up_with_one_line(redis_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = Process(
            "service",
            free_port(),
            {**running_env(redis_url), "METRICS_PORT": str(port)},
            tmp_path / "api.log",
        )
        with pytest.raises(RuntimeError, match=f"port {port} is in use on 127.0.0.1 "):
            proc.start()
    assert "(set METRICS_PORT to another)" in proc.log()


def running_env(redis_url: str) -> dict[str, str]:
    from tests.processes import process_env

    return process_env(redis_url)


async def test_json_logs_one_object_per_line(redis_url: str, tmp_path: Path) -> None:
    with running("service", redis_url, tmp_path, LOG_FORMAT="json") as api:
        signed_in = await sign_in(api)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{api.url}/logout", headers=bearer(signed_in["token"])) as resp,
        ):
            assert resp.status == 200
    lines = [json.loads(line) for line in api.log().splitlines() if line.strip()]
    assert lines, "nothing was logged"
    for line in lines:
        assert {"time", "level", "pid", "logger", "message"} <= line.keys(), line
        assert line["time"].endswith("+00:00")
    sid = signed_in["session"]["session_id"]
    (ended,) = [line for line in lines if line.get("session_id") == sid]
    assert ended["logger"] == "service.sessions.store" and ended["level"] == "INFO"
    assert ended["reason"] == "logout" and ended["username"] == "alice"
    device = signed_in["session"]["device_name"]
    assert ended["by"] == f"session {sid} ({device!r}, 127.0.0.1)"
    assert ended["message"] == f"session {sid} of alice ended: logout, by {ended['by']}"


# --- one log line per ended session, whoever ended it ---


def ended_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "service.sessions.store"]


async def test_every_revocation_expiry_and_eviction_is_one_log_line(
    make_api: MakeApi, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api(
        clock=clock, max_sessions_per_user=2, session_idle_timeout=60, admin_token="a" * 40
    )
    with caplog.at_level(logging.INFO, logger="service.sessions.store"):
        first = await login(api, device_name="one")
        clock.advance(1)  # least recently seen first, by time
        second = await login(api, device_name="two")
        clock.advance(1)
        third = await login(api, device_name="three", device_id="dev-3")  # evicts the first
        clock.advance(1)
        again = await login(api, device_name="three again", device_id="dev-3")  # replaces it
        await api.delete(
            f"/sessions/{second['session']['session_id']}", headers=bearer(again["token"])
        )
        await api.post("/admin/users/alice/logout-all", headers=bearer("a" * 40))
        fourth = await login(api, device_name="four")
        clock.advance(60)
        await api.get("/me", headers=bearer(fourth["token"]))  # found expired
    sid = lambda body: body["session"]["session_id"]  # noqa: E731
    by = lambda body, name: f"session {sid(body)} ('{name}', 127.0.0.1)"  # noqa: E731
    assert ended_lines(caplog) == [
        f"session {sid(first)} of alice ended: evicted, by {by(third, 'three')}",
        f"session {sid(third)} of alice ended: replaced, by {by(again, 'three again')}",
        f"session {sid(second)} of alice ended: revoked, by {by(again, 'three again')}",
        f"session {sid(again)} of alice ended: admin, by -",
        f"session {sid(fourth)} of alice ended: expired, by -",
    ]
