"""Benchmark a reconnect storm: a worker restarts and all its devices come back at once.

    python -m bench.bench_storm [--runs 3] [--devices 10000] [--compare DIR] [--floor]
                                [--concurrency 2] [--clients-nice 10]
                                [--write docs/BENCHMARKS.md]

Two worker processes share one Redis. `--devices` devices (one per user) hold sockets on
worker A, from client processes; `WATCHERS` devices sit on worker B. Worker A stops
(SIGTERM: its devices get 1001), and once it is gone every device reconnects to B at the
same moment, as a load balancer would send them. The run ends when B holds every device
and none is still syncing (its user's subscription confirmed and its log caught up), read
from B's /metrics. Meanwhile the watchers' sessions are revoked at a steady rate and their
notice latency is compared with the same measure just before the storm and just after it.

`--compare DIR` runs the same storm, in every run, against the worker of another checkout
(the code before a change), `--floor` against bench/floor.py (a hand-written 101 and one
frame per device: the least a connect can cost here), `--concurrency N` with
GATEWAY_CONCURRENCY=N on worker B (then "caught up" is every device's `ready`: /metrics
answers for one process of the N), `--clients-nice N` with the storm's client processes
at a lower priority (as if they ran elsewhere, the cores are the servers' first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench.bench_gateway import machine, started
from bench.common import (
    ROOT,
    SECRET,
    cpu_seconds,
    free_port,
    markers,
    server_env,
    wait_http,
    waited_seconds,
    write_section,
)
from bench.wsraw import RawSocket
from service.engine.connect import single_client
from service.sessions.store import SessionStore
from service.sessions.tokens import TokenCodec
from service.settings import Settings

START, END = markers("bench_storm")
CLIENT_PROCESSES = 4
WATCHERS = 50
WATCH_RATE = 50  # revocations of watchers' sessions per second, before and during the storm
RETRY_EVERY = 0.05  # a device whose reconnect fails tries again this soon
GIVE_UP = 120.0  # seconds: a client process never outlives a driver that is gone
POLL = 0.05  # how often B's /metrics is read during the storm
PLOT = ROOT / "docs" / "img" / "bench-storm.png"


@dataclass
class Result:
    target: str  # which worker: this tree's, another checkout's, or the floor
    devices: int
    all_ready_s: float  # from the go, to every device's `ready`
    caught_up_s: float  # ... to B holding every device, none syncing
    ready_times: list[float]  # seconds from the go to each device's `ready`, sorted
    caught_up_curve: list[tuple[float, int]]  # (seconds, devices caught up) from /metrics
    watch_before: tuple[float, float]  # watchers' notice latency p50, p99 (ms) before
    watch_during: tuple[float, float]  # ... during the storm
    load: float
    load_after: float
    cpu: dict[str, float]  # CPU seconds spent during the storm: worker B, Redis, clients
    watch_samples: list[tuple[float, float]]  # (seconds since the go, notice latency ms)
    worker_p99_ms: float = float("nan")  # the worker's own p99 during the storm (a bucket)
    listen_drops: int = 0  # connection attempts the kernel dropped: the listen queue was full
    watch_after: tuple[float, float] = (math.nan, math.nan)  # ... in the 3 s after it
    worker_waited_s: float = 0.0  # worker B's time runnable, waiting for a core, in the storm

    @property
    def cpu_per_connect_us(self) -> float:
        return self.cpu["worker"] / self.devices * 1e6


# -- client processes ---------------------------------------------------------------------


async def client_main(spec: dict[str, Any]) -> object:
    """Hold devices on worker A; when told, reconnect them all to B; record their `ready`.

    Devices are raw sockets (bench/wsraw.py): the load generator shares the two cores with
    the worker it measures, so it must cost little.
    """
    first, second = (urlsplit(url) for url in spec["urls"])
    ready_at: list[int] = []
    on_first = 0
    all_on_first, go, go_home = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def device(token: str) -> None:
        nonlocal on_first
        ws = await RawSocket.connect(first.hostname or "", first.port or 0, token)
        on_first += 1
        if on_first == len(spec["tokens"]):
            all_on_first.set()
        while await ws.text() is not None:  # until worker A goes away (1001)
            pass
        ws.close()
        await go.wait()
        deadline = time.monotonic() + GIVE_UP
        while True:
            try:
                ws = await RawSocket.connect(second.hostname or "", second.port or 0, token)
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(RETRY_EVERY)
        if (message := await ws.text()) and json.loads(message)["type"] == "ready":
            ready_at.append(time.monotonic_ns())
            if len(ready_at) == len(spec["tokens"]):
                print("all ready", flush=True)
        await go_home.wait()
        ws.close()

    tasks = [asyncio.create_task(device(token)) for token in spec["tokens"]]
    await all_on_first.wait()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the go (or the driver is gone)
    go.set()
    await asyncio.to_thread(sys.stdin.readline)  # the end
    go_home.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return ready_at


async def watcher_main(spec: dict[str, Any]) -> object:
    """Watch devices on worker B; record when each revocation notice arrives."""
    told: dict[str, int] = {}
    count = 0
    connected = asyncio.Event()

    async def device(http: aiohttp.ClientSession, token: str) -> None:
        nonlocal count
        protocols = ("sessionwire.v1", f"bearer.{token}")
        async with http.ws_connect(spec["url"], protocols=protocols) as ws:
            async for msg in ws:
                message = json.loads(msg.data)
                if message["type"] == "ready":
                    count += 1
                    if count == len(spec["tokens"]):
                        connected.set()
                elif message["type"] == "sessions.changed" and message["event"] == "revoked":
                    told[message["session"]["session_id"]] = time.monotonic_ns()

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(device(http, token)) for token in spec["tokens"]]
        await connected.wait()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return told


# -- the driver ---------------------------------------------------------------------------


class Sessions:
    """Sessions made directly in Redis through the store, and their tokens."""

    def __init__(self, url: str) -> None:
        settings = Settings(redis_url=url, jwt_secret=SECRET, max_sessions_per_user=1000)
        self.client = single_client(url)
        self.store, self.codec = SessionStore(self.client, settings), TokenCodec(settings)

    async def make(self, users: list[str], name: str) -> list[tuple[str, str]]:
        """One session for each user: (token, session id)."""

        async def one(user: str) -> tuple[str, str]:
            session, _ = await self.store.create(
                user,
                session_id=secrets.token_urlsafe(16),
                device_id="",
                device_name=name,
                user_agent="bench",
                ip="127.0.0.1",
            )
            token = self.codec.issue(user, session.session_id, session.created_ms, session.max_ms)
            return token, session.session_id

        made: list[tuple[str, str]] = []
        for start in range(0, len(users), 500):
            made += await asyncio.gather(*(one(user) for user in users[start : start + 500]))
        return made


async def revoke_steadily(
    sessions: Sessions, plan: list[tuple[str, str]], until: asyncio.Event
) -> dict[str, int]:
    """Revoke (user, session id) pairs at WATCH_RATE until `until` is set or none are left."""
    sent: dict[str, int] = {}
    begin = time.monotonic()
    for n, (user, sid) in enumerate(plan):
        if until.is_set():
            break
        delay = begin + n / WATCH_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[sid] = time.monotonic_ns()
        await sessions.store.revoke(user, "one", sid, "revoked", None)
    return sent


def gateway_counts(port: int) -> tuple[int, int]:
    """(sockets, sockets still syncing) as worker B's /metrics says; (0, 0) when it is too
    busy to answer in time (the storm is then not over)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            text = resp.read().decode()
    except TimeoutError:
        return 0, 0
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("sessionwire_gateway_sockets")
    }
    return int(values["sessionwire_gateway_sockets"]), int(
        values["sessionwire_gateway_sockets_syncing"]
    )


