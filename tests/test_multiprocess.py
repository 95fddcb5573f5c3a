"""Real processes: 2 API + 2 worker processes against one redis-server."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ENGINES, login, on_engine
from tests.devices import WAIT, Device
from tests.processes import Process, running


@pytest.fixture(params=ENGINES)
def redis_url(request: pytest.FixtureRequest) -> str:
    """These tests run on one Redis and on a Redis Cluster."""
    return on_engine(request)


async def connect(http: aiohttp.ClientSession, worker: Process, signed_in: Any) -> Device:
    ws_url = f"ws://127.0.0.1:{worker.port}/ws"
    device = await Device.connect(http, ws_url, signed_in["token"])
    assert (await device.ready())["session_id"] == signed_in["session"]["session_id"]
    return device


def auth(signed_in: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed_in['token']}"}


async def test_multiprocess_signout_reaches_device_on_other_worker(
    redis_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        api1, api2 = (
            stack.enter_context(running("service", redis_url, tmp_path)) for _ in range(2)
        )
        worker1, worker2 = (
            stack.enter_context(running("workers", redis_url, tmp_path)) for _ in range(2)
        )
        async with aiohttp.ClientSession() as http:
            laptop = await login(http, "alice", url=api1.url, device_name="laptop")
            phone = await login(http, "alice", url=api2.url, device_name="phone")
            tablet = await login(http, "alice", url=api1.url, device_name="tablet")
            laptop_ws = await connect(http, worker1, laptop)
            phone_ws = await connect(http, worker2, phone)
            tablet_ws = await connect(http, worker2, tablet)

            # The laptop signs the phone out through API 1; the phone is on worker 2.
            phone_sid = phone["session"]["session_id"]
            async with http.delete(
                f"{api1.url}/sessions/{phone_sid}", headers=auth(laptop)
            ) as resp:
                assert resp.status == 200
            notice = await phone_ws.revoked()
            assert notice["reason"] == "revoked"
            assert notice["by"]["session_id"] == laptop["session"]["session_id"]
            assert notice["by"]["device_name"] == "laptop"
            for other in (laptop_ws, tablet_ws):
                changed = await other.change()
                assert changed["event"] == "revoked"
                assert changed["session"]["session_id"] == phone_sid

            # A new sign-in shows up live on both workers.
            watch = await login(http, "alice", url=api2.url, device_name="watch")
            for other in (laptop_ws, tablet_ws):
                changed = await other.change()
                assert changed["event"] == "created"
                assert changed["session"]["device_name"] == "watch"

            # The tablet (worker 2) signs out the others through API 2.
            async with http.post(
                f"{api2.url}/sessions/revoke-others", headers=auth(tablet)
            ) as resp:
                assert resp.status == 200
            notice = await laptop_ws.revoked()
            assert notice["reason"] == "revoke_others"
            assert notice["by"]["device_name"] == "tablet"
            revoked = {(await tablet_ws.change())["session"]["session_id"] for _ in range(2)}
            assert revoked == {laptop["session"]["session_id"], watch["session"]["session_id"]}

            # A revoked token is told why at connect, on either worker.
            late = await Device.connect(http, f"ws://127.0.0.1:{worker1.port}/ws", phone["token"])
            assert (await late.revoked())["reason"] == "revoked"
            await tablet_ws.ws.close()


async def test_multiprocess_sigterm_closes_sockets_with_1001(
    redis_url: str, tmp_path: Path
) -> None:
    with (
        running("service", redis_url, tmp_path) as api,
        running("workers", redis_url, tmp_path) as worker,
    ):
        async with aiohttp.ClientSession() as http:
            devices = [
                await connect(http, worker, await login(http, user, url=api.url, device_name="dev"))
                for user in ("alice", "bob", "carol")
            ]
            assert worker.proc is not None
            started = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(device.closed(wait=WAIT) for device in devices))
            assert codes == [1001, 1001, 1001]
            assert time.monotonic() - started < 2.0
            assert await asyncio.to_thread(worker.proc.wait, 5) == 0
            assert time.monotonic() - started < 3.5
