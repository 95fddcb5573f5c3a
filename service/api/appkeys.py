"""Typed keys of what the API app alone holds (the shared ones: service/runtime/appkeys.py)."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from service.api.metrics import ApiMetrics
from service.api.signin import SignIn
from service.events.deliveries import DeliveryLog
from service.events.endpoints import EndpointStore
from service.sessions.callers import Authenticator
from service.sessions.outbox import Outbox
from service.ssf.poll import PollStore
from service.ssf.signing import Signer
from service.ssf.store import ReceiverStore
from service.users.devicetokens import DeviceTokens
from service.users.directory import UserDirectory
from service.users.limiter import LoginLimiter
from service.users.passwords import PasswordChecker
from service.users.upgrade import HashUpgrades

LIMITER = web.AppKey("limiter", LoginLimiter)
USERS = web.AppKey("users", UserDirectory)
PASSWORDS = web.AppKey("passwords", PasswordChecker)
METRICS = web.AppKey("metrics", ApiMetrics)
DEVICE_TOKENS = web.AppKey("device_tokens", DeviceTokens)
AUTH = web.AppKey("auth", Authenticator)
SIGN_IN = web.AppKey("sign_in", SignIn)
HASH_UPGRADES = web.AppKey("hash_upgrades", HashUpgrades)
WEBHOOKS = web.AppKey("webhooks", EndpointStore)
DELIVERIES = web.AppKey("deliveries", DeliveryLog)
OUTBOX = web.AppKey("outbox", Outbox)
SSF_RECEIVERS = web.AppKey("ssf_receivers", ReceiverStore)
SSF_SIGNER = web.AppKey("ssf_signer", Signer)
SSF_POLL = web.AppKey("ssf_poll", PollStore)
# Long polls waiting in this process, per stream (bounded per stream: see api/ssf.py).
SSF_WAITING = web.AppKey("ssf_waiting", Counter[str])