def notice_buckets(port: int) -> dict[float, float]:
    """Worker B's notice-latency histogram (event time in Redis to frame written), by
    upper bound: the worker's own share of the watchers' latency."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("sessionwire_notice_latency_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def bucket_p99(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound (ms) of the bucket holding the 99th percentile of what was observed
    between the two snapshots; nan when nothing was."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0
    if not total:
        return float("nan")
    return next(bound for bound, n in counts if n >= 0.99 * total) * 1000


def listen_drops() -> int:
    """The kernel's count of connection attempts dropped at a listening socket (TcpExt
    ListenDrops: a full accept queue, or no memory), all sockets of the machine. Each such
    device waits for its SYN's retransmission: 1 s, then 2 s more, and so on."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names[0] == "TcpExt:":
            return int(values[names.index("ListenDrops")])
    return 0


def somaxconn() -> int:
    """The kernel's cap on any listen backlog (what `listen(n)` gets at most)."""
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


async def spawn(
    role: str, tmp: Path, spec: object, name: str, nice: int = 0
) -> asyncio.subprocess.Process:
    """A client or watcher process, `nice` below the others' priority."""
    (tmp / f"{name}.json").write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_storm",
        role,
        str(tmp / f"{name}.json"),
        str(tmp / f"{name}-out.json"),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 600)
    assert line.strip() == b"ready", line
    return proc


