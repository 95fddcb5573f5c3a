"""The delivery duty: events out of the outbox, to every webhook endpoint, at least once.

This process delivers the outbox slots of the shards it holds a lease on (shard_leases).
For those slots it hears the wake channels (wakes), takes new events into each enabled
endpoint's pending deliveries with one script per slot (outbox intake: the cursor and the
pending set move together), and hands them to the endpoint's queue (delivery_queue),
which sends them in order per user. Every outcome is written back to the slot's delivery
state: a message is forgotten once delivered or failed for good, and a retry keeps its
attempts and due time. So whichever process holds a shard next (after a kill -9, a lost
lease, a failover) reloads what is pending and carries on; at worst a message in flight is
sent twice, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from redis.exceptions import RedisError

from service.backoff import Backoff
from service.clock import Clock
from service.engine.base import Engine
from service.engine.connect import RedisClient
from service.engine.errors import REDIS_DOWN, redis_trouble
from service.events import messages, schedule
from service.events.deliveries import DeliveryLog, DeliveryRecord
from service.events.endpoints import Endpoint, EndpointStore
from service.sessions import keys
from service.sessions.eventlog import parse_id
from service.sessions.outbox import Outbox, Pending, SlotState
from service.sessions.records import Event
from service.settings import Settings
from service.ssf.signing import load_signer
from service.ssf.store import ReceiverStore
from workers.delivery_queue import EndpointQueue, Item
from workers.metrics import Metrics
from workers.shard_leases import ShardLeases
from workers.ssf_delivery import SetSender, StreamTarget, refusal, targets_of
from workers.tasks import STOP_TIMEOUT, raise_if_cancelling, stop
from workers.wakes import Wakes
from workers.webhook_http import Answer, post

log = logging.getLogger(__name__)

LEASE_EVERY = 0.5  # seconds between lease renewals (a lease lasts 2 s)
RELOAD_EVERY = 1.0  # seconds between reloads of the endpoints
INTAKE_BATCH = 256  # slots per intake round trip
MAX_BACKLOG = 20_000  # messages one endpoint may wait with here; past it intake pauses
BACKOFF = (0.1, 2.0)


@dataclass(slots=True)
class Outcomes:
    """Writes waiting for the next flush: the slots' delivery state and the delivery log."""

    changes: list[tuple[int, str, str | None]] = field(default_factory=list)  # in order
    records: list[tuple[str, int, DeliveryRecord]] = field(default_factory=list)
    # Endpoints to mark disabled (id, reason): after their last record, so whoever sees
    # "disabled" also sees the delivery that disabled it.
    disabled: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes or self.records or self.disabled)


