"""Prometheus metrics of the web process (prometheus-client), served at ``GET /metrics``.

Request rate and latency by route *template* (``/api/v1/bookings/{booking_id:str}``, never the
raw path), hold outcomes (granted or the refusal code), and, read when Prometheus scrapes:
the outbox's pending events and lag, and per subscriber its backlog, parked events and oldest
undelivered event (read at most every few seconds), the job queue's depth, refused demand not
counted, and each hospital connector's health. No label ever holds a person's data: labels are
methods, templates, status codes, refusal codes, subscriber names and hospital codes.

The per-request cost is one ASGI wrapper, a perf counter, a few additions to plain tallies
and one log line. The tallies are folded into the Prometheus metrics whenever the registry
is read (``/metrics``, or any ``collect``): a request no longer takes the client library's
locks four times (its counters, the histogram's bucket and sum, the hold outcome), which
was 1.6 µs of a 33 µs sold-out refusal (bench/profiles/refuse-*). The tallies belong to the
event loop's thread, where the requests are answered and the registry is read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
    """The requests of one method, route and status answered since the metrics were read,
    beside the metric children they go to (made at the first request, as before)."""

    requests: Any
    latency: Any
    count: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    """Per histogram bucket, not cumulative (the client's own storage), ``+Inf`` last."""


class _FoldFirst:
    """A collector of nothing, registered before every metric of the registry: reading the
    registry runs ``fold`` first, so what it reads includes every request answered."""

    def __init__(self, fold: Callable[[], None]) -> None:
        self._fold = fold

    def describe(self) -> Iterable[Any]:
        return ()

    def collect(self) -> Iterable[Any]:
        self._fold()
        return ()


class WebMetrics:
    """The metrics of one app, in their own registry (several apps may share a process)."""

    def __init__(self, *, delays_seconds: float = SUBSCRIBER_DELAYS_SECONDS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(_FoldFirst(self.fold))
        self.requests = Counter(
            "guahao_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "guahao_http_request_duration_seconds",
            "Time to answer, by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.holds = Counter(
            "guahao_hold_outcomes",
            "Hold attempts by outcome (granted or refusal code)",
            ["outcome"],
            registry=r,
        )
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
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._hold_outcomes: dict[str, Any] = {}
        self._outcome_tallies: dict[str, int] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its time (in the metrics at the next read)."""
        tally = self._tallies.get((method, route, status))
        if tally is None:
            tally = self._tallies[method, route, status] = _Tally(
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(_BUCKETS, seconds)] += 1  # the first bound >= seconds

    def hold_outcome(self, outcome: str) -> None:
        """Count one hold attempt's outcome (in the metrics at the next read)."""
        if outcome not in self._hold_outcomes:  # the child made at the first, as before
            self._hold_outcomes[outcome] = self.holds.labels(outcome)
        self._outcome_tallies[outcome] = self._outcome_tallies.get(outcome, 0) + 1

    def fold(self) -> None:
        """Add the tallies to the metrics and start them again (every read of the registry
        does it first). The histogram's children are given whole buckets and sums through
        the client's own per-bucket values: ``observe`` once per request would take its locks
        as before (``tests/unit/test_web_metrics.py`` compares the exposition with a
        histogram fed request by request)."""
        for tally in self._tallies.values():
            if not tally.count:
                continue
            count, seconds, buckets = tally.count, tally.seconds, tally.buckets
            tally.count, tally.seconds, tally.buckets = 0, 0.0, [0] * len(buckets)
            tally.requests.inc(count)
            tally.latency._sum.inc(seconds)
            for value, n in zip(tally.latency._buckets, buckets, strict=True):
                if n:
                    value.inc(n)
        outcomes, self._outcome_tallies = self._outcome_tallies, {}
        for outcome, n in outcomes.items():
            self._hold_outcomes[outcome].inc(n)

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
