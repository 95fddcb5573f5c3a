"""Start the real API and worker processes on free ports, for end-to-end tests."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import (
    ROOT,
    TEST_DEV_DIR,
    TEST_HASHING,
    TEST_SECRET,
    TEST_USERS_FILE,
    free_port,
)


class Process:
    """One running `python -m <module>` with its port and log file."""

    def __init__(
        self,
        module: str,
        port: int,
        env: Mapping[str, str],
        log: Path,
        *,
        max_files: int | None = None,
    ) -> None:
        self.module, self.port, self.env, self.log_path = module, port, dict(env), log
        self.max_files = max_files  # RLIMIT_NOFILE (soft and hard), as `ulimit -n` sets it
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_for: str = "/healthz", timeout: float = 20) -> Process:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit_files if self.max_files else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + wait_for, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.module} did not answer {wait_for}:\n{self.log()}")

    def _limit_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def process_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_", "LOGIN_"))}
    env.update(
        REDIS_URL=redis_url,
        JWT_SECRET=TEST_SECRET,
        APP_ENV="test",
        USERS_FILE=str(TEST_USERS_FILE),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        DEV_SECRET_FILE=str(TEST_DEV_DIR / "dev-jwt-secret"),  # the dev SSF key goes there too
        **{name.upper(): str(value) for name, value in TEST_HASHING.items()},
    )
    env.update(extra)
    return env


@contextmanager
def running(
    module: str, redis_url: str, tmp: Path, *, max_files: int | None = None, **extra: str
) -> Iterator[Process]:
    """Run an API (`service`) or worker (`workers`) process for the block."""
    port = free_port()
    port_var = "PORT" if module == "service" else "GATEWAY_PORT"
    env = process_env(redis_url, **{port_var: str(port)}, **extra)
    log = tmp / f"{module}-{port}.log"
    proc = Process(module, port, env, log, max_files=max_files).start()
    try:
        yield proc
    finally:
        proc.stop()
