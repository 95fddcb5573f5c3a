"""Limits that only real processes show: descriptors, slow requests, the log, the banner."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from service.sessions.store import SessionStore
from tests.conftest import make_settings
from tests.devices import sign_in
from tests.processes import running
from tests.raw import UPGRADE, raw_request

SLOW_CLIENTS = 150
MAX_FILES = 96  # the process's whole descriptor budget, far below the slow clients


async def hold_slow(port: int, n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that starts a request and never finishes it: headers, or the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if n % 2:
        writer.write(b"POST /login HTTP/1.1\r\nHost: x\r\nUser-Agent: slo")
    else:
        writer.write(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"user'
        )
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> None:
    """Read to the end: a FIN, or a reset (the kernel resets a connection closed with bytes
    it has not read yet, as a cut request may leave; about half the runs here did)."""
    with contextlib.suppress(ConnectionResetError):
        await reader.read()


async def answered(url: str, wait: float) -> float:
    """Seconds until `url` answers 200, trying again while it can't."""
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                assert time.monotonic() - started < wait, f"{url} never answered"


@pytest.mark.parametrize("module", ["service", "workers"])  # the worker paces its accepts
async def test_slow_requests_are_cut_and_running_out_of_files_stays_quiet(
    redis_url: str, tmp_path: Path, module: str
) -> None:
    with running(module, redis_url, tmp_path, max_files=MAX_FILES, REQUEST_TIMEOUT="1") as api:
        slow = [await hold_slow(api.port, n) for n in range(SLOW_CLIENTS)]
        try:
            # Descriptors are out now; each slow request is cut after REQUEST_TIMEOUT, which
            # frees them for the connections waiting in the backlog, and for this one.
            assert await answered(api.url + "/healthz", wait=20) < 15
            for reader, _ in slow:
                await asyncio.wait_for(closed_by_server(reader), 10)
        finally:
            for _, writer in slow:
                writer.close()
        log = api.log()
    assert "Traceback" not in log
    assert log.count("cannot accept connections") <= 3, log[-2000:]
    assert len(log) < 10_000


async def test_malformed_requests_get_a_plain_400_without_a_traceback(
    redis_url: str, tmp_path: Path
) -> None:
    with running("service", redis_url, tmp_path) as api:
        for line in (b"NOT HTTP AT ALL", b"GET /me HTTP/1.1\r\nX-Long: " + b"a" * 20_000):
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
            writer.write(line + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer[:100]
            assert b"aiohttp" not in answer
        healthz = await raw_request(api.port, "GET", "/healthz", {})
        assert healthz.headers["server"] == "sessionwire"
        log = api.log()
    assert "Traceback" not in log and "ERROR" not in log, log


async def test_the_worker_cuts_slow_headers_refuses_bad_bytes_and_logs_no_token(
    redis_url: str, rdb: aioredis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(redis_url)
    alice = await sign_in(SessionStore(rdb, settings), settings, "alice")
    with running("workers", redis_url, tmp_path, REQUEST_TIMEOUT="1") as worker:
        slow_reader, slow_writer = await hold_slow(worker.port, 1)  # headers never end
        async with aiohttp.ClientSession() as http:
            # Only the bearer "protocol", not ours: refused before aiohttp logs the offer.
            for _ in range(3):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(worker.url + "/ws", protocols=(f"bearer.{alice.token}",))
                assert refused.value.status == 400
            ws = await http.ws_connect(
                worker.url + "/ws", protocols=("sessionwire.v1", f"bearer.{alice.token}")
            )
            await ws.receive_json()
            await ws.close()
        for name, value in (
            ("Sec-WebSocket-Protocol", b"sessionwire.v1, bearer.ab\xffc"),
            ("Authorization", b"Bearer ab\xffc"),
        ):
            headers = {name: value, **{k: v.encode() for k, v in UPGRADE.items()}}
            resp = await raw_request(worker.port, "GET", "/ws", headers)
            assert resp.status == 401 and resp.json()["code"] == "invalid_token"
            assert resp.headers["server"] == "sessionwire"
        await asyncio.wait_for(slow_reader.read(), 10)  # cut by REQUEST_TIMEOUT
        slow_writer.close()
        log = worker.log()
    assert "overlap" not in log  # aiohttp's log of an offer it doesn't speak
    assert alice.token not in log and alice.token.split(".")[1] not in log
    assert "Traceback" not in log
