"""Typed keys for what the API app holds."""

from __future__ import annotations

import redis.asyncio as redis
from aiohttp import web

from service.metrics import ApiMetrics
from service.ratelimit import LoginLimiter
from service.settings import Settings
from service.store import SessionStore
from service.tokens import TokenCodec
from service.users import UserDirectory

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
STORE = web.AppKey("store", SessionStore)
LIMITER = web.AppKey("limiter", LoginLimiter)
TOKENS = web.AppKey("tokens", TokenCodec)
USERS = web.AppKey("users", UserDirectory)
METRICS = web.AppKey("metrics", ApiMetrics)
