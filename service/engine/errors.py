"""What "Redis is unavailable" looks like to a caller, on either engine."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What "Redis is unavailable" looks like to a caller; mapped to 503 at the edge. redis-py
# wraps socket errors in its own ConnectionError (MaxConnectionsError and BusyLoadingError
# are ones too), so a plain OSError is never Redis's. A cluster adds its own: CLUSTERDOWN
# and TRYAGAIN while slots move or a master fails over, MOVED/ASK past the client's retries,
# a slot no node serves (SlotNotCoveredError, not even a RedisError), a demoted master.
REDIS_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    OutOfMemoryError,
    RedisClusterException,
)

_CLIENT = Path(redis.__file__).parent


def broke_in_the_client(exc: BaseException) -> bool:
    """An error that is not of redis-py's own kinds but came out of a call into redis-py.

    Its connections race with each other while a node fails (seen with 8.1 in a cluster
    failover: a connection dropped by another task mid-connect raised AttributeError from
    its vanished writer), and a connection it makes while descriptors run out reads its
    own package metadata first (OSError EMFILE). For the caller that is Redis being
    unavailable, not a bug of ours: a 503, and the next request gets a fresh connection.
    """
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).is_relative_to(_CLIENT):
            return True
        tb = tb.tb_next
    return False


def redis_trouble(exc: BaseException) -> bool:
    """Whether `exc` means Redis is unavailable (see REDIS_DOWN and broke_in_the_client)."""
    return isinstance(exc, (RedisError, *REDIS_DOWN)) or broke_in_the_client(exc)
