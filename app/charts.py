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