class DeliveryDuty:
    def __init__(
        self,
        client: RedisClient,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        http: aiohttp.ClientSession,
        metrics: Metrics,
    ) -> None:
        self.clock, self.http, self.metrics = clock, http, metrics
        self.schedule = settings.webhook_retry_schedule
        self.retention_ms = settings.events_retention * 1000
        self.disable_after_ms = settings.webhook_disable_after * 1000
        self.outbox = Outbox(client, engine)
        self.store = EndpointStore(client, clock)
        self.deliveries = DeliveryLog(client, engine)
        self.leases = ShardLeases(client)
        self.wakes = Wakes(engine, self._woken, self._subscribed)
        self.endpoints: dict[str, Endpoint] = {}
        signer = load_signer(settings)  # SSF streams are targets too, when SSF is on
        self.receivers = ReceiverStore(client, clock) if signer else None
        self.sets = SetSender(client, settings, signer, http) if signer else None
        self.streams: dict[str, StreamTarget] = {}
        self.queues: dict[str, EndpointQueue] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.held: set[int] = set()  # slots of the shards this process holds
        self.nonempty: set[int] = set()  # held slots whose outbox had events, last we saw
        self._dirty: set[int] = set()  # slots whose outbox may have news
        self._reload: set[int] = set()  # slots whose whole state must be read
        self._work = asyncio.Event()
        self._outcomes = Outcomes()
        self._flush = asyncio.Event()
        self.trim_every = min(60.0, max(0.5, settings.events_retention / 4))
        metrics.webhook_oldest.set_function(self._oldest_age)

    async def run(self) -> None:
        loops = (
            self._keep_leases,
            self._follow_endpoints,
            self._take_in,
            self._write,
            self._trim,
            self.wakes.run,
        )
        tasks = [asyncio.create_task(_forever(loop), name=loop.__name__) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            await stop([*tasks, *self._tasks.values()], STOP_TIMEOUT)
            with contextlib.suppress(Exception):
                await self._write_outcomes()  # what finished last is not sent again
            with contextlib.suppress(Exception):
                await self.leases.leave()  # another process takes over at once
            if self.sets is not None:
                await self.sets.close()

    # -- leases: which slots are ours -------------------------------------------------------

    async def _keep_leases(self) -> None:
        while True:
            gained, lost = await self.leases.update(self.clock.now_ms())
            if lost:
                slots = {s for shard in lost for s in keys.slots_of_shard(shard)}
                self.held -= slots
                self.nonempty -= slots
                for queue in self.queues.values():
                    queue.drop_slots(slots)
                await self.leases.release(lost - self.leases.held)
                log.info("outbox shards %s: no longer delivered here", sorted(lost))
            if gained:
                self.held |= {s for shard in gained for s in keys.slots_of_shard(shard)}
                self.nonempty |= {s for shard in gained for s in keys.slots_of_shard(shard)}
                log.info("outbox shards %s: delivered here", sorted(gained))
            if gained or lost:
                self.metrics.outbox_shards.set(len(self.leases.held))
                self._listen()
            if self._dirty or self._reload:  # left by a full endpoint, or an error
                self._work.set()
            await asyncio.sleep(LEASE_EVERY)

    def _listen(self) -> None:
        """Hear the held slots' wake-ups while some endpoint is enabled (a worker of a
        product without webhooks subscribes nothing)."""
        self.wakes.want(self.held if self.queues else set())

    def _woken(self, slot: int, data: str) -> None:
        if slot in self.held:
            (self._reload if data == "replay" else self._dirty).add(slot)
            self._work.set()

    def _subscribed(self, slots: list[int]) -> None:
        """Subscribed again (or at last): whatever was published unheard is read now."""
        self._reload.update(s for s in slots if s in self.held)
        self._work.set()

    # -- endpoints ------------------------------------------------------------------------

    async def _follow_endpoints(self) -> None:
        backoff = Backoff(RELOAD_EVERY, 5.0)
        while True:
            try:
                endpoints = await self.store.all()
                receivers = await self.receivers.all() if self.receivers else []
                self._apply(endpoints, targets_of(receivers))
                if self.sets is not None:
                    self.sets.send_controls(list(self.streams.values()), self.held)
                backoff.reset()
            except (RedisError, *REDIS_DOWN) as exc:
                raise_if_cancelling()
                log.warning("webhook endpoints not reloaded (%s); retrying", exc)
                backoff.next()
            await asyncio.sleep(backoff.delay)

    def _apply(self, endpoints: Sequence[Endpoint], streams: Sequence[StreamTarget] = ()) -> None:
        """Start a queue for each enabled endpoint and stream, stop the others' (a paused
        stream's cursor and pending deliveries wait, as a disabled endpoint's do)."""
        self.endpoints = {e.id: e for e in endpoints}
        self.streams = {s.id: s for s in streams}
        enabled: dict[str, Endpoint | StreamTarget] = {e.id: e for e in endpoints if e.enabled}
        enabled.update((s.id, s) for s in streams if s.enabled)
        for endpoint_id in list(self.queues):
            if endpoint_id not in enabled:
                self._stop_queue(endpoint_id)
        started = False
        for endpoint_id, endpoint in enabled.items():
            queue = self.queues.get(endpoint_id)
            if queue is None:
                deliver = self._deliver_set if isinstance(endpoint, StreamTarget) else self._deliver
                queue = self.queues[endpoint_id] = EndpointQueue(
                    endpoint,  # type: ignore[arg-type]
                    deliver,
                    self.clock,
                )
                self._tasks[endpoint_id] = asyncio.create_task(
                    queue.run(), name=f"webhook {endpoint_id}"
                )
                started = True
            queue.endpoint = endpoint  # a new URL, secret or filter applies from now on
        if started:  # its pending deliveries (re-enabled) and its first events are read
            self._reload |= self.nonempty
            self._work.set()
        self._listen()

    def _stop_queue(self, endpoint_id: str) -> None:
        queue = self.queues.pop(endpoint_id, None)
        if queue is not None:
            queue.close()
            self._tasks.pop(endpoint_id, None)

    # -- taking events in ---------------------------------------------------------------

    async def _take_in(self) -> None:
        backoff = Backoff(*BACKOFF)
        while True:
            await self._work.wait()
            self._work.clear()
            try:
                await self._load(self._reload & self.held)
                await self._intake()
                backoff.reset()
            except (RedisError, *REDIS_DOWN) as exc:
                raise_if_cancelling()
                log.warning("outbox not read (%s); retrying", exc)
                self._work.set()
                await backoff.wait()

    async def _load(self, slots: set[int]) -> None:
        """Read these slots' whole delivery state: their pending messages go to the queues
        (a second copy is ignored), and slots with events an endpoint lacks become dirty."""
        if not slots or not self.queues:
            self._reload -= slots
            return
        known = set(self.endpoints) | set(self.streams)
        for state in await self.outbox.states(sorted(slots), known):
            await self._load_slot(state)
            self._reload.discard(state.slot)

    async def _load_slot(self, state: SlotState) -> None:
        if state.strays:
            await self.outbox.forget(state.slot, state.strays)
        if not state.last_id and not state.pending:
            self.nonempty.discard(state.slot)
            return
        self.nonempty.add(state.slot)
        pending = [p for p in state.pending if p.endpoint in self.queues]
        events = await self.outbox.events(state.slot, sorted({p.event_id for p in pending}))
        for p in pending:
            event = events.get(p.event_id)
            if event is None:  # trimmed away: past EVENTS_RETENTION
                self._expired(p, None)
            else:
                self.queues[p.endpoint].add(Item(p, event, messages.body(event)))
        last = parse_id(state.last_id) if state.last_id else None
        for queue in self.queues.values():
            cursor = state.cursors.get(queue.endpoint.id, queue.endpoint.subscriber.start)
            if last is not None and parse_id(cursor) < last:
                self._dirty.add(state.slot)

    async def _intake(self) -> None:
        while self._dirty:
            slots = sorted(self._dirty & self.held)[:INTAKE_BATCH]
            self._dirty -= set(slots)
            self._dirty &= self.held
            taking = [q for q in self.queues.values() if q.backlog < MAX_BACKLOG]
            if not slots or not taking:
                return  # nothing to do, or every endpoint is full: a reload comes later
            try:
                intakes = await self.outbox.intake(
                    slots, [q.endpoint.subscriber for q in taking], self.clock.now_ms()
                )
            except BaseException:
                self._dirty.update(slots)
                raise
            for intake in intakes:
                if intake.events:
                    self.nonempty.add(intake.slot)
                bodies: dict[str, bytes] = {}  # one encoding per event for every endpoint
                for queue in taking:
                    for event_id in intake.taken.get(queue.endpoint.id, ()):
                        event = intake.events.get(event_id)
                        if event is None:
                            continue
                        body = bodies.get(event_id) or bodies.setdefault(
                            event_id, messages.body(event)
                        )
                        pending = Pending(
                            intake.slot, queue.endpoint.id, event_id, 0, self.clock.now_ms()
                        )
                        queue.add(Item(pending, event, body))
                if intake.more:
                    self._dirty.add(intake.slot)

    # -- one attempt ------------------------------------------------------------------------

    async def _deliver(self, queue: EndpointQueue, item: Item) -> bool:
        endpoint, pending, event = queue.endpoint, item.pending, item.event
        now = self.clock.now_ms()
        if now - event.at > self.retention_ms:
            self._expired(pending, event)
            return True
        msg_id = messages.message_id(pending.slot, pending.event_id)
        timestamp = now // 1000
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": messages.signature(
                endpoint.signing_keys(now), msg_id, timestamp, item.body
            ),
        }
        answer = await post(self.http, endpoint.url, item.body, headers)
        now = self.clock.now_ms()
        pending.attempts += 1
        self.metrics.webhook_attempts.labels(endpoint.id).inc()
        if answer.delivered:
            self._outcome(endpoint, pending, event, "delivered", answer, now)
            self.metrics.webhook_latency.observe(max(0.0, (now - event.at) / 1000))
            if endpoint.failing_since_ms:
                endpoint.failing_since_ms = 0
                await self._quietly(self.store.recovered(endpoint.id))
            return True
        log.warning(
            "webhook %s to endpoint %s (%s) failed, attempt %d: %s",
            msg_id,
            endpoint.id,
            endpoint.host,
            pending.attempts,
            answer.reason,
        )
        if answer.gone:
            await self._disable(queue, "gone", pending, event, answer, now)
            return False
        if not endpoint.failing_since_ms:
            endpoint.failing_since_ms = now
            await self._quietly(self.store.failing(endpoint.id, now))
        elif now - endpoint.failing_since_ms >= self.disable_after_ms:
            await self._disable(queue, "failing", pending, event, answer, now)
            return False
        delay = schedule.next_delay(self.schedule, pending.attempts, answer.retry_after)
        if delay is None:
            self._outcome(endpoint, pending, event, "failed", answer, now)
            return True
        pending.due_ms = now + round(delay * 1000)
        self._outcome(endpoint, pending, event, "retrying", answer, now)
        return False

    async def _deliver_set(self, queue: EndpointQueue, item: Item) -> bool:
        """One attempt of a SET for an SSF stream (workers/ssf_delivery.py)."""
        target: StreamTarget = queue.endpoint  # type: ignore[assignment]
        pending, event, sender = item.pending, item.event, self.sets
        now = self.clock.now_ms()
        if sender is None or now - event.at > self.retention_ms:
            self._expired(pending, event)
            return True
        if not sender.wanted(target, item):  # a subject left out, or sent while disabled
            self._settled(target, pending, "skipped")
            return True
        answer = await sender.send(target, item, now)
        pending.attempts += 1
        self.metrics.webhook_attempts.labels(target.id).inc()
        if answer.status == 202:
            self._settled(target, pending, "delivered")
            self.metrics.webhook_latency.observe(max(0.0, (self.clock.now_ms() - event.at) / 1000))
            return True
        msg_id = messages.message_id(pending.slot, pending.event_id)
        if answer.status == 400:  # RFC 8935 §2.4: the receiver will never take it
            log.warning(
                "SSF stream %s (%s) refused %s: %s", target.id, target.host, msg_id, refusal(answer)
            )
            self._settled(target, pending, "failed")
            return True
        log.warning(
            "SSF stream %s (%s): %s failed, attempt %d: %s",
            target.id,
            target.host,
            msg_id,
            pending.attempts,
            answer.reason,
        )
        delay = sender.retry_delay(pending, answer)
        if delay is None:
            self._settled(target, pending, "failed")
            return True
        pending.due_ms = self.clock.now_ms() + round(delay * 1000)
        self._settled(target, pending, "retrying")
        return False

    def _settled(self, target: StreamTarget, pending: Pending, outcome: str) -> None:
        done = outcome != "retrying"
        self._outcomes.changes.append(pending.change(done=done))
        self.metrics.webhook_deliveries.labels(target.id, outcome).inc()
        self._flush.set()

    async def _disable(
        self,
        queue: EndpointQueue,
        reason: str,
        pending: Pending,
        event: Event,
        answer: Answer,
        now: int,
    ) -> None:
        """Stop the endpoint; its pending messages stay, for when it is enabled again."""
        self._stop_queue(queue.endpoint.id)
        pending.due_ms = now
        self._outcome(queue.endpoint, pending, event, "disabled", answer, now)
        self._outcomes.disabled.append((queue.endpoint.id, reason))
        log.warning("webhook endpoint %s disabled (%s)", queue.endpoint.id, reason)

    def _outcome(
        self,
        endpoint: Endpoint,
        pending: Pending,
        event: Event,
        outcome: str,
        answer: Answer,
        now: int,
    ) -> None:
        finished = outcome in ("delivered", "failed")
        self._outcomes.changes.append(pending.change(done=finished))
        state = {"delivered": "delivered", "failed": "failed"}.get(outcome, "pending")
        record = DeliveryRecord(
            message_id=messages.message_id(pending.slot, pending.event_id),
            type=event.type,
            username=event.user,
            state=state,  # type: ignore[arg-type]
            attempts=pending.attempts,
            last_status=answer.status,
            last_attempt_ms=now,
            next_attempt_ms=0 if finished or outcome == "disabled" else pending.due_ms,
            event_ms=event.at,
        )
        self._outcomes.records.append((endpoint.id, pending.slot, record))
        self.metrics.webhook_deliveries.labels(endpoint.id, outcome).inc()
        self._flush.set()

    def _expired(self, pending: Pending, event: Event | None) -> None:
        """A message past EVENTS_RETENTION is not sent any more."""
        self._outcomes.changes.append(pending.change(done=True))
        if event is not None:
            record = DeliveryRecord(
                message_id=messages.message_id(pending.slot, pending.event_id),
                type=event.type,
                username=event.user,
                state="failed",
                attempts=pending.attempts,
                last_attempt_ms=self.clock.now_ms(),
                event_ms=event.at,
            )
            self._outcomes.records.append((pending.endpoint, pending.slot, record))
        self.metrics.webhook_deliveries.labels(pending.endpoint, "expired").inc()
        self._flush.set()

    async def _quietly(self, change: object) -> None:
        """An endpoint's status change; Redis down only delays it to a later attempt."""
        try:
            await change  # type: ignore[misc]
        except (RedisError, *REDIS_DOWN) as exc:
            raise_if_cancelling()
            log.warning("webhook endpoint status not written (%s)", exc)

    # -- writing outcomes back ---------------------------------------------------------

    async def _write(self) -> None:
        backoff = Backoff(*BACKOFF)
        while True:
            await self._flush.wait()
            self._flush.clear()
            try:
                await self._write_outcomes()
                backoff.reset()
            except (RedisError, *REDIS_DOWN) as exc:
                raise_if_cancelling()
                log.warning("delivery outcomes not written yet (%s); retrying", exc)
                self._flush.set()
                await backoff.wait()

    async def _write_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, Outcomes()
        if not outcomes:
            return
        try:
            await self.outbox.settle(outcomes.changes)
            await self.deliveries.record(outcomes.records)
            for endpoint_id, reason in outcomes.disabled:
                await self.store.disable(endpoint_id, reason)
        except BaseException:  # kept for the next try, before what came since
            self._outcomes.changes[:0] = outcomes.changes
            self._outcomes.records[:0] = outcomes.records
            self._outcomes.disabled[:0] = outcomes.disabled
            raise

    # -- retention -----------------------------------------------------------------------

    async def _trim(self) -> None:
        """Drop events past EVENTS_RETENTION from the held slots, whatever receivers did."""
        while True:
            await asyncio.sleep(self.trim_every * random.uniform(0.9, 1.1))
            slots = sorted(self.nonempty & self.held)
            try:
                lengths = await self.outbox.trim(slots, self.clock.now_ms() - self.retention_ms)
            except (RedisError, *REDIS_DOWN) as exc:
                raise_if_cancelling()
                log.warning("outbox not trimmed (%s); next time", exc)
                continue
            self.nonempty -= {slot for slot, length in lengths.items() if not length}
            self.metrics.outbox_events.set(sum(lengths.values()))

    def _oldest_age(self) -> float:
        now = self.clock.now_ms()
        oldest = [at for q in self.queues.values() if (at := q.oldest_ms()) is not None]
        return max(0.0, (now - min(oldest)) / 1000) if oldest else 0.0


async def _forever(loop: Callable[[], Awaitable[None]]) -> None:
    """Run a loop of the duty again whenever it fails unexpectedly: the duty never dies."""
    while True:
        try:
            await loop()
        except Exception as exc:
            raise_if_cancelling()
            if redis_trouble(exc):  # a line, not a traceback a second while Redis is away
                log.warning("delivery duty: %s: Redis unavailable (%r)", loop.__name__, exc)
            else:
                log.exception("delivery duty: %s failed; starting it again", loop.__name__)
        await asyncio.sleep(1.0)
