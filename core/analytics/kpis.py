"""The reports' KPIs and periods, without DuckDB: the figures' names, how they read, and the local-day
periods they are measured over. Shared by the reports (reports.py), the Reports page, and the summaries
and alerts (schedules.py), which every process that records events imports."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from core.errors import ValidationError

PRESETS = ("today", "7 days", "30 days", "this month", "this quarter", "custom")
MAX_SPAN_DAYS = 3660


@dataclass(frozen=True)
class Period:
    """Local days [start, end): end is the day after the last one shown."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValidationError("The period must end on or after the day it starts.")
        if (self.end - self.start).days > MAX_SPAN_DAYS:
            raise ValidationError("Choose a period of at most ten years.")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        """The period of the same length right before this one (a month against the month before)."""
        if self.start.day == 1 and self.end == add_months(self.start, months_between(self.start, self.end)):
            n = months_between(self.start, self.end)
            return Period(add_months(self.start, -n), self.start)
        return Period(self.start - timedelta(days=self.days), self.start)

    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return (
            self.start.isoformat() if last == self.start else f"{self.start.isoformat()} – {last.isoformat()}"
        )


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, min(d.day, calendar.monthrange(d.year + y, m + 1)[1]))


def preset(name: str, today: date, start: date | None = None, end: date | None = None) -> Period:
    """A named relative range ending today (local); "custom" takes start and the last day, inclusive."""
    match name:
        case "today":
            return Period(today, today + timedelta(days=1))
        case "7 days":
            return Period(today - timedelta(days=6), today + timedelta(days=1))
        case "30 days":
            return Period(today - timedelta(days=29), today + timedelta(days=1))
        case "this month":
            return Period(today.replace(day=1), today + timedelta(days=1))
        case "this quarter":
            first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
            return Period(first, today + timedelta(days=1))
        case "custom":
            if start is None or end is None:
                raise ValidationError("A custom period needs a first and a last day.")
            return Period(start, end + timedelta(days=1))
    raise ValidationError(f"Unknown period {name!r}; choose one of: {', '.join(PRESETS)}.")


# The KPIs

KPI_NAMES = (
    "revenue",
    "orders",
    "average_order_value",
    "units",
    "cancellation_rate",
    "return_rate",
    "payment_failure_rate",
)


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


KPI_LABELS = {
    "revenue": "Revenue",
    "orders": "Orders",
    "average_order_value": "Average order",
    "units": "Units",
    "cancellation_rate": "Cancellation rate",
    "return_rate": "Return rate",
    "payment_failure_rate": "Payment failure rate",
}
MONEY_KPIS = frozenset({"revenue", "average_order_value"})
# KPIs where a rise is bad news: their change is shown red when it goes up.
INVERSE = frozenset({"cancellation_rate", "return_rate", "payment_failure_rate"})


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def kpi_value(name: str, value: float | None, money: Callable[[int], str]) -> str:
    """A KPI as people read it: money in the shop's currency, rates in percent, counts with separators."""
    if value is None:
        return "–"
    if name.endswith("_rate"):
        return percent(value)
    return money(int(value)) if name in MONEY_KPIS else f"{int(value):,}"


def kpi_change(name: str, change: float | None) -> str | None:
    """Rates change in percentage points, amounts relatively."""
    if change is None:
        return None
    return f"{change * 100:+.1f} pts" if name.endswith("_rate") else f"{change:+.1%}"


def kpi_cards(
    now: dict[str, Any], change: dict[str, float | None], money: Callable[[int], str]
) -> list[tuple[str, str, str, str | None]]:
    """(name, label, value, change) for each KPI, for the Reports page's cards and the summary emails."""
    return [(k, KPI_LABELS[k], kpi_value(k, now[k], money), kpi_change(k, change[k])) for k in KPI_NAMES]


def compare(current: dict, previous: dict) -> dict[str, float | None]:
    """Change of each KPI against the previous period: relative for amounts, points for rates."""
    out: dict[str, float | None] = {}
    for k in KPI_NAMES:
        now, then = current.get(k), previous.get(k)
        if now is None or then is None:
            out[k] = None
        elif k.endswith("_rate"):
            out[k] = now - then
        else:
            out[k] = ratio(now - then, then)
    return out
