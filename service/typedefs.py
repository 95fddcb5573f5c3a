"""Typed keys for what the API app holds (the worker's app shares the first five)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.devicetokens import DeviceTokens
from service.eventlog import EventLog
from service.metrics import ApiMetrics
from service.passwords import PasswordChecker
from service.ratelimit import LoginLimiter
from service.settings import Settings
from service.store import SessionStore
from service.tokens import TokenCodec
from service.topology import Topology
from service.users import UserDirectory

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis | RedisCluster)
TOPOLOGY = web.AppKey("topology", Topology)
STORE = web.AppKey("store", SessionStore)
TOKENS = web.AppKey("tokens", TokenCodec)
LIMITER = web.AppKey("limiter", LoginLimiter)
USERS = web.AppKey("users", UserDirectory)
PASSWORDS = web.AppKey("passwords", PasswordChecker)
METRICS = web.AppKey("metrics", ApiMetrics)
EVENTS = web.AppKey("events", EventLog)
DEVICE_TOKENS = web.AppKey("device_tokens", DeviceTokens)
