"""WEB_CONCURRENCY and GATEWAY_CONCURRENCY: children sharing a port, replaced when they die,
all stopped by one SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PASSWORD, wait_until
from tests.devices import Device
from tests.processes import Process, running

CONCURRENCY = {"service": "WEB_CONCURRENCY", "workers": "GATEWAY_CONCURRENCY"}


def answering_pid(process: Process) -> int:
    """The pid in /healthz, on a connection of its own (SO_REUSEPORT picks a child per
    connection)."""
    with urllib.request.urlopen(process.url + "/healthz", timeout=5) as resp:
        return int(json.loads(resp.read())["pid"])


def pids_answering(process: Process, count: int, wait: float = 10) -> set[int]:
    """Ask until `count` different processes have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + wait
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} answered"
        seen.add(answering_pid(process))
    return seen


def children_of(parent: int) -> set[int]:
    """Live (not zombie) processes whose parent is `parent`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("module", ["service", "workers"])
def test_children_share_the_port_and_a_dead_one_is_replaced(
    tmp_path: Path, redis_url: str, module: str
) -> None:
    with running(module, redis_url, tmp_path, **{CONCURRENCY[module]: "2"}) as supervised:
        assert supervised.proc is not None
        parent = supervised.proc.pid
        first = pids_answering(supervised, 2)
        assert first == children_of(parent)
        assert "listening on" in supervised.log()
        assert f"(2 processes: {', '.join(map(str, sorted(first)))})" in supervised.log()

        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: not alive(killed), 5, "the killed child is still there")
        wait_until(lambda: len(children_of(parent)) == 2, 10, "no child took its place")
        replacement = children_of(parent) - first
        assert len(replacement) == 1
        assert pids_answering(supervised, 2) == children_of(parent)
        log = supervised.log()
        assert f"process {killed} was killed by SIGKILL; starting another in" in log
        assert f"process {replacement.pop()} listening (in place of one" in log

        children = children_of(parent)
        started = time.monotonic()
        supervised.proc.send_signal(signal.SIGTERM)
        assert supervised.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
        assert not any(alive(pid) for pid in children)
    assert "Traceback" not in supervised.log()


def sockets_on_port(pid: int, port: int) -> int:
    """Established connections to local `port` that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            count += local_port == port and state == "01" and inode in inodes
    return count


async def test_notices_reach_devices_on_every_gateway_child(tmp_path: Path, redis_url: str) -> None:
    """Each child has its own pub/sub connections: a sign-out reaches devices on both."""
    with (
        running("service", redis_url, tmp_path, MAX_SESSIONS_PER_USER="50") as api,
        running("workers", redis_url, tmp_path, GATEWAY_CONCURRENCY="2") as gateway,
    ):
        assert gateway.proc is not None
        children = children_of(gateway.proc.pid)
        url = f"ws://127.0.0.1:{gateway.port}/ws"
        async with aiohttp.ClientSession() as http:
            devices: list[Device] = []
            # SO_REUSEPORT picks a child per connection: connect until both hold some.
            while len(devices) < 40 and not all(
                sockets_on_port(child, gateway.port) for child in children
            ):
                body = {"username": "alice", "password": PASSWORD, "device_name": "d"}
                async with http.post(f"{api.url}/login", json=body) as resp:
                    token = (await resp.json())["token"]
                devices.append(await Device.connect(http, url, token))
                await devices[-1].ready()
            assert all(sockets_on_port(child, gateway.port) for child in children)
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{api.url}/logout-all", headers=headers) as resp:
                assert resp.status == 200
            # Earlier devices first hear of the later sign-ins.
            notices = await asyncio.gather(*(d.until("session.revoked") for d in devices))
        assert {notice["reason"] for notice in notices} == {"logout_all"}
