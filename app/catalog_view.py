"""The tables of the Inventory, Products and Customers pages, as DataFrames. Plain data; pages lay out."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from app.format import local_time, money

LOW = "Low"
LOW_COLOR = "background-color: #fdecea; color: #8a1c13"
STOCK_COLUMNS = ["SKU", "Product", "Warehouse", "On hand", "Reserved", "Available", "Reorder point", "Stock"]


def stock_table(rows: list[dict[str, Any]], names: dict[str, str]) -> pd.DataFrame:
    """Stock per SKU and warehouse; 'Stock' says Low when available <= reorder point."""
    return pd.DataFrame(
        [
            {
                "SKU": r["sku"],
                "Product": names.get(r["sku"], ""),
                "Warehouse": r["warehouse"],
                "On hand": r["on_hand"],
                "Reserved": r["reserved"],
                "Available": r["available"],
                "Reorder point": r["reorder_point"],
                "Stock": LOW if r["low"] else "OK",
            }
            for r in rows
        ],
        columns=STOCK_COLUMNS,
    )


def highlight_low(table: pd.DataFrame):
    """The table styled for st.dataframe: low rows tinted (the Stock column says it in words too)."""
    return table.style.apply(lambda row: [LOW_COLOR if row["Stock"] == LOW else ""] * len(row), axis=1)


MOVE_KINDS = {
    "receive": "Received",
    "adjust": "Adjusted",
    "transfer_out": "Transferred out",
    "transfer_in": "Transferred in",
    "reserve": "Reserved for an order",
    "release": "Released (order cancelled)",
    "expire": "Released (reservation expired)",
    "ship": "Shipped",
    "return": "Returned",
}


def movements_table(rows: list[dict[str, Any]], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "When": local_time(r["at"], zone),
                "Warehouse": r["warehouse"],
                "What": MOVE_KINDS.get(r["kind"], r["kind"]),
                "On hand": f"{r['on_hand_change']:+d}" if r["on_hand_change"] else "",
                "Reserved": f"{r['reserved_change']:+d}" if r["reserved_change"] else "",
                "Note": r["reason"],
                "Who": r["actor"],
            }
            for r in rows
        ],
        columns=["When", "Warehouse", "What", "On hand", "Reserved", "Note", "Who"],
    )


def products_table(rows: list[dict[str, Any]], currency: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "SKU": p["sku"],
                "Name": p["name"],
                "Category": p["category"],
                "Price": money(p["price"], currency),
                "Status": "Active" if p["active"] else "Inactive",
            }
            for p in rows
        ],
        columns=["SKU", "Name", "Category", "Price", "Status"],
    )


def customers_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Name": c["name"],
                "Email": c["email"],
                "Phone": c["phone"],
                "Notifications": notifications(c),
                "Status": "Active" if c["active"] else "Inactive",
            }
            for c in rows
        ],
        columns=["Name", "Email", "Phone", "Notifications", "Status"],
    )


def notifications(c: dict[str, Any]) -> str:
    chosen = [label for field, label in CHANNELS if c[field]]
    return ", ".join(chosen) if chosen else "none"


CHANNELS = (("notify_email", "email"), ("notify_sms", "SMS"), ("notify_push", "push"))
