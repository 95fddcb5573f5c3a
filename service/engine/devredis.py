"""An embedded Redis for development, when none is configured and none answers."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from service.settings import DEFAULT_REDIS_HOST, ConfigError, Settings

log = logging.getLogger(__name__)


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis at host:port replies to PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@contextmanager
def embedded_redis_if_needed(settings: Settings) -> Iterator[None]:
    """Run an embedded Redis for the block when REDIS_URL is unset and nothing answers.

    Uses the `redis-server` binary when it is on PATH, else fakeredis's TCP server.
    Several processes may race here; the losers find the winner's server answering.
    """
    host, port = DEFAULT_REDIS_HOST, settings.dev_redis_port
    if settings.redis_url or answers(host, port):
        yield
        return
    binary = shutil.which("redis-server")
    runner = _redis_server(binary, host, port) if binary else _fakeredis_server(host, port)
    with runner:
        yield


@contextmanager
def _redis_server(binary: str, host: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if _wait_for(host, port, proc) and proc.poll() is None:
            log.warning(
                "no REDIS_URL and nothing at %s:%d: started an embedded redis-server (%s)",
                host,
                port,
                binary,
            )
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@contextmanager
def _fakeredis_server(host: str, port: int) -> Iterator[None]:
    try:
        from fakeredis import TcpFakeServer
    except ImportError:  # a development tool, absent from a production install
        raise ConfigError(
            f"no REDIS_URL, nothing at {host}:{port}, no redis-server on PATH and no fakeredis "
            "installed: set REDIS_URL, install redis-server, or pip install '.[run]'"
        ) from None
    try:
        server = TcpFakeServer((host, port), server_type="redis")
    except OSError:  # another process won the race for the port
        yield
        return
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    log.warning(
        "no REDIS_URL, nothing at %s:%d and no redis-server on PATH: "
        "started an embedded fakeredis server (development only; data is in memory)",
        host,
        port,
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(host: str, port: int, proc: subprocess.Popen[bytes], limit: float = 5.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if answers(host, port):
            return True
        if proc.poll() is not None:  # could not bind: someone else owns the port
            return answers(host, port)
        time.sleep(0.05)
    return False
