"""Several processes on one port: fork children that listen with SO_REUSEPORT, restart the
ones that die, stop them all on SIGTERM.

The parent forks before it has an event loop or has served anything, so every child starts
from the same clean state (settings read, app built but not started) and opens its own
Redis connections, pub/sub and tasks. The parent only ever waits for signals (blocked, then
taken with sigtimedwait), so nothing interrupts its bookkeeping:

- READY_SIGNAL from a child whose socket listens (a real-time signal: queued, so two
  children ready at once are two signals). The parent says "listening" once all have.
- SIGCHLD: a child ended. It is replaced after a delay that doubles with each death
  (RESTART_DELAY up to RESTART_DELAY_CAP), back to the start once a child has lived
  STABLE_AFTER, so a crash loop costs little. A child that exits with a `fatal` status
  (its configuration can't work; a new one would fail alike) stops them all.
- SIGTERM or SIGINT: every child gets SIGTERM at once; any still running after STOP_GRACE
  gets SIGKILL (honcho's own SIGKILL comes at 5 s).
- SIGHUP: passed on to every child (the API rereads its users file).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from service.backoff import Backoff

log = logging.getLogger(__name__)

READY_SIGNAL = signal.SIGRTMIN
WAITED = frozenset({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, READY_SIGNAL})
RESTART_DELAY, RESTART_DELAY_CAP = 0.5, 30.0
STABLE_AFTER = 10.0
STOP_GRACE = 4.5
_PR_SET_PDEATHSIG = 1

# What a child runs: given the function that tells the parent it listens, it serves until
# stopped and returns its exit status.
Child = Callable[[Callable[[], None]], int]


@dataclass
class Slot:
    """One child's place: replaced children take the place of the one that died."""

    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_DELAY, RESTART_DELAY_CAP))


class Supervisor:
    def __init__(
        self,
        what: str,
        count: int,
        child: Child,
        *,
        fatal: frozenset[int] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.what, self.child, self.fatal, self.clock = what, child, fatal, clock
        self.on_exit = on_exit  # told each child's pid once it has ended
        self.slots = [Slot() for _ in range(count)]
        self.ready: set[int] = set()
        self.announced = False
        self.stop_by: float | None = None  # set once stopping: when the rest get SIGKILL
        self.status = 0

    def run(self, address: str) -> int:
        """Start the children and look after them until stopped; the exit status."""
        self.address = address
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        try:
            for slot in self.slots:
                self._start(slot)
            while self.stop_by is None or self._live():
                info = signal.sigtimedwait(WAITED, self._timeout())
                if info is not None:
                    self._on_signal(info.si_signo, info.si_pid)
                self._reap()
                self._restart_due()
                self._kill_if_late()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return self.status

    def _start(self, slot: Slot) -> None:
        parent = os.getpid()
        sys.stdout.flush()  # or the child would write what the parent's buffers hold again
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._be_child(parent)
        slot.pid, slot.started, slot.restart_at = pid, self.clock(), None

    def _be_child(self, parent: int) -> None:
        """Run the child's work and exit; never return into the parent's loop."""
        status = 1
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED)
            _die_with(parent)
            status = self.child(lambda: os.kill(parent, READY_SIGNAL))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _on_signal(self, signo: int, sender: int) -> None:
        if signo == READY_SIGNAL:
            self._on_ready(sender)
        elif signo in (signal.SIGTERM, signal.SIGINT):
            self._stop(0)
        elif signo == signal.SIGHUP:
            self._signal_all(signal.SIGHUP)

    def _on_ready(self, pid: int) -> None:
        if not any(slot.pid == pid for slot in self.slots):
            return
        self.ready.add(pid)
        if self.announced:
            log.info("%s process %d listening (in place of one that ended)", self.what, pid)
        elif len(self.ready) == len(self.slots):
            self.announced = True
            log.info(
                "%s listening on %s (%d processes: %s)",
                self.what,
                self.address,
                len(self.slots),
                ", ".join(str(slot.pid) for slot in self.slots),
            )

    def _reap(self) -> None:
        """Collect the children that ended (only ours: an embedded redis-server is not)."""
        for slot in self.slots:
            if not slot.pid:
                continue
            try:
                pid, wait_status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                pid, wait_status = slot.pid, 0
            if pid:
                self._ended(slot, os.waitstatus_to_exitcode(wait_status))

    def _ended(self, slot: Slot, code: int) -> None:
        pid, lived = slot.pid, self.clock() - slot.started
        slot.pid = 0
        self.ready.discard(pid)
        self.on_exit(pid)
        if self.stop_by is not None:
            return
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        if code in self.fatal:
            log.error("%s process %d %s: stopping the others", self.what, pid, how)
            self._stop(code)
            return
        if lived >= STABLE_AFTER:
            slot.backoff.reset()
        delay = slot.backoff.next()
        slot.restart_at = self.clock() + delay
        log.warning("%s process %d %s; starting another in %.1fs", self.what, pid, how, delay)

    def _restart_due(self) -> None:
        if self.stop_by is not None:
            return
        now = self.clock()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._start(slot)

    def _stop(self, status: int) -> None:
        if self.stop_by is not None:
            return
        self.status, self.stop_by = status, self.clock() + STOP_GRACE
        self._signal_all(signal.SIGTERM)

    def _kill_if_late(self) -> None:
        if self.stop_by is not None and self.clock() >= self.stop_by and self._live():
            log.warning("%s processes still running after %.1fs: killed", self.what, STOP_GRACE)
            self._signal_all(signal.SIGKILL)
            self.stop_by = float("inf")  # once; then wait for them to be reaped

    def _signal_all(self, signo: int) -> None:
        for slot in self.slots:
            if slot.pid:
                os.kill(slot.pid, signo)

    def _live(self) -> bool:
        return any(slot.pid for slot in self.slots)

    def _timeout(self) -> float:
        """Until the next thing due (a restart, the kill), at most a second."""
        due = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        if self.stop_by is not None:
            due.append(self.stop_by)
        return max(0.0, min([self.clock() + 1.0, *due]) - self.clock())


def _signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def _die_with(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies (Linux), so no child outlives it."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's SIGTERM must do
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)
