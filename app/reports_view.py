"""The Reports page's view in its URL (so a view can be shared), and the page's tables.

Anything in the URL that is not a valid choice falls back to the default: a shared link never breaks
the page, and nothing from it reaches SQL except as a bound parameter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

import pandas as pd

from core.analytics import kpis
from core.analytics.kpis import PRESETS, Period
from core.analytics.reports import DIMENSIONS, GRAINS, Filters
from core.orders.model import CHANNELS

DEFAULT_PRESET = "30 days"


@dataclass(frozen=True)
class ReportView:
    preset: str = DEFAULT_PRESET
    start: date | None = None  # custom range, both days included
    last: date | None = None
    channels: tuple[str, ...] = ()
    grain: str = "day"
    by: str = "channel"
    drill: date | None = None  # a period bucket of the chart, clicked
    key: str | None = None  # the channel / product / ... of the bar clicked

    def period(self, today: date) -> Period:
        if self.preset == "custom" and self.start and self.last and self.start <= self.last:
            return kpis.preset("custom", today, self.start, self.last)
        return kpis.preset(self.preset if self.preset != "custom" else DEFAULT_PRESET, today)

    def filters(self) -> Filters:
        return Filters(channels=self.channels)

    def drill_filters(self) -> Filters:
        """The filters narrowed to the key clicked (a channel, a SKU, a category, ...)."""
        f = self.filters()
        if not self.key:
            return f
        field = {
            "channel": "channels",
            "product": "skus",
            "category": "categories",
            "warehouse": "warehouses",
        }.get(self.by)
        if field is None:  # by customer the key is a name: drill by the bucket alone
            return f
        return replace(f, **{field: (self.key,)})

    def to_params(self) -> dict[str, str]:
        out: dict[str, str] = {"range": self.preset}
        if self.preset == "custom" and self.start and self.last:
            out |= {"from": self.start.isoformat(), "to": self.last.isoformat()}
        if self.channels:
            out["channel"] = ",".join(self.channels)
        if self.grain != "day":
            out["grain"] = self.grain
        if self.by != "channel":
            out["by"] = self.by
        if self.drill:
            out["drill"] = self.drill.isoformat()
        if self.key:
            out["key"] = self.key
        return out


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def bucket(x: object) -> date | None:
    """The period bucket a clicked bar stands for (its x, "YYYY-MM-DD")."""
    return _date(str(x)[:10]) if x else None


def from_params(params: Mapping[str, str]) -> ReportView:
    preset = params.get("range", DEFAULT_PRESET)
    channels = tuple(c for c in (params.get("channel") or "").split(",") if c in CHANNELS)
    key = (params.get("key") or "").strip()[:200] or None
    return ReportView(
        preset=preset if preset in PRESETS else DEFAULT_PRESET,
        start=_date(params.get("from")),
        last=_date(params.get("to")),
        channels=channels,
        grain=params.get("grain") if params.get("grain") in GRAINS else "day",
        by=params.get("by") if params.get("by") in DIMENSIONS else "channel",
        drill=_date(params.get("drill")),
        key=key,
    )


def money_columns(frame: pd.DataFrame, columns: list[str], money) -> pd.DataFrame:
    """A copy for display with amounts formatted in the shop's currency."""
    out = frame.copy()
    for c in columns:
        if c in out:
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else money(int(v)))
    return out
