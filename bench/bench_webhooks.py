"""Events out: webhooks delivered by one worker process to a receiver on loopback.

Two phases, on one Redis and on a local 3+3 cluster:
- throughput: N events wait while the endpoint is disabled; enabling it, the worker drains
  them: deliveries per second from the first to the last arriving;
- latency: sign-ins at a steady rate with the endpoint enabled: from the API's answer
  (POST /admin/sessions) to the receiver's, p50/p99; with /me served meanwhile at a steady
  rate, its p99 against the same without webhooks.

Run under `flock /tmp/sessionwire-bench.lock`; results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import ROOT, free_port, server_env, wait_http, write_section
from tests.conftest import RedisServer
from tests.rediscluster import LocalCluster

ADMIN_TOKEN = "bench-admin-" + "a" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.contextmanager
def processes(redis_url: str, tmp: Path) -> Iterator[tuple[str, str]]:
    env = server_env(
        redis_url,
        ADMIN_TOKEN=ADMIN_TOKEN,
        WEBHOOK_ALLOW_PRIVATE="1",
        USERS_FILE=str(ROOT / "demo_users.json"),
        MAX_SESSIONS_PER_USER="1000",
    )
    api_port, gw_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**env, port_var: str(port)},
            stdout=(tmp / f"{module}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for module, port_var, port in (
            ("service", "PORT", api_port),
            ("workers", "GATEWAY_PORT", gw_port),
        )
    ]
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz")
        wait_http(f"http://127.0.0.1:{gw_port}/healthz")
        yield f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{gw_port}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # session id -> when it arrived
        self.count = 0
        self.first = self.last = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.count += 1
        session = body["data"].get("session") or {}
        self.arrived.setdefault(session.get("session_id", ""), now)
        return web.Response(status=204)


async def open_session(http: aiohttp.ClientSession, api: str, user: str) -> tuple[str, float]:
    async with http.post(api + "/admin/sessions", json={"username": user}, headers=ADMIN) as resp:
        body = await resp.json()
        return body["session"]["session_id"], time.perf_counter()


async def me_p99(http: aiohttp.ClientSession, api: str, token: str, seconds: float) -> float:
    """/me at ~200 requests/s for `seconds`: its p99 in ms."""
    took = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        async with http.get(api + "/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            await resp.read()
        took.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)
    return statistics.quantiles(took, n=100)[98] * 1000


async def run(redis_url: str, events: int, rate: int, seconds: float) -> dict[str, float]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    result: dict[str, float] = {}
    try:
        with processes(redis_url, tmp) as (api, _):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
                login = await http.post(
                    api + "/login", json={"username": "user123", "password": "1234"}
                )
                token = (await login.json())["token"]
                result["me_p99_without_ms"] = await me_p99(http, api, token, seconds)
                async with http.post(
                    api + "/admin/webhooks",
                    json={"url": f"http://127.0.0.1:{port}/hook"},
                    headers=ADMIN,
                ) as resp:
                    endpoint = (await resp.json())["id"]
                path = f"{api}/admin/webhooks/{endpoint}"
                await http.patch(path, json={"status": "disabled"}, headers=ADMIN)
                await asyncio.sleep(1.5)  # the worker has seen it disabled
                sem = asyncio.Semaphore(32)

                async def one(i: int) -> None:
                    async with sem:
                        await open_session(http, api, f"bench{i}")

                await asyncio.gather(*(one(i) for i in range(events)))
                await http.patch(path, json={"status": "enabled"}, headers=ADMIN)
                deadline = time.monotonic() + 120
                while receiver.count < events and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                result["drained"] = receiver.count
                result["deliveries_per_s"] = (receiver.count - 1) / (receiver.last - receiver.first)
                # Latency at a steady rate, /me served meanwhile.
                answered: dict[str, float] = {}

                async def steady() -> None:
                    n = 0
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        sid, at = await open_session(http, api, f"steady{n % 500}")
                        answered[sid] = at
                        n += 1
                        await asyncio.sleep(1 / rate)

                _, result["me_p99_with_ms"] = await asyncio.gather(
                    steady(), me_p99(http, api, token, seconds)
                )
                await asyncio.sleep(1.0)
                lat = [
                    (receiver.arrived[sid] - at) * 1000
                    for sid, at in answered.items()
                    if sid in receiver.arrived
                ]
                result["latency_p50_ms"] = statistics.median(lat)
                result["latency_p99_ms"] = statistics.quantiles(lat, n=100)[98]
                result["latency_events"] = len(lat)
                result["latency_missing"] = len(answered) - len(lat)
    finally:
        await runner.cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=100, help="sign-ins per second")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = {}
    server = RedisServer()
    server.start()
    try:
        rows["one Redis"] = asyncio.run(run(server.url, args.events, args.rate, args.seconds))
    finally:
        server.stop()
    with LocalCluster() as cluster:
        rows["3+3 cluster"] = asyncio.run(run(cluster.url, args.events, args.rate, args.seconds))
    lines = [
        "<!-- bench_webhooks:start -->",
        "## Webhooks: deliveries per worker process, latency (bench/bench_webhooks.py)",
        "",
        f"One worker process, a receiver on loopback in the bench process; {args.events} "
        f"events drained, then {args.rate} sign-ins/s for {args.seconds:g} s. Load average "
        f"at the start: {load[0]:.2f} on 2 cores (other engineers' work was running).",
        "",
        "| engine | deliveries/s (drain) | latency p50 | latency p99 "
        "| /me p99 without | /me p99 with |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['deliveries_per_s']:,.0f} | {r['latency_p50_ms']:.1f} ms | "
            f"{r['latency_p99_ms']:.1f} ms | {r['me_p99_without_ms']:.1f} ms | "
            f"{r['me_p99_with_ms']:.1f} ms |"
        )
    lines.append("<!-- bench_webhooks:end -->")
    section = "\n".join(lines)
    print(section)
    print(json.dumps(rows, indent=1))
    if args.write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "bench_webhooks", section)


if __name__ == "__main__":
    main()
