"""What "Redis is unavailable" looks like to a caller, on either engine."""

from __future__ import annotations

from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
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
