"""Typed application keys of the worker's app (the first five are the API's too)."""

from __future__ import annotations

from aiohttp import web

from service.eventlog import EventLog
from service.typedefs import REDIS, SETTINGS, STORE, TOKENS, TOPOLOGY
from workers.hub import Hub
from workers.listener import Listener
from workers.metrics import Metrics
from workers.origins import RefusedOrigins

__all__ = ["REDIS", "SETTINGS", "STORE", "TOKENS", "TOPOLOGY"]

EVENTS = web.AppKey("events", EventLog)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
LISTENER = web.AppKey("listener", Listener)
REFUSED_ORIGINS = web.AppKey("refused_origins", RefusedOrigins)
# Seconds between pings; a peer that doesn't answer within half of it is dropped.
HEARTBEAT_INTERVAL = web.AppKey("heartbeat_interval", float)
