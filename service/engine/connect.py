"""Connecting to Redis, one server or a Redis Cluster: patient at start, self-healing after.

`REDIS_URL` may name any node of a cluster; with `REDIS_CLUSTER=auto` the node is asked
at start (`INFO cluster`) which kind of client to use. Either way the rest of the code
gets one client and its engine (service/engine/base.py) and needs to know no more.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry  # the sync Retry can't catch an awaited error
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from service.backoff import Backoff
from service.settings import ConfigError, Settings

log = logging.getLogger(__name__)

RedisClient = redis.Redis | RedisCluster

STARTUP_BACKOFF = (0.1, 5.0)
# A single server's pool blocks (briefly) for a free connection past this; the cluster
# client has no such pool and fails at once (MaxConnectionsError), so the bound is per
# node and generous: 256 concurrent requests must never meet it.
MAX_CONNECTIONS = 512
CLIENT_OPTIONS = {"decode_responses": True, "socket_connect_timeout": 2, "socket_timeout": 5}


def single_client(url: str) -> redis.Redis:
    """A pooled client that fails fast while Redis is down and reconnects by itself.

    Its waiters are not served in order: with 64 connections and 256 concurrent requests,
    p99 was ~0.9 s in bench/bench_api.py, against ~0.2 s with room for all of them.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
        max_connections=MAX_CONNECTIONS,
        timeout=5,
        **CLIENT_OPTIONS,
    )
    return redis.Redis.from_pool(pool)


def cluster_client(url: str) -> RedisCluster:
    if (urlsplit(url).path or "/0").strip("/") not in ("", "0"):
        raise ConfigError("REDIS_URL names a database other than 0; a Redis Cluster has only 0")
    return RedisCluster.from_url(url, max_connections=MAX_CONNECTIONS, **CLIENT_OPTIONS)


async def wait_until_up(ping: Callable[[], object], url: str, what: str = "Redis") -> None:
    """Call `ping` until it succeeds, backing off, and log every failed try (the caller
    says, once, what it connected to)."""
    backoff, attempt = Backoff(*STARTUP_BACKOFF), 1
    while True:
        try:
            await ping()  # type: ignore[misc]
            return
        except (RedisError, RedisClusterException) as exc:
            log.warning(
                "%s at %s not answering (try %d: %s); retrying in %.1fs",
                what,
                redact(url),
                attempt,
                exc,
                backoff.delay,
            )
        await backoff.wait()
        attempt += 1


async def is_cluster(client: redis.Redis) -> bool:
    """Whether the server is a cluster node; a server without INFO (fakeredis) is not."""
    try:
        info = await client.info("cluster")
    except ResponseError:
        return False
    return bool(info.get("cluster_enabled"))


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[RedisClient]:
    """The process's client, once the server (or every slot of the cluster) answers."""
    url = settings.effective_redis_url
    probe = single_client(url)
    probe.connection_pool.connection_kwargs["db"] = 0  # a cluster node refuses SELECT
    try:
        await wait_until_up(probe.ping, url)
        cluster = settings.redis_cluster == "yes" or (
            settings.redis_cluster == "auto" and await is_cluster(probe)
        )
    finally:
        await probe.aclose()
    if not cluster:
        client: RedisClient = single_client(url)
        log.info("connected to Redis at %s", redact(url))
    else:
        client = cluster_client(url)
        # Loads the slot map; it fails while any slot is unserved.
        await wait_until_up(client.initialize, url, "Redis Cluster")
        masters = len(client.get_primaries())
        log.info("connected to a Redis Cluster of %d masters at %s", masters, redact(url))
    try:
        yield client
    finally:
        await client.aclose()


async def warn_if_not_persistent(client: redis.Redis) -> None:
    """Warn when Redis does not log writes to disk (AOF): a restart from an older snapshot
    would bring revoked sessions back. A server that refuses CONFIG is not an error."""
    try:
        answer = await client.config_get("appendonly")
    except ResponseError as exc:
        log.info("could not check Redis persistence (CONFIG GET refused: %s)", exc)
        return
    except RedisError as exc:
        log.warning("could not check Redis persistence: %s", exc)
        return
    if answer.get("appendonly") != "yes":
        log.warning(
            "Redis persistence (AOF) is off: after a Redis restart, sessions revoked since "
            "the last snapshot would be accepted again. Set appendonly yes (see docs/SECURITY.md)"
        )


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
