"""The Orders page's state: filters <-> URL query parameters, and the tables it shows (as DataFrames).
Everything here is plain data; the page lays it out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from app.format import local_time, money
from core.orders.model import CHANNELS
from core.orders.queries import STATUSES, OrderFilter

PAGE_SIZE = 50


@dataclass(frozen=True)
class ViewState:
    """Everything the URL of an Orders view says: filters, page and the open order."""

    status: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""
    customer: str | None = None  # a customer's id
    page: int = 1
    order: int | None = None

    def filters(self) -> OrderFilter:
        return OrderFilter(
            status=self.status,
            channel=self.channel,
            customer_id=self.customer,
            date_from=self.date_from,
            date_to=self.date_to,
            text=self.text,
        )

    def filtered(self) -> bool:
        return bool(
            self.status
            or self.channel
            or self.date_from
            or self.date_to
            or self.text.strip()
            or self.customer
        )

    def to_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.status:
            out["status"] = ",".join(self.status)
        if self.channel:
            out["channel"] = ",".join(self.channel)
        if self.date_from:
            out["from"] = self.date_from.isoformat()
        if self.date_to:
            out["to"] = self.date_to.isoformat()
        if self.text.strip():
            out["q"] = self.text.strip()
        if self.customer:
            out["customer"] = self.customer
        if self.page > 1:
            out["page"] = str(self.page)
        if self.order is not None:
            out["order"] = str(self.order)
        return out


def _list(value: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    return tuple(p for p in allowed if p in parts)  # unknown values in a hand-edited URL are dropped


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _uuid(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def _int(value: str | None, minimum: int) -> int | None:
    text = (value or "").strip().lstrip("#")
    return int(text) if text.isdigit() and len(text) < 12 and int(text) >= minimum else None


def from_params(params: Mapping[str, str]) -> ViewState:
    """A view from the URL; anything malformed is ignored rather than an error."""
    start, end = _date(params.get("from")), _date(params.get("to"))
    if start and end and start > end:
        start, end = end, start
    return ViewState(
        status=_list(params.get("status"), STATUSES),
        channel=_list(params.get("channel"), CHANNELS),
        date_from=start,
        date_to=end,
        text=(params.get("q") or "")[:200],
        customer=_uuid(params.get("customer")),
        page=_int(params.get("page"), 1) or 1,
        order=_int(params.get("order"), 1),
    )


def orders_table(rows: list[dict[str, Any]], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Order": f"#{r['number']}",
                "Placed": local_time(r["placed_at"], zone),
                "Customer": r["customer_name"],
                "Channel": r["channel"],
                "Status": r["status"].replace("_", " "),
                "Total": money(r["total"], r["currency"]),
                "Paid": money(r["paid_amount"], r["currency"]),
            }
            for r in rows
        ],
        columns=["Order", "Placed", "Customer", "Channel", "Status", "Total", "Paid"],
    )


def lines_table(detail: dict[str, Any]) -> pd.DataFrame:
    cur = detail["currency"]
    return pd.DataFrame(
        [
            {
                "Line": x["line_no"],
                "SKU": x["sku"],
                "Product": x["name"],
                "Quantity": x["quantity"],
                "Unit price": money(x["unit_price"], cur),
                "Total": money(x["line_total"], cur),
                "Returned": x["returned_quantity"],
            }
            for x in detail["lines"]
        ]
    )


def allocations_table(detail: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"Warehouse": a["warehouse"], "SKU": a["sku"], "Quantity": a["quantity"], "State": a["state"]}
            for a in detail["allocations"]
        ]
    )


def shipments_table(detail: dict[str, Any], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Warehouse": s["warehouse"],
                "Carrier": s["carrier"],
                "Tracking": s["tracking"],
                "Shipped": local_time(s["shipped_at"], zone),
            }
            for s in detail["shipments"]
        ]
    )


def timeline_table(detail: dict[str, Any], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "When": local_time(e["at"], zone),
                "What": _words(e["type"]),
                "Who": e["actor"],
                "Status after": (e["data"].get("status") or "").replace("_", " "),
            }
            for e in detail["timeline"]
        ]
    )


def attempts_table(attempts: list[dict[str, Any]], zone: ZoneInfo) -> pd.DataFrame:
    """An order's gateway attempts, oldest first."""
    return pd.DataFrame(
        [
            {
                "Attempt": a["attempt"],
                "Gateway": a["gateway"],
                "Outcome": a["outcome"],
                "Answer": " ".join(x for x in (a["code"], a["message"]) if x),
                "Started": local_time(a["started_at"], zone),
            }
            for a in reversed(attempts)
        ]
    )


def notifications_table(notifications: list[dict[str, Any]], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Created": local_time(n["created_at"], zone),
                "Topic": n["topic"].replace("_", " "),
                "Channel": n["channel"].replace("_", "-"),
                "To": n["recipient"],
                "Status": n["status"],
                "Last error": n["last_error"] or "",
            }
            for n in notifications
        ]
    )


def _words(event_type: str) -> str:
    """'OrderPlaced' -> 'Order placed'."""
    out = "".join(f" {c.lower()}" if c.isupper() and i else c for i, c in enumerate(event_type))
    return out


# What a person may do to an order in each state: (label, core permission).
ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "reserved": (("pay", "orders.pay"), ("charge", "orders.pay"), ("cancel", "orders.cancel")),
    "payment_failed": (("retry_payment", "orders.pay"), ("cancel", "orders.cancel")),
    "paid": (("ship", "orders.fulfil"), ("cancel", "orders.cancel")),
    "partially_shipped": (("ship", "orders.fulfil"),),
    "shipped": (("deliver", "orders.fulfil"),),
    "delivered": (("return", "orders.return"),),
    "partially_refunded": (("return", "orders.return"),),
}


def tracking_lines(text: str, shippable: list[int]) -> tuple[dict[int, str], str]:
    """'1001 1Z999' lines -> {1001: '1Z999'}, or the first line that is not an order of the page that can
    be shipped, followed by a tracking number."""
    pairs: dict[int, str] = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        number, _, tracking = line.strip().lstrip("#").partition(" ")
        if not number.isdigit() or int(number) not in shippable:
            return {}, f"line {n}: {number[:20]!r} is not an order on this page that can be shipped"
        if not tracking.strip():
            return {}, f"line {n}: order #{number} needs a tracking number after it"
        if int(number) in pairs:
            return {}, f"line {n}: order #{number} is listed twice"
        pairs[int(number)] = tracking.strip()
    return pairs, ""


def actions_for(status: str, can) -> list[str]:
    return [name for name, permission in ACTIONS.get(status, ()) if can(permission)]
