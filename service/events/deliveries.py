"""The delivery log: each endpoint's recent attempts, for the admin API to show.

Each shard of slots has its own capped stream per endpoint, written only by the worker that
holds the shard's lease, so no key takes every delivery; a listing merges the shards and
keeps each message's latest record: its state now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from service.engine.base import Engine
from service.engine.connect import RedisClient
from service.sessions import keys
from service.sessions.outbox import KeyedCommand, run_keyed
from service.wire.schemas import WebhookDelivery, from_ms

KEPT = 200  # records per endpoint and shard (about: the stream is trimmed with ~)

State = Literal["pending", "delivered", "failed"]


class DeliveryRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What an attempt left (times in ms; 0: none)."""

    message_id: str
    type: str
    username: str
    state: State
    attempts: int
    last_status: int | None = None
    last_attempt_ms: int = 0
    next_attempt_ms: int = 0
    event_ms: int = 0

    def to_wire(self) -> WebhookDelivery:
        return WebhookDelivery(
            message_id=self.message_id,
            type=self.type,  # type: ignore[arg-type]
            username=self.username,
            state=self.state,
            attempts=self.attempts,
            last_status=self.last_status,
            last_attempt_at=from_ms(self.last_attempt_ms) if self.last_attempt_ms else None,
            next_attempt_at=from_ms(self.next_attempt_ms) if self.next_attempt_ms else None,
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeliveryRecord)


class DeliveryLog:
    def __init__(self, client: RedisClient, engine: Engine) -> None:
        self.redis, self.engine = client, engine

    async def record(self, records: Sequence[tuple[str, int, DeliveryRecord]]) -> None:
        """Append (endpoint id, slot, record) entries, one write per node."""
        commands: list[KeyedCommand] = []
        for endpoint_id, slot, record in records:
            key = keys.webhook_deliveries(endpoint_id, keys.shard_of_slot(slot))
            command = ("XADD", key, "MAXLEN", "~", KEPT, "*", "r", _encoder.encode(record))
            commands.append((key, command))
        await run_keyed(self.engine, commands)

    async def recent(self, endpoint_id: str, limit: int) -> list[DeliveryRecord]:
        """The endpoint's latest `limit` messages, newest event first, each as it stands."""
        shard_keys = [keys.webhook_deliveries(endpoint_id, s) for s in range(keys.OUTBOX_SHARDS)]
        replies = await run_keyed(
            self.engine, [(k, ("XREVRANGE", k, "+", "-", "COUNT", KEPT)) for k in shard_keys]
        )
        latest: dict[str, DeliveryRecord] = {}
        for entries in replies:
            for _, fields in entries:
                raw = fields.get("r") if isinstance(fields, dict) else fields[1]
                try:
                    record = _decoder.decode(raw)
                except msgspec.DecodeError:
                    continue
                latest.setdefault(record.message_id, record)  # newest first per shard
        ordered = sorted(latest.values(), key=lambda r: (r.event_ms, r.message_id), reverse=True)
        return ordered[:limit]

    async def last(self, endpoint_id: str) -> DeliveryRecord | None:
        """The endpoint's most recent attempt, whichever message it was for."""
        shard_keys = [keys.webhook_deliveries(endpoint_id, s) for s in range(keys.OUTBOX_SHARDS)]
        replies = await run_keyed(
            self.engine, [(k, ("XREVRANGE", k, "+", "-", "COUNT", 1)) for k in shard_keys]
        )
        found = []
        for entries in replies:
            for _, fields in entries:
                raw = fields.get("r") if isinstance(fields, dict) else fields[1]
                try:
                    found.append(_decoder.decode(raw))
                except msgspec.DecodeError:
                    continue
        return max(found, key=lambda r: r.last_attempt_ms, default=None)

    async def forget(self, endpoint_id: str) -> None:
        shard_keys = [keys.webhook_deliveries(endpoint_id, s) for s in range(keys.OUTBOX_SHARDS)]
        await run_keyed(self.engine, [(k, ("DEL", k)) for k in shard_keys])
