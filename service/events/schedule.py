"""When a failed message is tried again: Standard Webhooks' schedule, with jitter.

The schedule lists the delay before each attempt, the first one's (0: at once) included;
after its last attempt a message has failed. A `Retry-After` answered with 429 or 503
replaces the next delay, capped at the schedule's longest, so a receiver can slow us down
but never park a message for longer than the schedule would.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2  # each delay is drawn from +-20% of the schedule's, so retries do not stampede
RETRY_AFTER_STATUSES = (429, 503)


def next_delay(
    schedule: Sequence[float],
    attempts: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts` of them failed; None: give up."""
    if attempts >= len(schedule):
        return None
    if retry_after is not None:
        return min(max(retry_after, 0.0), max(schedule))
    return schedule[attempts] * (1 + JITTER * (2 * (rng or random).random() - 1))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks for (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
