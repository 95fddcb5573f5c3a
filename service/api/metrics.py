"""Prometheus metrics of the API, on a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sessionwire_http_requests",
            "HTTP requests served",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sessionwire_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.logins = Counter(
            "sessionwire_logins",
            "Sign-in attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.revocations = Counter(
            "sessionwire_revocations",
            "Sessions revoked through the API",
            ["reason"],
            registry=self.registry,
        )
        self.unacknowledged_revocations = Counter(
            "sessionwire_revocations_unacknowledged",
            "Revocations no replica acknowledged in time (they still took effect)",
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "sessionwire_redis_unavailable",
            "Requests answered 503 because Redis was down",
            registry=self.registry,
        )

        # labels() takes a lock and builds a key on every call; a request only needs a
        # dict lookup once its (route, method, status) has been seen.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
