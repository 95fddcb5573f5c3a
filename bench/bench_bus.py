"""Cluster-bus messages per session event: sharded SPUBLISH against plain PUBLISH.

    python -m bench.bench_bus [--events 500] [--masters 3,5] [--write docs/BENCHMARKS.md]

For each cluster size (masters, each with one replica) it signs users in through the store
(each sign-in's script SPUBLISHes one event on the user's channel), then PUBLISHes the same
number of messages of the same size on a plain channel, and reads the bus counters of
every node (CLUSTER INFO) before and after each.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path

from bench.bench_gateway import machine
from bench.common import SECRET, markers, write_section
from service.engine.connect import connected
from service.sessions.store import SessionStore
from service.settings import Settings
from tests.rediscluster import LocalCluster

START, END = markers("bench_bus")
PAYLOAD = "x" * 400  # about the size of a session event


async def bus_counters(cluster: LocalCluster) -> dict[str, int]:
    """The cluster-bus pub/sub counters, summed over every node."""
    total: dict[str, int] = {}
    for url in cluster.urls:
        async with connected(Settings(redis_url=url, redis_cluster="no")) as node:
            info = await node.execute_command("CLUSTER INFO")
        for name in ("publish_sent", "publishshard_sent"):
            total[name] = total.get(name, 0) + int(info.get(f"cluster_stats_messages_{name}", 0))
    return total


async def measure(masters: int, events: int) -> tuple[float, float]:
    """(bus messages per event with SPUBLISH, with PUBLISH) on a cluster of `masters`."""
    with LocalCluster(masters=masters) as cluster:
        settings = Settings(
            redis_url=cluster.url, jwt_secret=SECRET, max_sessions_per_user=events + 1
        )
        async with connected(settings) as client:
            store = SessionStore(client, settings)
            before = await bus_counters(cluster)
            for n in range(events):
                await store.create(
                    f"user{n}",
                    session_id=secrets.token_urlsafe(16),
                    device_id="",
                    device_name="bench",
                    user_agent="bench",
                    ip="127.0.0.1",
                )
            middle = await bus_counters(cluster)
            for n in range(events):
                await client.publish(f"plain-{n}", PAYLOAD)
            after = await bus_counters(cluster)
    sharded = (middle["publishshard_sent"] - before["publishshard_sent"]) / events
    plain = (after["publish_sent"] - middle["publish_sent"]) / events
    return sharded, plain


def report(rows: list[tuple[int, float, float]], events: int) -> str:
    lines = [
        START,
        "## Redis Cluster: bus messages per event",
        "",
        f"`python -m bench.bench_bus --events {events}` on {machine()}. Each cluster has one "
        "replica per master. SPUBLISH: sign-ins through the store (each script publishes one "
        "event on its user's shard channel); PUBLISH: the same number of plain publishes.",
        "",
        "| masters | nodes | bus messages per event, SPUBLISH | per message, plain PUBLISH |",
        "|---:|---:|---:|---:|",
        *(f"| {m} | {2 * m} | {s:.2f} | {p:.2f} |" for m, s, p in rows),
        "",
        "A sharded event crosses the bus once (to its master's replica) however many nodes "
        "there are; a plain PUBLISH goes to every other node.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--masters", default="3,5")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = []
    for masters in (int(m) for m in args.masters.split(",")):
        sharded, plain = asyncio.run(measure(masters, args.events))
        print(f"{masters} masters: SPUBLISH {sharded:.2f}, PUBLISH {plain:.2f}", flush=True)
        rows.append((masters, sharded, plain))
    section = report(rows, args.events)
    print(section)
    if args.write:
        write_section(args.write, "bench_bus", section)


if __name__ == "__main__":
    main()
