"""Start-up that explains itself: production refusals, a busy port, a missing dev tool."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from service.engine.devredis import answers
from tests.conftest import ROOT, free_port
from tests.processes import Process, process_env, running

MODULES = ("service", "workers")
PORT_VARIABLE = {"service": "PORT", "workers": "GATEWAY_PORT"}


def commands_mentioning(text: str) -> list[str]:
    """Command lines of the machine's processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if text in command:
            found.append(command)
    return found


def run_watching_for_redis(module: str, env: dict[str, str], dev_port: int) -> tuple[int, str]:
    """Run `python -m module` to its end, checking all along that no Redis is started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        assert not commands_mentioning(f"--port {dev_port}"), "a redis-server was started"
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.02)
    out, err = proc.communicate()
    assert not commands_mentioning(f"--port {dev_port}")
    assert not answers("127.0.0.1", dev_port), "an embedded Redis was started"
    return proc.returncode, out + err


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("missing", ["REDIS_URL", "JWT_SECRET", "USERS_FILE"])
def test_production_refuses_what_development_would_make_up(module: str, missing: str) -> None:
    dev_port = free_port()  # where development would look for Redis, then embed one
    env = process_env(
        "redis://127.0.0.1:1/0",  # nothing answers there either
        APP_ENV="production",
        DEV_REDIS_PORT=str(dev_port),
        **{PORT_VARIABLE[module]: str(free_port())},
    )
    del env[missing]
    status, output = run_watching_for_redis(module, env, dev_port)
    assert status == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert f"{missing} is required when APP_ENV=production" in lines[0]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_a_busy_port_is_one_line(
    tmp_path: Path, redis_url: str, module: str, concurrency: str
) -> None:
    concurrency_variable = "WEB_CONCURRENCY" if module == "service" else "GATEWAY_CONCURRENCY"
    with running(module, redis_url, tmp_path, **{concurrency_variable: "2"}) as first:
        env = process_env(
            redis_url,
            **{PORT_VARIABLE[module]: str(first.port), concurrency_variable: concurrency},
        )
        second = subprocess.run(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert second.returncode == 3
    assert second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"port {first.port} is in use" in lines[0]
    assert PORT_VARIABLE[module] in lines[0]


def test_without_fakeredis_a_missing_dev_redis_is_one_line(tmp_path: Path) -> None:
    """A production install has no fakeredis; development without it says what to do."""
    hidden = tmp_path / "hide" / "fakeredis"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed')\n")
    (tmp_path / "bin").mkdir()  # no redis-server on PATH
    env = process_env(
        "",
        PORT=str(free_port()),
        DEV_REDIS_PORT=str(free_port()),
        PATH=str(tmp_path / "bin"),
        PYTHONPATH=str(hidden.parent),
    )
    del env["REDIS_URL"]
    proc = Process("service", int(env["PORT"]), env, tmp_path / "service.log")
    with pytest.raises(RuntimeError, match="exited early"):
        proc.start()
    assert proc.stop() == 2
    log = proc.log()
    assert "no fakeredis installed" in log
    assert "pip install '.[run]'" in log
    assert "Traceback" not in log


def test_development_tools_stay_out_of_a_production_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = " ".join(project["dependencies"])
    assert "fakeredis" not in needed
    assert "honcho" not in needed
    run = " ".join(project["optional-dependencies"]["run"])
    assert "fakeredis" in run and "honcho" in run
    assert "sessionwire[run]" in project["optional-dependencies"]["dev"]
