"""Prometheus metrics of one gateway app, in a registry of its own (tests run several)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MESSAGE_TYPES = ("ready", "session.revoked", "sessions.changed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sockets = Gauge(
            "sessionwire_gateway_sockets",
            "Connected WebSocket devices",
            registry=self.registry,
            multiprocess_mode="livesum",  # several processes: the sum over the live ones
        )
        self.syncing = Gauge(
            "sessionwire_gateway_sockets_syncing",
            "Connected devices not yet subscribed and caught up on their user's log",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        notices = Counter(
            "sessionwire_gateway_notices",
            "Messages sent to devices, by type",
            ["type"],
            registry=self.registry,
        )
        # Children bound once: the send path does a dict lookup, not a label resolution.
        self._notices = {kind: notices.labels(kind) for kind in MESSAGE_TYPES}
        self.latency = Histogram(
            "sessionwire_notice_latency_seconds",
            "From the session event in Redis to the notice written to the device",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reconnects = Counter(
            "sessionwire_pubsub_reconnects",
            "Pub/sub connections lost and re-established",
            registry=self.registry,
        )
        self.slow_closed = Counter(
            "sessionwire_slow_clients_closed",
            "Sockets closed because the client did not read",
            registry=self.registry,
        )
        self.expired = Counter(
            "sessionwire_sessions_expired",
            "Sessions ended by the expiry sweeper",
            registry=self.registry,
        )

        # Events out (workers/delivery.py).
        self.webhook_deliveries = Counter(
            "sessionwire_webhook_deliveries",
            "Webhook messages by endpoint and outcome: delivered, retrying, failed (for good),"
            " expired (past EVENTS_RETENTION), disabled (the endpoint was disabled)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "sessionwire_webhook_attempts",
            "Webhook attempts (HTTP requests), by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "sessionwire_webhook_latency_seconds",
            "From the session event in Redis to its webhook answered 2xx",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhook_oldest = Gauge(
            "sessionwire_webhook_oldest_undelivered_seconds",
            "Age of the oldest event this process still has to deliver (0: none)",
            registry=self.registry,
        )
        self.outbox_events = Gauge(
            "sessionwire_outbox_events",
            "Events in the outboxes of the shards this process holds, at its last trim pass",
            registry=self.registry,
        )
        self.outbox_shards = Gauge(
            "sessionwire_outbox_shards",
            "Outbox shards whose delivery this process holds",
            registry=self.registry,
        )

    def sent(self, kind: str, at_ms: int) -> None:
        self._notices[kind].inc()
        if at_ms:
            self.latency.observe(max(0.0, time.time() - at_ms / 1000))
