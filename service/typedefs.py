"""Typed keys for what the API app holds (the worker's app shares the first four)."""

from __future__ import annotations

import redis.asyncio as redis
from aiohttp import web

from service.devicetokens import DeviceTokens
from service.metrics import ApiMetrics
from service.passwords import PasswordChecker
from service.ratelimit import LoginLimiter
from service.settings import Settings
from service.store import SessionStore
from service.tokens import TokenCodec
from service.users import UserDirectory

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
STORE = web.AppKey("store", SessionStore)
TOKENS = web.AppKey("tokens", TokenCodec)
LIMITER = web.AppKey("limiter", LoginLimiter)
USERS = web.AppKey("users", UserDirectory)
PASSWORDS = web.AppKey("passwords", PasswordChecker)
METRICS = web.AppKey("metrics", ApiMetrics)
DEVICE_TOKENS = web.AppKey("device_tokens", DeviceTokens)
