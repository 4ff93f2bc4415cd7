"""Prometheus metrics of the web process (prometheus-client), served at ``GET /metrics``.

Request rate and latency by route *template* (``/api/v1/bookings/{booking_id:str}``, never the
raw path), hold outcomes (granted or the refusal code), and, read when Prometheus scrapes:
the outbox's pending events and lag, and per subscriber its backlog, parked events and oldest
undelivered event (read at most every few seconds), the job queue's depth, refused demand not
counted, and each hospital connector's health. No label ever holds a person's data: labels are
methods, templates, status codes, refusal codes, subscriber names and hospital codes.

The per-request cost is one ASGI wrapper, a perf counter, a few additions to plain tallies
and one log line. The tallies are the request and hold figures themselves, read by a custom
collector whenever the registry is read (``/metrics``, or any ``collect``): a request takes
none of the client library's locks (its counters, the histogram's bucket and sum and the
hold outcome took four, 1.6 µs of a 33 µs sold-out refusal: bench/profiles/refuse-*), and
nothing reaches into the library's private storage to add tallies to its metrics.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import math
import os
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Final

import structlog
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from guahao.hospital_connectors.hub import ConnectorHub
from guahao.platform.error_codes import refuse
from guahao.platform.jobs import SaqJobs
from guahao.platform.persistence.outbox import OutboxDispatcher
from guahao.platform.services.runtime import Ports
from guahao.web.request_logs import request_log

__all__ = [
    "HOLD_ROUTE",
    "SUBSCRIBER_DELAYS_SECONDS",
    "WebMetrics",
    "bearer_matches",
    "metrics_endpoint",
    "request_id_from",
    "request_id_of",
    "requests_telemetry",
    "telemetry_middleware",
]

HOLD_ROUTE = "/api/v1/holds"
_REQUEST_LINES = logging.getLogger("guahao.requests")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SUBSCRIBER_DELAYS_SECONDS: Final = 5.0
"""How long one read of the subscribers' parked events serves the scrapes after it: a scrape
storm (several Prometheus replicas, a dashboard refreshing) reads the database once per
interval, and an alert that waits minutes loses nothing to a few seconds' age."""
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(slots=True)
class _Tally:
    """The requests of one method, route and status answered so far: counts only go up, and
    Prometheus reads them as they are (counters and histograms are cumulative)."""

    count: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    """Per histogram bucket, not cumulative, ``+Inf`` last."""
    created: float = field(default_factory=time.time)

    def add(self, other: _Tally) -> None:
        self.count += other.count
        self.seconds += other.seconds
        self.buckets = [
            mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)
        ]


@dataclass(slots=True)
class _Count:
    n: int = 0
    created: float = field(default_factory=time.time)


_BOUNDS = (*(repr(bound) for bound in _BUCKETS), "+Inf")
"""The buckets' ``le`` labels as the client library writes its own (``0.002`` … ``5.0``)."""


class _RequestFigures:
    """The request counts, their latency histogram and the hold outcomes, read from plain
    tallies whenever the registry is read (a custom collector, the client library's public
    way to expose figures kept elsewhere). The tallies belong to the event loop's thread,
    where requests are answered and the registry is read."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, int], _Tally] = {}
        self.outcomes: dict[str, _Count] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        requests, latency, holds = families
        by_route: dict[tuple[str, str], _Tally] = {}  # the histogram is per route, all statuses
        for (method, route, status), tally in self.tallies.items():
            requests.add_metric([method, route, str(status)], tally.count, created=tally.created)
            by_route.setdefault((method, route), _Tally()).add(tally)
        for (method, route), tally in by_route.items():
            cumulative = zip(_BOUNDS, accumulate(tally.buckets), strict=True)
            latency.add_metric([method, route], list(cumulative), tally.seconds)
        for outcome, count in self.outcomes.items():
            holds.add_metric([outcome], count.n, created=count.created)
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "guahao_http_requests",
                "HTTP requests answered, by method, route template and status",
                labels=["method", "route", "status"],
            ),
            HistogramMetricFamily(
                "guahao_http_request_duration_seconds",
                "Time to answer, by method and route template",
                labels=["method", "route"],
            ),
            CounterMetricFamily(
                "guahao_hold_outcomes",
                "Hold attempts by outcome (granted or refusal code)",
                labels=["outcome"],
            ),
        )


class _CollectorSettings:
    """How this process's garbage collector is set (``guahao/collector_settings.py``), read
    when the registry is: a young threshold set through ``GUAHAO_GC_YOUNG_THRESHOLD`` shows
    here as what the serving process applied, and a worker started some other way (without
    ``settle_collector``) shows Python's 700 and nothing frozen."""

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        young = GaugeMetricFamily(
            "guahao_gc_young_threshold",
            "Objects the garbage collector's young generation is collected at",
        )
        young.add_metric([], gc.get_threshold()[0])
        frozen = GaugeMetricFamily(
            "guahao_gc_frozen_objects",
            "Objects frozen at start-up, which no collection walks",
        )
        frozen.add_metric([], gc.get_freeze_count())
        return [young, frozen]


