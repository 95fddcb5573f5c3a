"""Receivers, their bearer tokens and their streams, as stored.

Receivers are few and read every second by each worker, so they live together in one
small slot (`{ssf}`), as webhook endpoints do: a set of client ids and a hash per
receiver, its stream in the hash as JSON (one stream per receiver). Every change goes
through the endpoints' write script (one slot, never bringing a deleted receiver back).
A client secret is 32 random bytes: its SHA-256 is stored, never the secret. A bearer
token is opaque, random, stored by its SHA-256 with its lifetime as the key's TTL, and
names its receiver: deleting the receiver ends its tokens at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from service.clock import SYSTEM_CLOCK, Clock
from service.engine.connect import RedisClient
from service.sessions import keys
from service.sessions.outbox import Subscriber
from service.sessions.scripts import plain_script

TOKEN_TTL = 15 * 60  # seconds a bearer token lasts
SCOPES = ("ssf.manage", "ssf.read")
POLL = "urn:ietf:rfc:8936"
PUSH = "urn:ietf:rfc:8935"
STATUSES = ("enabled", "paused", "disabled")


class ReceiverNotFound(Exception):
    pass


class Stream(msgspec.Struct, kw_only=True):
    """A receiver's stream (times in ms). `drop_before_ms`: events of the time it was
    disabled are never delivered."""

    stream_id: str
    delivery_method: str
    endpoint_url: str = ""  # push: the receiver's URL; poll: ours
    authorization_header: str = ""
    events_requested: list[str] = []
    events_delivered: list[str] = []
    description: str = ""
    status: str = "enabled"
    reason: str = ""
    created_ms: int = 0
    drop_before_ms: int = 0
    # default_subjects is always ALL: every user's events but those removed (a set: it is
    # asked for every event the stream is offered).
    excluded: set[str] = set()

    @property
    def subscriber(self) -> Subscriber:
        return Subscriber(self.stream_id, (), self.created_ms)

    def wants(self, username: str) -> bool:
        return username not in self.excluded


class Receiver(msgspec.Struct, kw_only=True):
    client_id: str
    name: str
    audience: str
    secret_digest: str = ""
    created_ms: int = 0
    stream: Stream | None = None


class Grant(msgspec.Struct, kw_only=True):
    client_id: str
    scope: str


_json = msgspec.json.Encoder()
_stream = msgspec.json.Decoder(Stream)
_grant = msgspec.json.Decoder(Grant)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _from_hash(client_id: str, fields: dict[str, str]) -> Receiver | None:
    if not fields.get("audience"):
        return None
    stream = None
    if fields.get("stream"):
        try:
            stream = _stream.decode(fields["stream"])
        except msgspec.DecodeError:
            stream = None  # corrupt: as if none, never a 500
    return Receiver(
        client_id=client_id,
        name=fields.get("name", ""),
        audience=fields["audience"],
        secret_digest=fields.get("secret_digest", ""),
        created_ms=int(fields.get("created_ms") or 0),
        stream=stream,
    )


def is_client_id(text: str) -> bool:
    return (
        len(text) == 19
        and text.startswith("rc_")
        and all(c in "0123456789abcdef" for c in text[3:])
    )


class ReceiverStore:
    """Create, read and delete receivers; their streams; their tokens."""

    def __init__(self, client: RedisClient, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis, self.clock = client, clock
        self._write = client.register_script(plain_script("webhook_write"))

    async def create(self, name: str, audience: str) -> tuple[Receiver, str]:
        """A new receiver and its client secret (shown once; only its digest is kept)."""
        secret = secrets.token_urlsafe(32)
        receiver = Receiver(
            client_id="rc_" + secrets.token_hex(8),
            name=name,
            audience=audience,
            secret_digest=_digest(secret),
            created_ms=self.clock.now_ms(),
        )
        values = {
            "name": name,
            "audience": audience,
            "secret_digest": receiver.secret_digest,
            "created_ms": str(receiver.created_ms),
        }
        await self._change(receiver.client_id, "create", values=values)
        return receiver, secret

    async def all(self) -> list[Receiver]:
        ids = sorted(await self.redis.smembers(keys.ssf_receivers()))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(keys.ssf_receiver(client_id))
            found = await pipe.execute()
        receivers = [_from_hash(i, f) for i, f in zip(ids, found, strict=True)]
        return sorted((r for r in receivers if r), key=lambda r: (r.created_ms, r.client_id))

    async def get(self, client_id: str) -> Receiver:
        fields = (
            await self.redis.hgetall(keys.ssf_receiver(client_id))
            if is_client_id(client_id)
            else {}
        )
        receiver = _from_hash(client_id, fields)
        if receiver is None:
            raise ReceiverNotFound(client_id)
        return receiver

    async def delete(self, client_id: str) -> Stream | None:
        """Forget the receiver, its stream and what its poll stream held; its tokens stop
        working at once (each names a receiver that no longer exists)."""
        receiver = await self.get(client_id)
        await self._change(client_id, "delete")
        if receiver.stream is not None:
            await self.drop_poll_store(receiver.stream.stream_id)
        return receiver.stream

    # -- streams ---------------------------------------------------------------------------

    async def create_stream(self, client_id: str, stream: Stream) -> bool:
        """Give the receiver this stream; False when it has one already."""
        await self._change(
            client_id, "update", set_if_absent={"stream": _json.encode(stream).decode()}
        )
        receiver = await self.get(client_id)
        return receiver.stream is not None and receiver.stream.stream_id == stream.stream_id

    async def save_stream(self, client_id: str, stream: Stream) -> None:
        await self._change(client_id, "update", values={"stream": _json.encode(stream).decode()})

    async def delete_stream(self, client_id: str, stream_id: str) -> None:
        await self._change(client_id, "update", unset=["stream"])
        await self.drop_poll_store(stream_id)

    async def drop_poll_store(self, stream_id: str) -> None:
        await self.redis.delete(keys.ssf_poll_order(stream_id), keys.ssf_poll_sets(stream_id))
        await self.redis.delete(keys.ssf_control(stream_id))

    # -- tokens ----------------------------------------------------------------------------

    async def check_secret(self, client_id: str, secret: str) -> Receiver | None:
        try:
            receiver = await self.get(client_id)
        except ReceiverNotFound:
            _digest(secret)  # the same work either way
            return None
        if not hmac.compare_digest(receiver.secret_digest, _digest(secret)):
            return None
        return receiver

    async def issue_token(self, client_id: str, scope: str) -> str:
        token = "sst_" + secrets.token_urlsafe(32)
        grant = _json.encode(Grant(client_id=client_id, scope=scope))
        await self.redis.set(keys.ssf_token(_digest(token)), grant, ex=TOKEN_TTL)
        return token

    async def grant_of(self, token: str) -> Grant | None:
        if not token.startswith("sst_") or len(token) > 100:
            return None
        raw = await self.redis.get(keys.ssf_token(_digest(token)))
        if raw is None:
            return None
        try:
            return _grant.decode(raw)
        except msgspec.DecodeError:
            return None

    async def count_failure(self, client: str, window: int = 60) -> int:
        """Count a failed token request from `client`; how many in the window so far."""
        key = keys.ssf_token_failures(client)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def may_verify(self, stream_id: str, interval: int) -> int:
        """0 when a verification may be sent now (and the interval starts), else the seconds
        until one may (SSF 1.0 min_verification_interval)."""
        key = keys.ssf_verified(stream_id)
        if await self.redis.set(key, 1, nx=True, ex=interval):
            return 0
        return max(1, int(await self.redis.ttl(key)))

    async def failures(self, client: str) -> int:
        return int(await self.redis.get(keys.ssf_token_failures(client)) or 0)

    async def _change(
        self,
        client_id: str,
        op: str,
        *,
        values: dict[str, str] | None = None,
        set_if_absent: dict[str, str] | None = None,
        unset: Sequence[str] = (),
    ) -> None:
        change: dict[str, Any] = {"op": op}
        if values:
            change["set"] = values
        if set_if_absent:
            change["set_if_absent"] = set_if_absent
        if unset:
            change["unset"] = list(unset)
        done = await self._write(
            keys=[keys.ssf_receivers(), keys.ssf_receiver(client_id)],
            args=[client_id, _json.encode(change)],
        )
        if not done:
            raise ReceiverNotFound(client_id)
