"""Benchmark GET /me against two ceilings, side by side, plus /me under a login storm.

    python -m bench.bench_api [--runs 3] [--seconds 8] [--write docs/BENCHMARKS.md]

Starts a private redis-server, the API (`python -m service`, one process) and the two
ceilings of bench/ceilings.py, then drives each with wrk (one thread) at 32 and 256
connections, interleaving the targets in every run. Prints a Markdown report of the
medians; with --write, replaces the API section of the given file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "x" * 40
START, END = "<!-- bench_api:start -->", "<!-- bench_api:end -->"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # any HTTP answer means it is up
                return
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def login(api: str) -> str:
    request = urllib.request.Request(
        api + "/login",
        data=json.dumps({"username": "user123", "password": "1234"}).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "wrk"},
    )
    with urllib.request.urlopen(request) as resp:
        return json.load(resp)["token"]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(url: str, connections: int, seconds: int, token: str) -> Result:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Result(rps, p50, p99)


def median(results: list[Result]) -> Result:
    return Result(
        *(statistics.median(getattr(r, f) for r in results) for f in ("rps", "p50_ms", "p99_ms"))
    )


def run(runs: int, seconds: int) -> str:
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (apt-get install wrk)")
    ports = {name: free_port() for name in ("redis", "api", "bare", "get")}
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "PORT": str(ports["api"]),
        "APP_ENV": "test",
    }
    urls = {name: f"http://127.0.0.1:{ports[name]}/me" for name in ("bare", "get", "api")}
    names = {
        "bare": "bare aiohttp handler",
        "get": "aiohttp + one Redis GET",
        "api": "GET /me (JWT + session check)",
    }
    py = sys.executable
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [
                    "redis-server",
                    "--port",
                    str(ports["redis"]),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tempfile.mkdtemp(),
                ]
            )
        )
        stack.enter_context(process([py, "-m", "service"], env))
        stack.enter_context(process([py, "-m", "bench.ceilings", "bare", str(ports["bare"])]))
        stack.enter_context(
            process([py, "-m", "bench.ceilings", "redis", str(ports["get"]), redis_url])
        )
        for url in urls.values():
            wait_http(url)
        token = login(f"http://127.0.0.1:{ports['api']}")
        table: dict[tuple[str, int], list[Result]] = {}
        storm: dict[str, list[Result]] = {"alone": [], "storm": []}
        storm_logins: list[int] = []
        for _ in range(runs):
            for connections in (32, 256):
                for name, url in urls.items():
                    table.setdefault((name, connections), []).append(
                        wrk(url, connections, seconds, token)
                    )
            storm["alone"].append(wrk(urls["api"], 32, seconds, token))
            stormer = subprocess.Popen(
                [
                    py,
                    "-m",
                    "bench.storm",
                    f"http://127.0.0.1:{ports['api']}",
                    str(seconds + 1),
                    "8",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            storm["storm"].append(wrk(urls["api"], 32, seconds, token))
            storm_logins.append(int(stormer.communicate()[0]))
    return report(table, storm, storm_logins, names, runs, seconds)


def report(
    table: dict[tuple[str, int], list[Result]],
    storm: dict[str, list[Result]],
    storm_logins: list[int],
    names: dict[str, str],
    runs: int,
    seconds: int,
) -> str:
    lines = [
        START,
        "## API: GET /me against its ceilings",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}. "
        f"Command: `python -m bench.bench_api --runs {runs} --seconds {seconds}`. "
        f"Each figure is the median of {runs} runs of `wrk -t1 -d{seconds}s`; the three "
        "targets run one after another inside each run, each as one process.",
        "",
        "| target | connections | requests/s | p50 ms | p99 ms | ratio to one-GET |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for connections in (32, 256):
        ceiling = median(table[("get", connections)]).rps
        for name in ("bare", "get", "api"):
            m = median(table[(name, connections)])
            lines.append(
                f"| {names[name]} | {connections} | {m.rps:,.0f} | {m.p50_ms:.2f} | "
                f"{m.p99_ms:.2f} | {m.rps / ceiling:.2f}x |"
            )
    alone, stormy = median(storm["alone"]), median(storm["storm"])
    lines += [
        "",
        "/me at 32 connections, alone and while 8 clients sign in as fast as they can "
        f"(median {statistics.median(storm_logins) / (seconds + 1):.1f} sign-ins/s):",
        "",
        "| condition | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| alone | {alone.rps:,.0f} | {alone.p50_ms:.2f} | {alone.p99_ms:.2f} |",
        f"| login storm | {stormy.rps:,.0f} | {stormy.p50_ms:.2f} | {stormy.p99_ms:.2f} |",
        "",
        f"p99 under the storm / p99 alone: **{stormy.p99_ms / alone.p99_ms:.2f}x**.",
        END,
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    section = run(args.runs, args.seconds)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
