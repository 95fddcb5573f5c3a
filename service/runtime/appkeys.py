"""Typed keys of what both apps hold, the API's and the worker's (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.engine.base import Engine
from service.sessions.eventlog import EventLog
from service.sessions.store import SessionStore
from service.sessions.tickets import SocketTickets
from service.sessions.tokens import TokenCodec
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis | RedisCluster)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", SessionStore)
TOKENS = web.AppKey("tokens", TokenCodec)
EVENTS = web.AppKey("events", EventLog)
# The app's own metrics, served at /metrics (or on METRICS_PORT, GATEWAY_METRICS_PORT).
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
TICKETS = web.AppKey("tickets", SocketTickets)