async def tell(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()


def samples(sent: dict[str, int], told: dict[str, int], go: int) -> list[tuple[float, float]]:
    """(seconds since the go, latency ms) of each revocation whose notice arrived."""
    return [((t - go) / 1e9, (told[s] - t) / 1e6) for s, t in sent.items() if s in told]


def percentiles(sent: dict[str, int], told: dict[str, int]) -> tuple[float, float]:
    latencies = sorted((told[s] - t) / 1e6 for s, t in sent.items() if s in told)
    if not latencies:
        return (float("nan"), float("nan"))
    return statistics.median(latencies), latencies[
        min(len(latencies) - 1, int(len(latencies) * 0.99))
    ]


async def measure(
    devices: int,
    tmp: Path,
    target: str = "this tree",
    tree: Path = ROOT,
    concurrency: int = 1,
    clients_nice: int = 0,
) -> Result:
    """One storm onto worker B: this tree's, `tree`'s, or the floor (target "floor")."""
    floor = target == "floor"
    redis_port, port_a, port_b = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = server_env(
        redis_url, MAX_SESSIONS_PER_USER="1000", USERS_FILE=str(ROOT / "demo_users.json")
    )
    redis = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    worker = [sys.executable, "-m", "workers"]
    b_env = {**env, "GATEWAY_PORT": str(port_b), "GATEWAY_CONCURRENCY": str(concurrency)}
    b_command = [sys.executable, "-m", "bench.floor", str(port_b)] if floor else worker
    with ExitStack() as stack:
        redis_proc = stack.enter_context(
            started([*redis, "--dir", str(tmp)], env, tmp / "redis.log")
        )
        worker_a = stack.enter_context(
            started(worker, {**env, "GATEWAY_PORT": str(port_a)}, tmp / "worker-a.log")
        )
        worker_b = stack.enter_context(started(b_command, b_env, tmp / "b.log", cwd=tree))
        wait_http(f"http://127.0.0.1:{port_a}/readyz", timeout=60)
        if not floor:
            wait_http(f"http://127.0.0.1:{port_b}/readyz", timeout=60)
        sessions = Sessions(redis_url)
        storm = await sessions.make([f"s{n:05d}" for n in range(devices)], "phone")
        watch_users = [f"w{n:03d}" for n in range(WATCHERS)]
        watchers = await sessions.make(watch_users, "watcher")
        plan_users = [watch_users[n % WATCHERS] for n in range(WATCH_RATE * 60)]
        plan = list(
            zip(plan_users, [s for _, s in await sessions.make(plan_users, "x")], strict=True)
        )

        watcher = None
        if not floor:
            watcher = await spawn(
                "--watcher",
                tmp,
                {"url": f"ws://127.0.0.1:{port_b}/ws", "tokens": [t for t, _ in watchers]},
                "watcher",
            )
        urls = [f"ws://127.0.0.1:{port_a}/ws", f"ws://127.0.0.1:{port_b}/ws"]
        clients = [
            await spawn(
                "--client",
                tmp,
                {"urls": urls, "tokens": [t for t, _ in storm[i::CLIENT_PROCESSES]]},
                f"client-{i}",
                clients_nice,
            )
            for i in range(CLIENT_PROCESSES)
        ]
        quiet = asyncio.Event()
        before = await revoke_steadily(sessions, plan[: WATCH_RATE * 3], quiet) if watcher else {}
        worker_a.terminate()  # its devices get 1001 and wait for the go
        await asyncio.to_thread(worker_a.wait, 30)

        load = os.getloadavg()[0]
        storm_over = asyncio.Event()
        during_task = asyncio.create_task(
            revoke_steadily(sessions, plan[WATCH_RATE * 3 :], storm_over if watcher else quiet)
        )
        if not watcher:
            quiet.set()
        pids = {
            "worker": [worker_b.pid],
            "redis": [redis_proc.pid],
            "clients": [c.pid for c in clients],
        }
        cpu_before = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        waited_before = waited_seconds(worker_b.pid)
        by_metrics = not floor and concurrency == 1
        buckets_before = await asyncio.to_thread(notice_buckets, port_b) if by_metrics else {}
        drops_before = listen_drops()
        go = time.monotonic_ns()
        await tell(clients)
        all_ready = asyncio.gather(*(all_ready_line(c) for c in clients))
        curve: list[tuple[float, int]] = []
        while True:
            elapsed = (time.monotonic_ns() - go) / 1e9
            if by_metrics:
                sockets, syncing = await asyncio.to_thread(gateway_counts, port_b)
                curve.append((elapsed, max(0, sockets - WATCHERS - syncing)))
                if sockets >= devices + WATCHERS and syncing == 0:
                    break
            elif all_ready.done():
                break
            if elapsed > 120:
                raise RuntimeError(f"storm not over after 120 s; see {tmp}")
            await asyncio.sleep(POLL)
        caught_up_s = (time.monotonic_ns() - go) / 1e9
        drops = listen_drops() - drops_before
        cpu = {n: sum(cpu_seconds(p) for p in ps) - cpu_before[n] for n, ps in pids.items()}
        waited = waited_seconds(worker_b.pid) - waited_before
        storm_over.set()
        during = await during_task
        worker_p99 = float("nan")
        if by_metrics:
            worker_p99 = bucket_p99(buckets_before, await asyncio.to_thread(notice_buckets, port_b))
        rest = plan[WATCH_RATE * 3 + len(during) :][: WATCH_RATE * 3]
        after = await revoke_steadily(sessions, rest, quiet) if watcher else {}
        await asyncio.wait_for(all_ready, 120)
        await tell(clients)  # the end
        await asyncio.gather(*(proc.wait() for proc in clients))
        if watcher:
            await tell([watcher])
            await watcher.wait()
        await sessions.client.aclose()
        load_after = os.getloadavg()[0]

    ready_ns = sorted(
        t
        for i in range(CLIENT_PROCESSES)
        for t in json.loads((tmp / f"client-{i}-out.json").read_text())
    )
    told = json.loads((tmp / "watcher-out.json").read_text()) if watcher else {}
    ready_times = [(t - go) / 1e9 for t in ready_ns]
    return Result(
        target=target,
        devices=devices,
        all_ready_s=ready_times[-1],
        caught_up_s=caught_up_s,
        ready_times=ready_times,
        caught_up_curve=curve,
        watch_before=percentiles(before, told),
        watch_during=percentiles(during, told),
        load=load,
        load_after=load_after,
        cpu=cpu,
        watch_samples=samples({**before, **during, **after}, told, go),
        worker_p99_ms=worker_p99,
        listen_drops=drops,
        watch_after=percentiles(after, told),
        worker_waited_s=waited,
    )


async def all_ready_line(proc: asyncio.subprocess.Process) -> None:
    """Until a client process says every one of its devices is back and `ready`."""
    assert proc.stdout is not None
    while (line := await proc.stdout.readline()) and line.strip() != b"all ready":
        pass


# -- report -------------------------------------------------------------------------------


def plot(results: list[Result], path: Path) -> None:
    """Devices ready and caught up over time since the go, and on the same time axis the
    watchers' notice latency (before the go: negative times)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 6.4), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    targets = list(dict.fromkeys(r.target for r in results))
    for r in results:
        color = colors[targets.index(r.target) % len(colors)]
        n = sum(1 for x in results[: results.index(r) + 1] if x.target == r.target)
        label = f"{r.target}, run {n}"
        top.plot(
            r.ready_times,
            range(1, len(r.ready_times) + 1),
            color=color,
            alpha=0.8,
            label=f"{label}: ready",
        )
        if r.caught_up_curve:
            xs, ys = zip(*r.caught_up_curve, strict=True)
            top.step(xs, ys, where="post", linestyle="--", color=color, alpha=0.6)
        if r.watch_samples:
            xs, ys = zip(*sorted(r.watch_samples), strict=True)
            bottom.scatter(xs, ys, s=4, color=color, alpha=0.6, label=label)
    for ax in (top, bottom):
        ax.axvline(0, color="black", linewidth=0.6)
        ax.grid(alpha=0.3)
    top.axvline(3.0, color="grey", linewidth=0.8)
    top.text(3.02, 0, "target 3 s", color="grey", fontsize=8, va="bottom")
    top.set_ylabel("devices (dashed: caught up)")
    top.set_title(f"Reconnect storm: {results[0].devices:,} devices onto one worker")
    top.legend(fontsize=6, loc="lower right")
    bottom.set_yscale("log")
    bottom.axhline(50, color="grey", linewidth=0.8)
    bottom.axhline(10, color="grey", linewidth=0.6, linestyle=":")
    bottom.set_ylabel("watchers' notice latency (ms)")
    bottom.set_xlabel("seconds since the devices were let go")
    bottom.legend(fontsize=6, loc="upper right", markerscale=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def report(results: list[Result], command: str) -> str:
    rows = [
        f"| {r.target} | {n} | {r.all_ready_s:.2f} s | "
        + (f"{r.caught_up_s:.2f} s" if r.target != "floor" else "(no Redis)")
        + " | "
        + (
            f"{r.watch_before[0]:.1f} / {r.watch_before[1]:.1f} ms | "
            f"{r.watch_during[0]:.1f} / {r.watch_during[1]:.1f} ms | "
            f"{r.watch_after[0]:.1f} / {r.watch_after[1]:.1f} ms | "
            + ("| " if math.isnan(r.worker_p99_ms) else f"≤ {r.worker_p99_ms:.0f} ms | ")
            if r.watch_samples
            else "| | | | "
        )
        + f"{r.listen_drops:,} | {r.cpu_per_connect_us:.0f} | {r.worker_waited_s:.2f} s | "
        f"{r.cpu['worker']:.2f} / {r.cpu['redis']:.2f} / {r.cpu['clients']:.2f} s "
        f"| {r.load:.1f} / {r.load_after:.1f} |"
        for n, r in runs_numbered(results)
    ]
    lines = [
        START,
        "## Reconnect storm",
        "",
        f"`{command}` on {machine()}. {results[0].devices:,} devices (one per user) leave a"
        " worker that stops, and reconnect at one moment to another worker that already holds"
        f" {WATCHERS} watching devices; the client processes share the two cores. Caught"
        " up means the worker holds every device and none is still syncing (subscribed,"
        " and its user's log replayed), read from its /metrics. Watchers' notice latency"
        f" is p50 / p99 of revocations at {WATCH_RATE}/s, for 3 s before the storm, during it"
        " and for 3 s after it. CPU"
        " per connect is worker B's CPU time during the storm over the devices. \"Of which"
        " in the worker\" is the bucket of the worker's own notice-latency histogram (event"
        " time in Redis to frame written) holding the p99 of the notices written during the"
        " storm; the rest of the watchers' latency is the client processes' (scheduling on"
        " the shared cores). SYNs dropped counts the connection attempts the kernel dropped"
        " because the worker's accept queue was full (TcpExt ListenDrops, net.core.somaxconn"
        f" = {somaxconn()}): each waits for its retransmission, 1 s and then 3 s after its"
        " first try. Waiting for a core is the time worker B's event loop was runnable but"
        " not running (the scheduler's run delay, /proc schedstat) during the storm: the"
        " client processes share its cores. Load is the 1-minute load average at the go /"
        " at the end.",
        "",
        "| worker | run | all `ready` | all caught up | watchers before | watchers during "
        "| watchers after | of which in the worker, p99 | SYNs dropped "
        "| worker CPU µs per connect | worker waiting for a core | CPU: worker / Redis / clients "
        "| load |",
        "|---|---|---|---|---|---|---|---|---:|---:|---:|---|---|",
        *rows,
        "",
    ]
    for target in dict.fromkeys(r.target for r in results):
        mine = [r for r in results if r.target == target]
        caught = statistics.median(r.caught_up_s for r in mine)
        cpu = statistics.median(r.cpu_per_connect_us for r in mine)
        line = f"- {target}: median caught up **{caught:.2f} s**, **{cpu:.0f} µs** per connect"
        if mine[0].watch_samples:
            before = statistics.median(r.watch_before[1] for r in mine)
            during = statistics.median(r.watch_during[1] for r in mine)
            after = statistics.median(r.watch_after[1] for r in mine)
            line += (
                f", watchers' p99 **{before:.1f} ms** before, **{during:.1f} ms** during and"
                f" **{after:.1f} ms** after (targets 3 s: {'met' if caught <= 3 else 'not met'};"
                f" 400 µs: {'met' if cpu <= 400 else 'not met'}; p99 during ≤ 50 ms:"
                f" {'met' if during <= 50 else 'not met'}; before and after ≤ 10 ms:"
                f" {'met' if max(before, after) <= 10 else 'not met'})"
            )
        lines.append(line + ".")
    lines += [
        "",
        f"![Devices ready and caught up over time, and the watchers' notice latency]"
        f"({PLOT.relative_to(ROOT / 'docs')})",
        END,
    ]
    return "\n".join(lines)


def runs_numbered(results: list[Result]) -> list[tuple[int, Result]]:
    seen: dict[str, int] = {}
    numbered = []
    for r in results:
        seen[r.target] = seen.get(r.target, 0) + 1
        numbered.append((seen[r.target], r))
    return numbered


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--client", "--watcher"):
        role = client_main if sys.argv[1] == "--client" else watcher_main
        spec = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(asyncio.run(role(spec))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--compare", type=Path, help="another checkout whose worker runs beside")
    parser.add_argument("--floor", action="store_true", help="also the hand-written floor")
    parser.add_argument("--concurrency", type=int, default=1, help="GATEWAY_CONCURRENCY of B")
    parser.add_argument(
        "--clients-nice", type=int, default=0, help="the storm's clients at this nice value"
    )
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the children
    label = "this tree" if args.concurrency == 1 else f"GATEWAY_CONCURRENCY={args.concurrency}"
    targets: list[tuple[str, Path]] = [(label, ROOT)]
    if args.compare:
        targets.append((args.compare.name, args.compare.resolve()))
    if args.floor:
        targets.append(("floor", ROOT))
    results = []
    for n in range(args.runs):
        for target, tree in targets:  # interleaved: each run sees every worker
            with tempfile.TemporaryDirectory(prefix="sw-storm-") as tmp:
                result = asyncio.run(
                    measure(
                        args.devices, Path(tmp), target, tree, args.concurrency, args.clients_nice
                    )
                )
            print(
                f"run {n + 1}, {target}: ready {result.all_ready_s:.2f} s, caught up "
                f"{result.caught_up_s:.2f} s, watchers {result.watch_before} -> "
                f"{result.watch_during} -> {result.watch_after} ms, "
                f"{result.cpu_per_connect_us:.0f} us/connect, "
                f"cpu {result.cpu}, load {result.load:.1f}/{result.load_after:.1f}",
                flush=True,
            )
            results.append(result)
    plot(results, PLOT if args.concurrency == 1 else PLOT.with_name("bench-storm-many.png"))
    command = "python -m bench.bench_storm " + " ".join(sys.argv[1:]).replace(str(ROOT) + "/", "")
    section = report(results, command.replace(" --write docs/BENCHMARKS.md", ""))
    print(section)
    if args.write:
        name = "bench_storm" if args.concurrency == 1 else "bench_storm_many"
        write_section(
            args.write,
            name,
            section.replace(START, markers(name)[0]).replace(END, markers(name)[1]),
        )


if __name__ == "__main__":
    main()
