"""The engine of a client: a cluster's for a RedisCluster, else one server's."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from service.engine.base import Engine
from service.engine.cluster import ClusterEngine
from service.engine.connect import RedisClient
from service.engine.single import SingleEngine


def engine_for(client: RedisClient) -> Engine:
    if isinstance(client, RedisCluster):
        return ClusterEngine(client)
    return SingleEngine(client)