class WebMetrics:
    """The metrics of one app, in their own registry (several apps may share a process)."""

    def __init__(self, *, delays_seconds: float = SUBSCRIBER_DELAYS_SECONDS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._figures = _RequestFigures()
        r.register(self._figures)
        r.register(_CollectorSettings())
        self.outbox_pending = Gauge(
            "guahao_outbox_pending_events",
            "Outbox rows not yet delivered to every subscriber",
            registry=r,
        )
        self.outbox_lag = Gauge(
            "guahao_outbox_lag_seconds", "Age of the oldest undelivered outbox row", registry=r
        )
        self.subscriber_backlog = Gauge(
            "guahao_outbox_subscriber_backlog",
            "Outbox rows past each subscriber's cursor",
            ["subscriber"],
            registry=r,
        )
        self.subscriber_parked = Gauge(
            "guahao_outbox_subscriber_parked",
            "Events in each subscriber's retry list (refused, or parked behind a refusal)",
            ["subscriber"],
            registry=r,
        )
        self.subscriber_lag = Gauge(
            "guahao_outbox_subscriber_lag_seconds",
            "Age of the oldest event each subscriber has not taken (parked or unread)",
            ["subscriber"],
            registry=r,
        )
        self._delays_seconds = delays_seconds
        self._delays_read_at = -math.inf
        self._delays_reading = asyncio.Lock()
        self.queue_depth = Gauge(
            "guahao_job_queue_depth", "Jobs in the saq queue by state", ["state"], registry=r
        )
        self.refusals_uncounted = Gauge(
            "guahao_refused_demand_dropped",
            "Refusals not counted as demand (memory bound hit)",
            registry=r,
        )
        self.connector_up = Gauge(
            "guahao_connector_up",
            "1 if the connector's last sync succeeded",
            ["hospital", "kind"],
            registry=r,
        )
        self.connector_lag = Gauge(
            "guahao_connector_lag_seconds",
            "Seconds since the connector's last sync",
            ["hospital", "kind"],
            registry=r,
        )
        self.connector_errors = Gauge(
            "guahao_connector_error_rate",
            "Share of the connector's recent runs that failed",
            ["hospital", "kind"],
            registry=r,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its time."""
        tallies = self._figures.tallies
        tally = tallies.get((method, route, status))
        if tally is None:
            tally = tallies[method, route, status] = _Tally()
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(_BUCKETS, seconds)] += 1  # the first bound >= seconds

    def hold_outcome(self, outcome: str) -> None:
        """Count one hold attempt's outcome."""
        count = self._figures.outcomes.get(outcome)
        if count is None:
            count = self._figures.outcomes[outcome] = _Count()
        count.n += 1

    async def collect_platform(
        self,
        dispatcher: OutboxDispatcher,
        ports: Ports,
        jobs: SaqJobs,
        connectors: ConnectorHub,
    ) -> None:
        """Read the figures that live outside this process (outbox, queue, connectors)."""
        backlog = await dispatcher.backlog()
        self.outbox_pending.set(backlog.pending)
        self.outbox_lag.set(backlog.lag_seconds)
        for subscriber, behind in backlog.behind.items():
            self.subscriber_backlog.labels(subscriber).set(behind)
        await self._collect_delays(dispatcher)
        queue = jobs.queue
        for state in ("queued", "active", "incomplete"):
            self.queue_depth.labels(state).set(await queue.count(state))
        counter = ports.refused_demand
        self.refusals_uncounted.set(counter.dropped if counter is not None else 0)
        for health in await connectors.registry.health(50):
            labels = (health.hospital_code, health.kind)
            self.connector_up.labels(*labels).set(1 if health.last_status == "ok" else 0)
            self.connector_lag.labels(*labels).set(health.lag_seconds or 0.0)
            self.connector_errors.labels(*labels).set(health.error_rate)

    async def _collect_delays(self, dispatcher: OutboxDispatcher) -> None:
        """The subscribers' parked events and oldest undelivered event, read at most once per
        ``delays_seconds`` however many scrapes arrive (one statement; scrapes arriving while
        it runs wait for it rather than read again)."""
        async with self._delays_reading:
            if time.monotonic() - self._delays_read_at < self._delays_seconds:
                return
            delays = await dispatcher.subscriber_delays()
            for subscriber, delay in delays.items():
                self.subscriber_parked.labels(subscriber).set(delay.parked)
                self.subscriber_lag.labels(subscriber).set(delay.oldest_undelivered_seconds)
            self._delays_read_at = time.monotonic()


def request_id_of(scope: Scope) -> str:
    """The proxy's ``X-Request-ID`` when it is well formed, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return request_id_from(value)
    return request_id_from(None)


def request_id_from(sent: bytes | None) -> str:
    """``request_id_of`` for a caller that has read the request's first ``X-Request-ID``
    already (the answers made before the framework read the headers once).

    >>> request_id_from(b"edge-42"), len(request_id_from(b"bad id")), len(request_id_from(None))
    ('edge-42', 16, 16)
    """
    if sent is not None:
        text = sent.decode("latin-1")
        if _REQUEST_ID.match(text):
            return text
    return os.urandom(8).hex()


def requests_telemetry(
    metrics: WebMetrics,
    method: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    error_code: str | None,
) -> None:
    """Count and log one answered request: the one place for the telemetry middleware and
    the answers given before the framework (``guahao.web.front_answers``), so an operator
    sees the same figures and lines whichever answered."""
    metrics.observe(method, route, status, seconds)
    if route == HOLD_ROUTE and method == "POST":
        metrics.hold_outcome("granted" if status < 300 else error_code or str(status))
    if _REQUEST_LINES.isEnabledFor(logging.INFO):  # render nothing nobody keeps
        request_log.info(
            "request",
            method=method,
            route=route,
            status=status,
            ms=round(seconds * 1000, 2),
            request_id=request_id,
        )


def telemetry_middleware(metrics: WebMetrics) -> Callable[[ASGIApp], ASGIApp]:
    """Request ids, one structured log line and the request metrics for every request that
    reaches a route (Litestar answers unknown routes before any middleware runs)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            request_id = request_id_of(scope)
            # for the server's log of connections lost before their answer (http_server.py)
            scope.setdefault("state", {})["request_id"] = request_id
            header = request_id.encode()
            status = 500
            started = time.perf_counter()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), (b"x-request-id", header)]
                await send(message)

            tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await app(scope, receive, send_with_id)
            finally:
                state = scope.get("state") or {}
                requests_telemetry(
                    metrics,
                    str(scope.get("method", "")),
                    scope.get("path_template") or "unmatched",
                    status,
                    time.perf_counter() - started,
                    request_id,
                    state.get("error_code"),
                )
                structlog.contextvars.reset_contextvars(**tokens)

        return middleware

    return wrap


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as its bearer credential, compared
    in constant time so the token cannot be found a character at a time."""
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(credential.strip().encode(), token.encode())


@get("/metrics", operation_id="metrics", tags=["operations"], include_in_schema=False)
async def metrics_endpoint(
    dispatcher: NamedDependency[OutboxDispatcher],
    ports: NamedDependency[Ports],
    jobs: NamedDependency[SaqJobs],
    connectors: NamedDependency[ConnectorHub],
    request: Request[Any, Any, Any],
) -> Response[bytes]:
    """The Prometheus exposition of this process's metrics, for the scraper's bearer token
    only (``metrics_token``): nothing is collected before the token is checked."""
    if not bearer_matches(
        request.headers.get("authorization", ""), request.app.state.metrics_token
    ):
        refuse("METRICS_TOKEN_INVALID")
    metrics: WebMetrics = request.app.state.metrics
    await metrics.collect_platform(dispatcher, ports, jobs, connectors)
    return Response(content=generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
