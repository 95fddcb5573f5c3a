"""Refused `Origin`s at the gateway, logged so that a wrong ALLOWED_ORIGINS can be seen.

A page whose origin is refused only says "Reconnecting…" and tries again and again, so
each origin is logged at most once a minute (by the injected clock), with how many
refusals the minute hid. Memory is bounded: past CAPACITY origins seen within the
minute, any further new ones share one line a minute.
"""

from __future__ import annotations

import logging

from service.clock import Clock

log = logging.getLogger(__name__)

INTERVAL_MS = 60_000
CAPACITY = 256
MAX_SHOWN = 200  # characters of an origin kept and logged; a header can be long


class RefusedOrigins:
    def __init__(self, clock: Clock, allowed: frozenset[str]) -> None:
        self.clock = clock
        self.allowed = ", ".join(sorted(allowed))
        # origin (None: the shared entry past CAPACITY) -> [logged at ms, refusals since]
        self._seen: dict[str | None, list[int]] = {}

    @property
    def remembered(self) -> int:
        """How many origins (and shared entries) are kept: the memory this costs."""
        return len(self._seen)

    def refused(self, origin: str) -> None:
        """Count a refusal of `origin`; log it unless it was logged within the minute."""
        now = self.clock.now_ms()
        key = self._key(origin[:MAX_SHOWN], now)
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < INTERVAL_MS:
            entry[1] += 1
            return
        hidden = entry[1] if entry else 0
        self._seen[key] = [now, 0]
        log.warning(
            "refused a WebSocket from origin %r: not in ALLOWED_ORIGINS (%s)%s%s",
            origin[:MAX_SHOWN],
            self.allowed,
            f"; {hidden} more refusals in the last minute" if hidden else "",
            "; too many origins to log each, more are left out" if key is None else "",
        )

    def _key(self, origin: str, now: int) -> str | None:
        if origin in self._seen or len(self._seen) < CAPACITY:
            return origin
        # Full: forget what is older than the interval, then share one entry if still full.
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < INTERVAL_MS}
        return origin if len(self._seen) < CAPACITY else None
