"""The Overview page's KPI cards as plain data (label, value, delta against yesterday, help text),
from core.orders.queries.overview. The page lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.format import local_time, money

REFRESH_SECONDS = 30


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    value: str
    delta: str | None = None
    help: str = ""


def count(n: int, noun: str) -> str:
    """1 order, 2 orders."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _signed(n: int) -> str:
    return f"+{n:,}" if n > 0 else f"{n:,}" if n < 0 else "±0"


def _signed_money(minor: int, currency: str) -> str:
    return f"+{money(minor, currency)}" if minor > 0 else money(minor, currency) if minor < 0 else "±0"


def kpis(data: dict[str, Any]) -> list[Kpi]:
    cur, zone = data["currency"], data["time_zone"]
    since = local_time(data["yesterday_now"], zone)[-5:]
    cards = [
        Kpi(
            "orders_today",
            "Orders today",
            f"{data['orders_today']:,}",
            f"{_signed(data['orders_today'] - data['orders_yesterday'])} vs yesterday",
            f"Orders placed since midnight ({zone}), against {data['orders_yesterday']:,} yesterday up to"
            f" {since}. Rejected orders are not counted.",
        ),
        Kpi(
            "revenue_today",
            "Revenue today",
            money(data["revenue_today"], cur),
            f"{_signed_money(data['revenue_today'] - data['revenue_yesterday'], cur)} vs yesterday",
            f"Totals of today's orders less refunds, against {money(data['revenue_yesterday'], cur)}"
            f" yesterday up to {since}. Rejected, cancelled and expired orders are left out.",
        ),
        Kpi(
            "pending_payments",
            "Pending payments",
            f"{data['pending_payments']:,}",
            None,
            f"Orders with stock reserved and not yet paid, worth {money(data['pending_amount'], cur)}."
            " Unpaid reservations expire after the shop's reservation time.",
        ),
        Kpi(
            "to_ship",
            "Orders to ship",
            f"{data['to_ship']:,}",
            None,
            "Paid orders with at least one warehouse still to ship.",
        ),
    ]
    if data.get("low_stock_skus") is not None:
        cards.append(
            Kpi(
                "low_stock_skus",
                "Low-stock SKUs",
                f"{data['low_stock_skus']:,}",
                None,
                "Active SKUs with a warehouse at or below its reorder point.",
            )
        )
    return cards


def low_stock_table(data: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "SKU": r["sku"],
                "Product": r["name"],
                "Warehouse": r["warehouse"],
                "Available": r["available"],
                "Reorder point": r["reorder_point"],
            }
            for r in data["low_stock"]
        ],
        columns=["SKU", "Product", "Warehouse", "Available", "Reorder point"],
    )
