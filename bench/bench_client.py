"""What each redis-py client setting costs per command, and what /me's batched path pays.

    python -m bench.bench_client [--engine single|cluster] [--commands 20000] [--runs 3]
                                 [--write docs/BENCHMARKS.md]

One process, one private Redis (or a local 3+3 cluster). Each row issues `--commands`
GETs one after the other (`await client.get(key)`, as the plain ceiling does) and reports
the client's own CPU time per command (`time.process_time`, so other load on the machine
disturbs it little), median of `--runs`; the rows add the API's client settings
(service/engine/connect.py) one at a time. The last rows are the read batcher's path:
HGETALLs sent 32 to a pipeline by `Engine.run_on`, per command.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from bench.bench_api import redis_engine
from bench.bench_gateway import machine
from bench.common import markers, write_section
from service.engine.connect import (
    CLIENT_OPTIONS,
    MAX_CONNECTIONS,
    cluster_client,
    single_client,
    wait_until_up,
)
from service.engine.factory import engine_for
from service.runtime.process import new_event_loop

KEY = "bench:{u:user123}:s:x"
BATCH = 32
RETRY = {"retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1)}


def variants(url: str, engine: str) -> dict[str, Callable[[], Any]]:
    """Clients from the library's defaults to the API's, one setting at a time."""
    if engine == "cluster":
        return {
            "`RedisCluster.from_url(url)`, library defaults": lambda: RedisCluster.from_url(url),
            "+ decode_responses": lambda: RedisCluster.from_url(url, decode_responses=True),
            "+ socket timeouts (the API's client)": lambda: cluster_client(url),
        }
    timeouts = {"socket_connect_timeout": 2, "socket_timeout": 5}
    return {
        "`Redis.from_url(url)`, library defaults": lambda: redis.Redis.from_url(url),
        "+ decode_responses": lambda: redis.Redis.from_url(url, decode_responses=True),
        "+ socket timeouts": lambda: redis.Redis.from_url(url, **CLIENT_OPTIONS),
        "+ health_check_interval=15": lambda: redis.Redis.from_url(
            url, health_check_interval=15, **CLIENT_OPTIONS
        ),
        "+ a retry (1 try, backoff)": lambda: redis.Redis.from_url(
            url, health_check_interval=15, **RETRY, **CLIENT_OPTIONS
        ),
        "+ BlockingConnectionPool (the API's client)": lambda: single_client(url),
        "the API's settings, ConnectionPool instead": lambda: redis.Redis.from_url(
            url,
            health_check_interval=15,
            max_connections=MAX_CONNECTIONS,
            decode_responses=True,
            **timeouts,
            **RETRY,
        ),
    }


async def cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """µs of this process's CPU per call, calls made one after the other."""
    for _ in range(200):  # warm: connections made, code paths hot
        await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def per_reply_timeouts(engine: Any, commands: list[Any]) -> list[Any]:
    """The batched path as it was: redis-py's own timer around every reply."""
    conn = await engine.pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        return [await conn.read_response() for _ in commands]
    finally:
        await engine.pool.release(conn)


async def measure(url: str, engine_name: str, commands: int) -> dict[str, float]:
    probe = redis.Redis.from_url(url)
    await wait_until_up(probe.ping, url)
    await probe.aclose()
    rows: dict[str, float] = {}
    for label, make in variants(url, engine_name).items():
        client = make()
        try:
            await client.set(KEY, "x" * 300)
            rows[label] = await cpu_per_call(lambda c=client: c.get(KEY), commands)
        finally:
            await client.aclose()
    client = cluster_client(url) if engine_name == "cluster" else single_client(url)
    try:
        await client.hset(KEY + "h", mapping={f"f{n}": "x" * 20 for n in range(9)})
        engine = engine_for(client)
        node = engine.node_of(KEY)
        batch = [("HGETALL", KEY + "h")] * BATCH
        rounds = max(1, commands // BATCH)
        label = f"batched path: `Engine.run_on`, {BATCH} HGETALLs a pipeline (per command)"
        rows[label] = await cpu_per_call(lambda: engine.run_on(node, batch), rounds) / BATCH
        if engine_name == "single":
            old = await cpu_per_call(lambda: per_reply_timeouts(engine, batch), rounds)
            rows["... the same with a timer per reply (before)"] = old / BATCH
    finally:
        await client.aclose()
    return rows


def report(runs: list[dict[str, float]], engine: str, commands: int) -> str:
    start, end = markers(f"bench_client_{engine}")
    lines = [
        start,
        f"### redis-py client settings: CPU per command ({engine} Redis)",
        "",
        f"`python -m bench.bench_client --engine {engine} --commands {commands} "
        f"--runs {len(runs)}` on {machine()}: client CPU µs per command, median of "
        f"{len(runs)} runs (each run's figure in brackets).",
        "",
        "| client | µs per command | runs |",
        "|---|---:|---|",
    ]
    first = next(iter(runs[0]))
    floor = statistics.median(r[first] for r in runs)
    for label in runs[0]:
        value = statistics.median(r[label] for r in runs)
        each = ", ".join(f"{r[label]:.1f}" for r in runs)
        ratio = "" if math.isclose(value, floor) else f" ({value / floor:.2f}x)"
        lines.append(f"| {label} | {value:.1f}{ratio} | {each} |")
    lines.append(end)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=("single", "cluster"), default="single")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with redis_engine(args.engine) as (url, _):
        runs = []
        for _ in range(args.runs):
            loop = new_event_loop("uvloop")  # as the API runs
            runs.append(loop.run_until_complete(measure(url, args.engine, args.commands)))
            loop.close()
    section = report(runs, args.engine, args.commands)
    print(section)
    if args.write:
        write_section(args.write, f"bench_client_{args.engine}", section)


if __name__ == "__main__":
    main()
