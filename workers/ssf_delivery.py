"""SSF streams as targets of the delivery duty (docs/SSF.md).

An enabled stream gets an EndpointQueue like a webhook endpoint, with its own cursor and
pending set in each slot's state: order per user, retries, leases and recovery after a
kill -9 are the duty's. This module holds what differs: each message is a SET signed for
the stream; a push stream POSTs it (RFC 8935: 202 delivered, 400 `{err, description}`
failed for good, anything else retried on the webhook schedule), a poll stream appends
it to its poll store (RFC 8936), where it waits for the receiver's acknowledgement. The
stream's own SETs (verification, stream-updated) are queued by the API and sent here by
the process that holds the slot of their list.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
import msgspec
from redis.crc import key_slot
from redis.exceptions import RedisError

from service.engine.connect import RedisClient
from service.engine.errors import REDIS_DOWN
from service.events import messages, schedule
from service.sessions import keys
from service.sessions.outbox import Pending, Subscriber
from service.settings import Settings
from service.ssf import sets
from service.ssf.poll import PollStore
from service.ssf.signing import Signer
from service.ssf.store import POLL, Receiver, Stream
from workers.delivery_queue import EndpointQueue, Item
from workers.webhook_http import Answer, post

log = logging.getLogger(__name__)

SET_MEDIA = "application/secevent+jwt"
CONTROL_BATCH = 10


@dataclass(slots=True)
class StreamTarget:
    """A receiver's stream, as a queue of the duty knows its target."""

    receiver: Receiver
    stream: Stream

    @property
    def id(self) -> str:
        return self.stream.stream_id

    @property
    def subscriber(self) -> Subscriber:
        return self.stream.subscriber

    @property
    def enabled(self) -> bool:
        return self.stream.status == "enabled"

    @property
    def host(self) -> str:
        return self.stream.endpoint_url.split("/")[2] if "//" in self.stream.endpoint_url else "?"

    def headers(self) -> dict[str, str]:
        auth = self.stream.authorization_header
        return {"Accept": "application/json", **({"Authorization": auth} if auth else {})}


def targets_of(receivers: list[Receiver]) -> list[StreamTarget]:
    return [StreamTarget(r, r.stream) for r in receivers if r.stream is not None]


class SetSender:
    """Signs and hands over one stream's SETs; the duty records what came of each."""

    def __init__(
        self, client: RedisClient, settings: Settings, signer: Signer, http: aiohttp.ClientSession
    ) -> None:
        self.redis, self.signer, self.http = client, signer, http
        self.issuer = settings.ssf_issuer_url
        self.schedule = settings.webhook_retry_schedule
        self.poll = PollStore(client, settings.events_retention * 1000)
        self._controls: dict[str, asyncio.Task[None]] = {}

    def wanted(self, target: StreamTarget, item: Item) -> bool:
        stream, event = target.stream, item.event
        return (
            event.at >= stream.drop_before_ms
            and sets.OUTBOX_TYPE[event.type] in stream.events_delivered
            and stream.wants(event.user)
        )

    async def send(self, target: StreamTarget, item: Item, now_ms: int) -> Answer:
        """One attempt: the Answer says how it went (status 202: delivered)."""
        pending = item.pending
        txn = messages.message_id(pending.slot, pending.event_id)
        claims = sets.outbox_set(
            self.issuer, target.receiver.audience, target.id, txn, item.event, now_ms
        )
        token = self.signer.sign(claims)
        if target.stream.delivery_method == POLL:
            try:
                await self.poll.append(target.id, claims["jti"], token, now_ms)
            except (RedisError, *REDIS_DOWN) as exc:
                return Answer(None, error=f"poll store not written: {exc}")
            return Answer(202)
        return await post(
            self.http, target.stream.endpoint_url, token.encode(), target.headers(),
            content_type=SET_MEDIA,
        )  # fmt: skip

    def retry_delay(self, pending: Pending, answer: Answer) -> float | None:
        return schedule.next_delay(self.schedule, pending.attempts, answer.retry_after)

    # -- the stream's own SETs ---------------------------------------------------------

    def send_controls(self, targets: list[StreamTarget], held: set[int]) -> None:
        """Start sending each held push stream's queued verification and stream-updated
        SETs (one task per stream at a time)."""
        for target in targets:
            if target.stream.delivery_method == POLL:
                continue
            key = keys.ssf_control(target.id)
            if key_slot(key.encode()) not in held:
                continue
            task = self._controls.get(target.id)
            if task is None or task.done():
                self._controls[target.id] = asyncio.create_task(self._controls_of(target, key))

    async def _controls_of(self, target: StreamTarget, key: str) -> None:
        try:
            for token in await self.redis.lrange(key, 0, CONTROL_BATCH - 1):
                answer = await post(
                    self.http, target.stream.endpoint_url, token.encode(), target.headers(),
                    content_type=SET_MEDIA,
                )  # fmt: skip
                if answer.status not in (202, 400):
                    log.warning("SSF stream %s: its SET not sent: %s", target.id, answer.reason)
                    return  # in order: the next try starts with this one
                if answer.status == 400:
                    log.warning("SSF stream %s refused its SET: %s", target.id, refusal(answer))
                await self.redis.lrem(key, 1, token)
        except (RedisError, *REDIS_DOWN) as exc:
            log.warning("SSF stream %s: its SETs not read (%s)", target.id, exc)

    async def close(self) -> None:
        for task in self._controls.values():
            task.cancel()
        await asyncio.gather(*self._controls.values(), return_exceptions=True)


class _Refusal(msgspec.Struct):
    err: str = ""
    description: str = ""


def refusal(answer: Answer) -> str:
    """A receiver's 400 body (RFC 8935 §2.4: {err, description}), for the log."""
    try:
        found = msgspec.json.decode(answer.body, type=_Refusal)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "HTTP 400 without {err, description}"
    return f"{found.err[:64]}: {found.description[:200]}"


def is_queue_of_stream(queue: EndpointQueue) -> bool:
    return isinstance(queue.endpoint, StreamTarget)
