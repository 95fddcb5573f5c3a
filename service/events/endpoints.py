"""Webhook endpoints: where events go, which ones, signed with which secrets.

Endpoints are few and read often (each worker process reloads them every second), so they
live together in one small slot (`{wh}`): a set of ids and a hash per endpoint. Every
change is one script that never brings a deleted endpoint back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from service.clock import SYSTEM_CLOCK, Clock
from service.engine.connect import RedisClient
from service.events.messages import new_secret, secret_bytes
from service.sessions import keys
from service.sessions.outbox import Subscriber
from service.sessions.scripts import plain_script
from service.wire.schemas import EVENT_TYPES, Webhook, WebhookDelivery, from_ms

ROTATION_OVERLAP_MS = 24 * 3600 * 1000  # the old secret signs too for this long


class WebhookNotFound(Exception):
    """No endpoint has this id (any more)."""


class Endpoint(msgspec.Struct, kw_only=True):
    """An endpoint as stored (times in ms since the epoch)."""

    id: str
    url: str
    events: tuple[str, ...] = ()  # empty: every type
    description: str = ""
    status: str = "enabled"
    disabled_reason: str | None = None
    secret: str
    previous_secret: str = ""
    previous_until_ms: int = 0
    created_ms: int = 0
    failing_since_ms: int = 0  # first failure since the last success; 0: not failing

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    @property
    def host(self) -> str:
        """The URL's host, for logs (a URL's path or query may hold a token)."""
        return urlsplit(self.url).hostname or "?"

    @property
    def subscriber(self) -> Subscriber:
        return Subscriber(self.id, self.events, self.created_ms)

    def signing_keys(self, now_ms: int) -> list[bytes]:
        """The secrets that sign now: the current one, and the previous for a day."""
        found = [secret_bytes(self.secret)]
        if self.previous_secret and now_ms < self.previous_until_ms:
            found.append(secret_bytes(self.previous_secret))
        return found

    def to_wire(self, last_delivery: WebhookDelivery | None = None) -> Webhook:
        return Webhook(
            id=self.id,
            url=self.url,
            events=list(self.events or EVENT_TYPES),  # type: ignore[arg-type]
            status=self.status,  # type: ignore[arg-type]
            description=self.description,
            created_at=from_ms(self.created_ms),
            disabled_reason=self.disabled_reason,
            last_delivery=last_delivery,
        )


_json = msgspec.json.Encoder()
_events = msgspec.json.Decoder(tuple[str, ...])


def _to_hash(values: dict[str, Any]) -> dict[str, str]:
    return {k: _json.encode(v).decode() if k == "events" else str(v) for k, v in values.items()}


def _from_hash(endpoint_id: str, fields: dict[str, str]) -> Endpoint | None:
    """An endpoint from its hash; a corrupt one counts as none, never a 500."""
    if not fields.get("url") or not fields.get("secret"):
        return None
    try:
        return Endpoint(
            id=endpoint_id,
            url=fields["url"],
            events=_events.decode(fields.get("events") or "[]"),
            description=fields.get("description", ""),
            status=fields.get("status", "enabled"),
            disabled_reason=fields.get("disabled_reason") or None,
            secret=fields["secret"],
            previous_secret=fields.get("previous_secret", ""),
            previous_until_ms=int(fields.get("previous_until_ms") or 0),
            created_ms=int(fields.get("created_ms") or 0),
            failing_since_ms=int(fields.get("failing_since_ms") or 0),
        )
    except (ValueError, msgspec.DecodeError):
        return None


def is_endpoint_id(text: str) -> bool:
    return (
        len(text) == 19
        and text.startswith("ep_")
        and all(c in "0123456789abcdef" for c in text[3:])
    )


class EndpointStore:
    """Create, read, change and delete endpoints; handed a client (decode_responses=True)."""

    def __init__(self, client: RedisClient, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis, self.clock = client, clock
        self._write = client.register_script(plain_script("webhook_write"))

    async def create(self, url: str, events: Sequence[str], description: str) -> Endpoint:
        endpoint = Endpoint(
            id="ep_" + secrets.token_hex(8),
            url=url,
            events=tuple(dict.fromkeys(events)) if set(events) != set(EVENT_TYPES) else (),
            description=description,
            secret=new_secret(),
            created_ms=self.clock.now_ms(),
        )
        values = {f: getattr(endpoint, f) for f in Endpoint.__struct_fields__ if f != "id"}
        values = {k: v for k, v in values.items() if v not in (None, "", 0) or k == "events"}
        await self._change(endpoint.id, "create", values=values)
        return endpoint

    async def all(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        ids = sorted(await self.redis.smembers(keys.webhook_index()))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                pipe.hgetall(keys.webhook(endpoint_id))
            found = await pipe.execute()
        endpoints = [_from_hash(i, fields) for i, fields in zip(ids, found, strict=True)]
        return sorted((e for e in endpoints if e), key=lambda e: (e.created_ms, e.id))

    async def get(self, endpoint_id: str) -> Endpoint:
        fields = (
            await self.redis.hgetall(keys.webhook(endpoint_id))
            if is_endpoint_id(endpoint_id)
            else {}
        )
        endpoint = _from_hash(endpoint_id, fields)
        if endpoint is None:
            raise WebhookNotFound(endpoint_id)
        return endpoint

    async def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        status: str | None = None,
        description: str | None = None,
    ) -> Endpoint:
        """Change what is given; enabling clears why it was disabled and its failures."""
        values: dict[str, Any] = {}
        unset = []
        if url is not None:
            values["url"] = url
        if events is not None:
            values["events"] = (
                tuple(dict.fromkeys(events)) if set(events) != set(EVENT_TYPES) else ()
            )
        if description is not None:
            values["description"] = description
        if status == "enabled":
            values["status"] = "enabled"
            unset += ["disabled_reason", "failing_since_ms"]
        elif status == "disabled":
            values.update(status="disabled", disabled_reason="admin")
        await self._change(endpoint_id, "update", values=values, unset=unset)
        return await self.get(endpoint_id)

    async def rotate(self, endpoint_id: str) -> str:
        """A new secret; the one it replaces keeps signing too for ROTATION_OVERLAP_MS."""
        endpoint = await self.get(endpoint_id)
        secret = new_secret()
        until = self.clock.now_ms() + ROTATION_OVERLAP_MS
        values = {"secret": secret, "previous_secret": endpoint.secret, "previous_until_ms": until}
        await self._change(endpoint_id, "update", values=values)
        return secret

    async def delete(self, endpoint_id: str) -> None:
        if not is_endpoint_id(endpoint_id):
            raise WebhookNotFound(endpoint_id)
        await self._change(endpoint_id, "delete")

    # -- what the delivery duty writes -----------------------------------------------------

    async def disable(self, endpoint_id: str, reason: str) -> None:
        values = {"status": "disabled", "disabled_reason": reason}
        await self._change(endpoint_id, "update", values=values, missing_ok=True)

    async def failing(self, endpoint_id: str, since_ms: int) -> None:
        """Note the endpoint's first failure since its last success (kept if noted)."""
        since = {"failing_since_ms": since_ms}
        await self._change(endpoint_id, "update", set_if_absent=since, missing_ok=True)

    async def recovered(self, endpoint_id: str) -> None:
        await self._change(endpoint_id, "update", unset=["failing_since_ms"], missing_ok=True)

    async def _change(
        self,
        endpoint_id: str,
        op: str,
        *,
        values: dict[str, Any] | None = None,
        set_if_absent: dict[str, Any] | None = None,
        unset: Sequence[str] = (),
        missing_ok: bool = False,
    ) -> None:
        change = {
            "op": op,
            "set": _to_hash(values or {}) or None,
            "set_if_absent": _to_hash(set_if_absent or {}) or None,
            "unset": list(unset) or None,
        }
        done = await self._write(
            keys=[keys.webhook_index(), keys.webhook(endpoint_id)],
            args=[endpoint_id, _json.encode({k: v for k, v in change.items() if v})],
        )
        if not done and not missing_ok:
            raise WebhookNotFound(endpoint_id)
