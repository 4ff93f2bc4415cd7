"""The request metrics are tallied per request and read by a collector: what Prometheus reads
must be what the client library's own counters and histogram, fed request by request, give."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from guahao.web.metrics import HOLD_ROUTE, WebMetrics, requests_telemetry

# seconds on and around every bucket bound, below the first and past the last
TIMES = [0.0, 0.001, 0.002, 0.0020001, 0.005, 0.03, 0.1, 0.7, 1.0, 2.5, 4.99, 5.0, 7.5, 120.0]
REQUESTS = [
    ("POST", HOLD_ROUTE, 409, "SLOT_SOLD_OUT"),
    ("POST", HOLD_ROUTE, 201, None),
    ("POST", HOLD_ROUTE, 429, "RATE_LIMITED"),
    ("GET", "/api/v1/search", 200, None),
]


def fed_one_by_one() -> CollectorRegistry:
    """The metrics as they were kept before the tallies: each request into the client's own
    counters and histogram."""
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "guahao_http_requests",
        "HTTP requests answered, by method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "guahao_http_request_duration_seconds",
        "Time to answer, by method and route template",
        ["method", "route"],
        buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        registry=registry,
    )
    holds = Counter(
        "guahao_hold_outcomes",
        "Hold attempts by outcome (granted or refusal code)",
        ["outcome"],
        registry=registry,
    )
    for n, seconds in enumerate(TIMES):
        for method, route, status, code in REQUESTS[: 1 + n % len(REQUESTS)]:
            requests.labels(method, route, str(status)).inc()
            latency.labels(method, route).observe(seconds)
            if route == HOLD_ROUTE:
                holds.labels("granted" if status < 300 else code).inc()
    return registry


def request_lines(registry: CollectorRegistry) -> list[str]:
    """The exposition's request and hold lines, but the series' creation times, with sums to
    nine digits (a sum added up in parts may differ from the running one in its last bit)."""
    lines = []
    for line in generate_latest(registry).decode().splitlines():
        if not line.startswith(("guahao_http_request", "guahao_hold_outcomes")):
            continue
        if "_created" in line:
            continue
        if "_sum{" in line:
            series, _, value = line.rpartition(" ")
            line = f"{series} {float(value):.9g}"
        lines.append(line)
    return lines


def test_the_tallies_read_as_the_client_library_fed_request_by_request() -> None:
    metrics = WebMetrics()
    for n, seconds in enumerate(TIMES):
        for method, route, status, code in REQUESTS[: 1 + n % len(REQUESTS)]:
            requests_telemetry(metrics, method, route, status, seconds, "r", code)
        if n == 5:  # a scrape in between changes nothing
            assert request_lines(metrics.registry)
    expected = request_lines(fed_one_by_one())
    assert len(expected) == 35  # 4 series of requests, 2 histograms of 14 lines, 3 outcomes
    assert request_lines(metrics.registry) == expected
    assert request_lines(metrics.registry) == expected  # read twice, counted once


def test_a_request_counted_after_a_read_is_in_the_next_read() -> None:
    metrics = WebMetrics()
    requests_telemetry(metrics, "POST", HOLD_ROUTE, 409, 0.003, "r", "SLOT_SOLD_OUT")
    sample = metrics.registry.get_sample_value
    assert sample("guahao_hold_outcomes_total", {"outcome": "SLOT_SOLD_OUT"}) == 1
    requests_telemetry(metrics, "POST", HOLD_ROUTE, 409, 0.003, "r", "SLOT_SOLD_OUT")
    labels = {"method": "POST", "route": HOLD_ROUTE}
    assert sample("guahao_hold_outcomes_total", {"outcome": "SLOT_SOLD_OUT"}) == 2
    assert sample("guahao_http_request_duration_seconds_bucket", labels | {"le": "0.005"}) == 2
    assert sample("guahao_http_request_duration_seconds_bucket", labels | {"le": "0.002"}) == 0
    assert sample("guahao_http_request_duration_seconds_sum", labels) == 0.006
