"""ECharts options for the console's charts, built on the server from the figures.

A chart is a ``<div data-chart="…">`` holding its option as JSON; ``static/console.js``
hands it to ECharts (served from ``static/vendor``, never a CDN). Building the option here
keeps the page script generic and lets a test read what a chart was given. Each chart also
has a table of the same numbers on its page, for screen readers and for copying.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import msgspec

from guahao.platform.services.figure_shapes import AccessFigure, SupplyDemandFigure
from guahao.web.pages.console_messages import ConsoleTranslator

__all__ = ["access_trend_chart", "chart_json", "every_day", "supply_demand_chart"]

_COLOURS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f"]


def chart_json(option: dict[str, Any]) -> str:
    return msgspec.json.encode(option).decode()


def _frame(title: str, days: list[str]) -> dict[str, Any]:
    return {
        "color": _COLOURS,
        "animation": False,  # a chart is read, not watched (and screenshots are stable)
        "title": {"text": title, "left": 8, "top": 6, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 32, "left": 8, "type": "scroll"},
        "grid": {"left": 44, "right": 16, "top": 72, "bottom": 32},
        "xAxis": {"type": "category", "data": days},
        "yAxis": {"type": "value"},
    }


def every_day(first: date, last: date) -> list[date]:
    """The days of a period, so that a day without releases shows as zero, not as a gap.

    >>> [d.day for d in every_day(date(2026, 2, 27), date(2026, 3, 2))]
    [27, 28, 1, 2]
    """
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def supply_demand_chart(
    figures: Sequence[SupplyDemandFigure], t: ConsoleTranslator, first: date, last: date
) -> str:
    """Released, online, booked and unmet demand per day from ``first`` to ``last``."""
    by_day: dict[date, list[int]] = {d: [0, 0, 0, 0] for d in every_day(first, last)}
    for f in figures:
        line = by_day.setdefault(f.day, [0, 0, 0, 0])
        line[0] += f.released
        line[1] += f.online_released
        line[2] += f.booked
        line[3] += f.unmet_demand
    days = sorted(by_day)
    option = _frame(t("chart.supply_demand"), [d.strftime("%m-%d") for d in days])
    option["series"] = [
        {"name": t(key), "type": kind, "data": [by_day[d][i] for d in days]}
        for i, (key, kind) in enumerate(
            [
                ("figure.released", "bar"),
                ("figure.online_released", "bar"),
                ("figure.booked", "bar"),
                ("figure.unmet_demand", "line"),
            ]
        )
    ]
    return chart_json(option)


def access_trend_chart(
    figures: Sequence[AccessFigure], t: ConsoleTranslator, first: date, last: date
) -> str:
    """The third next available appointment (days) by measuring day, per specialty: the
    median over the hospitals measured that day (one slow hospital does not make a trend)."""
    values: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(list))
    for f in figures:
        if f.third_next_days is not None:
            values[f.specialty][f.measured_on].append(f.third_next_days)
    days = every_day(first, last)
    option = _frame(t("chart.access"), [d.strftime("%m-%d") for d in days])
    series = []
    for specialty in sorted(values)[:8]:
        points: list[float | None] = []
        for d in days:
            found = sorted(values[specialty].get(d, []))
            points.append(found[len(found) // 2] if found else None)
        series.append({"name": specialty, "type": "line", "data": points, "connectNulls": True})
    option["series"] = series
    option["yAxis"] = {"type": "value", "minInterval": 1}  # days, as the title says
    return chart_json(option)
