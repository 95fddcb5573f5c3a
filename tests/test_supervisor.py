"""The supervisor's rules on children that keep dying (forked from the test itself)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.runtime import supervisor
from service.runtime.supervisor import Supervisor

FATAL = 7


def crashing_child(starts: Path, crashes: int) -> Callable[[Callable[[], None]], int]:
    """A child that notes when it started and exits at once: 1 `crashes` times, then FATAL."""

    def child(ready: Callable[[], None]) -> int:
        with starts.open("a") as log:
            log.write(f"{time.monotonic()}\n")
        return FATAL if len(starts.read_text().splitlines()) > crashes else 1

    return child


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAY", 0.1)


@pytest.mark.usefixtures("quick")
def test_a_crash_loop_backs_off_then_a_fatal_status_stops_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    status = Supervisor("test", 1, crashing_child(starts, 3), fatal=frozenset({FATAL})).run("x")
    assert status == FATAL
    delays = [line for line in caplog.messages if "starting another in" in line]
    assert [line.rsplit(" ", 1)[1] for line in delays] == ["0.1s", "0.2s", "0.4s"]
    times = [float(t) for t in starts.read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= delay for gap, delay in zip(gaps, [0.1, 0.2, 0.4], strict=True))
    assert f"exited with status {FATAL}: stopping the others" in caplog.text


@pytest.mark.usefixtures("quick")
def test_a_child_that_lived_long_enough_restarts_without_delay_growing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "STABLE_AFTER", 0.0)  # every child counts as stable
    starts = tmp_path / "starts"
    Supervisor("test", 1, crashing_child(starts, 3), fatal=frozenset({FATAL})).run("x")
    delays = [line.rsplit(" ", 1)[1] for line in caplog.messages if "another in" in line]
    assert delays == ["0.1s", "0.1s", "0.1s"]
