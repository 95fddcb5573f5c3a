"""Typed application keys shared by the gateway's modules."""

from __future__ import annotations

import redis.asyncio as redis
from aiohttp import web

from service.settings import Settings
from service.store import SessionStore
from service.tokens import TokenCodec
from workers.hub import Hub
from workers.listener import Listener
from workers.metrics import Metrics
from workers.sweeper import Sweeper

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
STORE = web.AppKey("store", SessionStore)
TOKENS = web.AppKey("tokens", TokenCodec)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
LISTENER = web.AppKey("listener", Listener)
SWEEPER = web.AppKey("sweeper", Sweeper)
# Seconds between pings; a peer that doesn't answer within half of it is dropped.
HEARTBEAT_INTERVAL = web.AppKey("heartbeat_interval", float)
