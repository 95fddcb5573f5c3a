"""Typed keys of what the worker's app alone holds (the shared ones: service/runtime/appkeys.py)."""

from __future__ import annotations

from aiohttp import web

from workers.hub import Hub
from workers.listener import Listener
from workers.metrics import Metrics
from workers.origins import RefusedOrigins
from workers.pacer import TurnPacer
from workers.presence import PresenceKeeper

METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
LISTENER = web.AppKey("listener", Listener)
REFUSED_ORIGINS = web.AppKey("refused_origins", RefusedOrigins)
PRESENCE = web.AppKey("presence", PresenceKeeper)
PACER = web.AppKey("pacer", TurnPacer)
# Seconds between pings; a peer that doesn't answer within half of it is dropped.
HEARTBEAT_INTERVAL = web.AppKey("heartbeat_interval", float)
