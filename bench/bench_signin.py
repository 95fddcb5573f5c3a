"""Sign-in admission, before and after: 20 correct sign-ins from one address at once
against 20 one after another, on two checkouts side by side in one run.

    flock /tmp/sessionwire-bench.lock .venv/bin/python -m bench.bench_signin \\
        --before /work/main --after .

Each checkout's API runs as its own process (its code, this interpreter) on a private
redis-server, with 20 users whose hashes have argon2-cffi's default parameters (what
production has). Rounds alternate between the two, so both see the same machine. A
client told 503 `busy` waits its Retry-After and tries again, as clients must. Printed:
median wall time of each scenario, the API process's CPU time per sign-in (from
/proc/<pid>/stat), the 503s the clients were given, and the load average around the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from argon2 import PasswordHasher

from bench.common import ROOT, free_port, server_env, wait_http

PASSWORD = "correct horse battery"
USERS = [f"office{i:02}" for i in range(20)]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Scenario:
    seconds: list[float] = field(default_factory=list)
    cpu_per_sign_in: list[float] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """User plus system time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def sign_in(http: aiohttp.ClientSession, url: str, user: str) -> int:
    """Sign in, retrying after Retry-After on 503; how many 503s it was given."""
    busy = 0
    while True:
        body = {"username": user, "password": PASSWORD}
        async with http.post(f"{url}/login", json=body) as resp:
            if resp.status == 200:
                return busy
            if resp.status != 503:
                raise RuntimeError(f"{user}: {resp.status} {await resp.text()}")
            busy += 1
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))


async def run(url: str, pid: int, concurrent: bool) -> tuple[float, float, int]:
    async with aiohttp.ClientSession() as http:
        cpu, started = cpu_seconds(pid), time.perf_counter()
        if concurrent:
            busy = sum(await asyncio.gather(*(sign_in(http, url, user) for user in USERS)))
        else:
            busy = sum([await sign_in(http, url, user) for user in USERS])
        seconds = time.perf_counter() - started
        return seconds, (cpu_seconds(pid) - cpu) / len(USERS), busy


def start_api(tree: Path, redis_url: str, users: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = server_env(
        redis_url, PORT=str(port), USERS_FILE=str(users), PYTHONPATH=str(tree), LOG_LEVEL="ERROR"
    )
    env = {k: v for k, v in env.items() if not k.startswith(("PASSWORD_HASH_", "LOGIN_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=tree,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz")
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, default=Path("/work/main"))
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-signin-"))
    one_hash = PasswordHasher().hash(PASSWORD)  # argon2-cffi's defaults: t=3, 64 MiB, p=4
    users = work / "users.json"
    users.write_text(
        json.dumps({"users": [{"username": u, "password_hash": one_hash} for u in USERS]})
    )
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    results = {(name, kind): Scenario() for name in trees for kind in ("in a row", "at once")}
    load_before = os.getloadavg()
    try:
        time.sleep(0.2)
        for name, tree in trees.items():
            servers[name] = start_api(
                tree, f"redis://127.0.0.1:{redis_port}/0", users, work / f"{name}.log"
            )
        for _ in range(args.rounds):
            for name in trees:
                proc, url = servers[name]
                for kind in ("in a row", "at once"):
                    seconds, cpu, busy = asyncio.run(run(url, proc.pid, kind == "at once"))
                    found = results[(name, kind)]
                    found.seconds.append(seconds)
                    found.cpu_per_sign_in.append(cpu)
                    found.busy.append(busy)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"20 correct sign-ins from one address, {args.rounds} rounds, medians; "
        f"{os.cpu_count()} cores"
    )
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print(
        "| checkout | 20 in a row | 20 at once | CPU per sign-in (row / once) "
        "| 503s told (at once) |"
    )
    print("|---|---|---|---|---|")
    for name, tree in trees.items():
        row, once = results[(name, "in a row")], results[(name, "at once")]
        print(
            f"| {name} ({tree}) | {statistics.median(row.seconds):.2f} s | "
            f"{statistics.median(once.seconds):.2f} s | "
            f"{statistics.median(row.cpu_per_sign_in) * 1000:.0f} / "
            f"{statistics.median(once.cpu_per_sign_in) * 1000:.0f} ms | "
            f"{statistics.median(once.busy):.0f} |"
        )


if __name__ == "__main__":
    main()
