"""Every chart the pages show is built here (plotly express), from plain rows the pages already hold."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

AVAILABLE, RESERVED = "Available", "Reserved"
COLORS = {AVAILABLE: "#2e7d32", RESERVED: "#f9a825"}


def stock_by_warehouse(rows: list[dict[str, Any]]) -> go.Figure:
    """Units per warehouse, available and reserved stacked (their sum is on hand); rows from
    core.inventory.stock_levels."""
    frame = pd.DataFrame(rows, columns=["warehouse", "available", "reserved"])
    totals = frame.groupby("warehouse", as_index=False)[["available", "reserved"]].sum()
    long = totals.melt(id_vars="warehouse", var_name="state", value_name="units")
    long["state"] = long["state"].map({"available": AVAILABLE, "reserved": RESERVED})
    fig = px.bar(
        long,
        x="warehouse",
        y="units",
        color="state",
        color_discrete_map=COLORS,
        category_orders={"state": [AVAILABLE, RESERVED]},
        labels={"warehouse": "Warehouse", "units": "Units", "state": ""},
        title="Stock by warehouse",
    )
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.2}, margin={"t": 40, "b": 10})
    return fig


# Reports (frames from core.analytics.reports; money arrives in minor units)


def _major(minor: pd.Series, currency: str) -> pd.Series:
    from core.money import ZERO_DECIMAL

    return minor.astype(float) / (1 if currency.upper() in ZERO_DECIMAL else 100)


def over_time(frame: pd.DataFrame, currency: str, by: str, measure: str = "revenue") -> go.Figure:
    """Stacked bars per period, one colour per channel/product/...; each bar carries its key so a click
    can drill down to the orders behind it."""
    data = frame.assign(value=_major(frame[measure], currency) if measure == "revenue" else frame[measure])
    label = f"Revenue ({currency})" if measure == "revenue" else measure.capitalize()
    fig = px.bar(
        data,
        x="period",
        y="value",
        color="key",
        custom_data=["key"],
        labels={"period": "", "value": label, "key": by.capitalize()},
    )
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.2}, margin={"t": 10, "b": 10})
    fig.update_xaxes(type="category")  # one bar per day/week/month, not a time axis of midnights
    return fig


def top_products(frame: pd.DataFrame, currency: str) -> go.Figure:
    data = frame.assign(value=_major(frame["revenue"], currency)).sort_values("value")
    fig = px.bar(
        data,
        x="value",
        y="sku",
        orientation="h",
        custom_data=["sku"],
        hover_data=["name", "units"],
        labels={"value": f"Item sales ({currency})", "sku": ""},
    )
    fig.update_layout(margin={"t": 10, "b": 10})
    return fig


def funnel(frame: pd.DataFrame) -> go.Figure:
    fig = px.funnel(frame, x="orders", y="step", labels={"orders": "Orders", "step": ""})
    fig.update_layout(margin={"t": 10, "b": 10})
    return fig


def fulfilment(frame: pd.DataFrame) -> go.Figure:
    fig = px.histogram(
        frame, x="hours_to_ship", nbins=30, labels={"hours_to_ship": "Hours from payment to shipment"}
    )
    fig.update_layout(yaxis_title="Orders", margin={"t": 10, "b": 10})
    return fig


def gateway_failures(frame: pd.DataFrame) -> go.Figure:
    long = frame.melt(
        id_vars="gateway", value_vars=["declines", "transient"], var_name="kind", value_name="n"
    )
    fig = px.bar(
        long, x="gateway", y="n", color="kind", labels={"n": "Failed attempts", "gateway": "", "kind": ""}
    )
    fig.update_layout(barmode="stack", margin={"t": 10, "b": 10})
    return fig


def days_of_cover(frame: pd.DataFrame, low_days: int) -> go.Figure:
    data = frame.dropna(subset=["days_of_cover"]).head(30)
    data = data.assign(
        item=data["sku"] + " @ " + data["warehouse"], state=data["low"].map({True: "Low", False: "OK"})
    )
    fig = px.bar(
        data,
        x="days_of_cover",
        y="item",
        orientation="h",
        color="state",
        color_discrete_map={"Low": "#c62828", "OK": "#2e7d32"},
        labels={"days_of_cover": "Days of cover at the last 30 days' pace", "item": "", "state": ""},
    )
    fig.add_vline(x=low_days, line_dash="dot")
    fig.update_layout(margin={"t": 10, "b": 10}, yaxis={"autorange": "reversed"})
    return fig


def cohorts(frame: pd.DataFrame) -> go.Figure:
    grid = frame.pivot(index="cohort", columns="months_after", values="retention")
    grid.index = [c.strftime("%Y-%m") for c in pd.to_datetime(grid.index)]
    fig = px.imshow(
        grid,
        text_auto=".0%",
        color_continuous_scale="Blues",
        aspect="auto",
        labels={"x": "Months after the first order", "y": "First order in", "color": "Retention"},
    )
    fig.update_layout(margin={"t": 10, "b": 10})
    return fig


def query_result(frame: pd.DataFrame, x: str, y: str, kind: str) -> go.Figure:
    """A workbench result drawn as the analyst chose; the first 500 rows (a chart of more is a smear)."""
    plot = px.line if kind == "line" else px.bar
    fig = plot(frame.head(500), x=x, y=y)
    fig.update_layout(margin={"t": 10, "b": 10})
    return fig
