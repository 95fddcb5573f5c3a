"""Metrics that count every process of a role, where several share its port.

With WEB_CONCURRENCY or GATEWAY_CONCURRENCY above 1 a scrape reaches one process of many,
so each process keeps its metrics in files of a directory the supervisor makes for the run
(prometheus-client's multiprocess mode), and /metrics adds up every process's files:
counters and histograms summed over every process that ran (those that died included, so
they never go back), gauges over the live ones (the supervisor drops a dead child's). The
directory is removed when the supervisor stops; a supervisor killed with SIGKILL leaves it
in the temporary directory, and the next run makes its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, values

# prometheus-client finds its directory here, in every process forked after it is set.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_directory: Path | None = None


@contextmanager
def shared_between_processes(what: str) -> Iterator[Path]:
    """For the block, metrics made from now on are kept in a fresh directory's files.

    Call it before any metric is made (before the app is built): a metric's storage is
    chosen when it is made.
    """
    global _directory
    path = Path(tempfile.mkdtemp(prefix=f"sessionwire-{what.lower()}-metrics-"))
    os.environ[DIRECTORY_VARIABLE] = str(path)
    values.ValueClass = values.MultiProcessValue()
    _directory = path
    try:
        yield path
    finally:
        _directory = None
        shutil.rmtree(path, ignore_errors=True)


def process_ended(pid: int) -> None:
    """Forget a dead process's gauges (its counters stay counted)."""
    if _directory is not None:
        multiprocess.mark_process_dead(pid, str(_directory))


def exposed(registry: CollectorRegistry) -> CollectorRegistry:
    """What /metrics shows: this process's `registry`, or every process's files."""
    if _directory is None:
        return registry
    every_process = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_process, path=str(_directory))
    return every_process
