"""ECharts options for the console's charts, built on the server from the figures.

A chart is a ``<div data-chart="…">`` holding its option as JSON; ``static/console.js``
hands it to ECharts (served from ``static/vendor``, never a CDN). Building the option here
keeps the page script generic and lets a test read what a chart was given. Each chart also
has a table of the same numbers on its page, for screen readers and for copying.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import msgspec

from guahao.platform.services.figure_shapes import AccessFigure, SupplyDemandFigure
from guahao.web.pages.console_messages import ConsoleTranslator

__all__ = ["access_trend_chart", "chart_json", "supply_demand_chart"]

_COLOURS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f"]


def chart_json(option: dict[str, Any]) -> str:
    return msgspec.json.encode(option).decode()


def _frame(title: str, days: list[str]) -> dict[str, Any]:
    return {
        "color": _COLOURS,
        "title": {"text": title, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 24, "type": "scroll"},
        "grid": {"left": 44, "right": 16, "top": 64, "bottom": 32},
        "xAxis": {"type": "category", "data": days},
        "yAxis": {"type": "value"},
    }


def supply_demand_chart(figures: Sequence[SupplyDemandFigure], t: ConsoleTranslator) -> str:
    """Released, booked and unmet demand per day over the figures' scope.

    >>> chart_json({"a": 1})
    '{"a":1}'
    """
    by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for f in figures:
        line = by_day[f.day]
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


def access_trend_chart(figures: Sequence[AccessFigure], t: ConsoleTranslator) -> str:
    """The third next available appointment (days) by measuring day, per specialty: the
    median over the hospitals measured that day (one slow hospital does not make a trend)."""
    values: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(list))
    for f in figures:
        if f.third_next_days is not None:
            values[f.specialty][f.measured_on].append(f.third_next_days)
    days = sorted({d for by_day in values.values() for d in by_day})
    option = _frame(t("chart.access"), [d.strftime("%m-%d") for d in days])
    series = []
    for specialty in sorted(values)[:8]:
        points: list[float | None] = []
        for d in days:
            found = sorted(values[specialty].get(d, []))
            points.append(found[len(found) // 2] if found else None)
        series.append({"name": specialty, "type": "line", "data": points, "connectNulls": True})
    option["series"] = series
    option["yAxis"] = {"type": "value", "name": t("figure.days"), "minInterval": 1}
    return chart_json(option)
