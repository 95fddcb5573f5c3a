"""What the benchmarks share: the servers' environment, free ports, waiting for a server,
process CPU time, and the results file."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

# Below the ephemeral range, where none of the tens of thousands of client connections a
# benchmark opens can take a port before its server binds it (a run was lost so).
from tests.rediscluster import free_port as free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "x" * 40


def server_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the API and worker processes a benchmark starts."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "JWT_SECRET": SECRET,
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def wait_http(url: str, timeout: float = 20) -> None:
    """Wait until `url` answers anything at all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error answer means it is up
                return
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its living children so far (Linux
    /proc), so a GATEWAY_CONCURRENCY supervisor counts the processes that serve."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


def waited_seconds(pid: int) -> float:
    """Time the process's main thread (an event loop's) and its living children's have
    spent runnable but waiting for a core so far (/proc schedstat: the scheduler's run
    delay), which no loop can spend on its sockets."""
    waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return waited + sum(waited_seconds(int(child)) for child in children)


def markers(name: str) -> tuple[str, str]:
    """The comments that delimit one benchmark's section of docs/BENCHMARKS.md."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, section: str) -> None:
    """Replace benchmark `name`'s section (between its markers), leaving the rest alone."""
    start, end = markers(name)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
