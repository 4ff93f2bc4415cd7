"""Parked outbox events in ``/metrics``: per subscriber, the events in its retry list and the
age of the oldest event it has not taken, read in one statement and at most once every few
seconds however often Prometheus scrapes."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from sqlalchemy import event

from guahao.bootstrap import Platform
from guahao.web.metrics import WebMetrics
from tests.fixtures.platforms import clinic, held_with_patient, manual_clock, publish_clinic
from tests.integration.test_outbox import Recorder


def gauge(metrics: WebMetrics, name: str, subscriber: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"subscriber": subscriber})


async def scrape(metrics: WebMetrics, platform: Platform) -> None:
    await metrics.collect_platform(
        platform.dispatcher, platform.ports, platform.jobs, platform.connectors
    )


async def test_a_refused_event_shows_as_parked_with_its_age_until_it_goes_through(
    platform: Platform,
) -> None:
    clock = manual_clock(platform)
    slots = await publish_clinic(platform, clinic(units=1))
    account, _, booking_id = await held_with_patient(platform, slots[0])
    await platform.bookings.leave(account_id=account, booking_id=booking_id)
    down, up = Recorder(), Recorder()
    down.failing.add((booking_id, "booking.held"))
    platform.dispatcher.subscribe("booking.", down, name="his-down", starts_at="beginning")
    platform.dispatcher.subscribe("booking.", up, name="his-up", starts_at="beginning")
    metrics = WebMetrics(delays_seconds=0)  # every scrape reads
    await platform.dispatcher.dispatch_pending()
    clock.advance(minutes=3)
    await scrape(metrics, platform)

    # the refused event and the two of its booking behind it wait, the oldest 3 minutes
    assert gauge(metrics, "guahao_outbox_subscriber_parked", "his-down") == 3
    assert gauge(metrics, "guahao_outbox_subscriber_lag_seconds", "his-down") == 180
    assert gauge(metrics, "guahao_outbox_subscriber_parked", "his-up") == 0
    assert gauge(metrics, "guahao_outbox_subscriber_lag_seconds", "his-up") == 0
    exposition = generate_latest(metrics.registry).decode()
    assert 'guahao_outbox_subscriber_parked{subscriber="his-down"} 3.0' in exposition

    await held_with_patient(platform, slots[1])  # events neither has read yet
    clock.advance(minutes=1)
    await scrape(metrics, platform)
    assert gauge(metrics, "guahao_outbox_subscriber_lag_seconds", "his-up") == 60
    assert gauge(metrics, "guahao_outbox_subscriber_lag_seconds", "his-down") == 240

    down.failing.clear()
    await platform.dispatcher.dispatch_pending()
    await scrape(metrics, platform)
    assert gauge(metrics, "guahao_outbox_subscriber_parked", "his-down") == 0
    assert gauge(metrics, "guahao_outbox_subscriber_lag_seconds", "his-down") == 0


async def test_a_scrape_storm_reads_the_parked_events_once_per_interval(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform, clinic(units=1))
    _, _, first = await held_with_patient(platform, slots[0])
    down = Recorder()
    down.failing.add((first, "booking.held"))
    platform.dispatcher.subscribe("booking.", down, name="his-down", starts_at="beginning")
    await platform.dispatcher.dispatch_pending()  # parks the hold and the event behind it
    metrics = WebMetrics()  # the default interval: seconds
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statement = args[2]
        if "outbox_parked" in statement and "outbox_cursors" in statement:
            statements.append(statement)

    engine = platform.ports.sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await scrape(metrics, platform)
        assert gauge(metrics, "guahao_outbox_subscriber_parked", "his-down") == 2
        _, _, second = await held_with_patient(platform, slots[1])
        down.failing.add((second, "booking.held"))
        await platform.dispatcher.dispatch_pending()  # two more parked
        for _ in range(20):
            await scrape(metrics, platform)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert len(statements) == 1  # the first scrape's; the others used its answer
    assert gauge(metrics, "guahao_outbox_subscriber_parked", "his-down") == 2  # seconds old
