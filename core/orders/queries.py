"""What people ask about orders: filtered, paginated lists (in SQL) and one order in full."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core import eventstore as es
from core.commands import Actor, require
from core.customers import parse_id
from core.db import Database
from core.errors import NotFound, ValidationError
from core.orders.handlers import resolve_order_id
from core.orders.model import CHANNELS

STATUSES = (
    "reserved",
    "rejected",
    "paid",
    "partially_shipped",
    "shipped",
    "delivered",
    "cancelled",
    "expired",
    "partially_refunded",
    "refunded",
)
LIST_COLUMNS = (
    "id",
    "number",
    "placed_at",
    "customer_id",
    "customer_name",
    "channel",
    "status",
    "currency",
    "total",
    "paid_amount",
    "refunded_amount",
)
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class OrderFilter:
    """The filters of the Orders list. Dates are whole days in the tenant's time zone."""

    status: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    customer_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if bad := [s for s in self.status if s not in STATUSES]:
            raise ValidationError(f"unknown status: {', '.join(map(str, bad))[:100]}")
        if bad := [c for c in self.channel if c not in CHANNELS]:
            raise ValidationError(f"unknown channel: {', '.join(map(str, bad))[:100]}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValidationError("the date range ends before it starts")
        if len(self.text) > 200:
            raise ValidationError("search text is limited to 200 characters")


@dataclass
class OrderPage:
    rows: list[dict[str, Any]]
    page: int
    page_size: int
    has_next: bool
    filters: OrderFilter = field(default_factory=OrderFilter)


def _where(f: OrderFilter, zone: ZoneInfo) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if f.status:
        clauses.append("status = ANY(%s)")
        params.append(list(f.status))
    if f.channel:
        clauses.append("channel = ANY(%s)")
        params.append(list(f.channel))
    if f.customer_id:
        clauses.append("customer_id = %s")
        params.append(parse_id(f.customer_id, "customer"))
    if f.date_from:
        clauses.append("placed_at >= %s")
        params.append(datetime.combine(f.date_from, time.min, zone))
    if f.date_to:
        clauses.append("placed_at < %s")
        params.append(datetime.combine(f.date_to + timedelta(days=1), time.min, zone))
    if text := f.text.strip():
        number = text.lstrip("#")
        if number.isdigit() and len(number) < 19:
            clauses.append("number = %s")
            params.append(int(number))
        else:
            clauses.append("(customer_name ILIKE %s)")
            params.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return " AND ".join(clauses), params


def list_orders(
    db: Database,
    tenant_id: object,
    actor: Actor,
    filters: OrderFilter | None = None,
    *,
    page: int = 1,
    page_size: int = 50,
) -> OrderPage:
    """One page of orders, newest first, filtered in SQL; has_next instead of a slow total count."""
    require(actor, "orders.view")
    filters = filters or OrderFilter()
    if (
        not isinstance(page, int)
        or page < 1
        or not isinstance(page_size, int)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise ValidationError(f"page must be 1 or more and page size between 1 and {MAX_PAGE_SIZE}")
    with db.tenant(tenant_id) as conn:
        zone = ZoneInfo(conn.execute("SELECT time_zone FROM tenants").fetchone()[0])
        where, params = _where(filters, zone)
        rows = conn.execute(
            f"SELECT {', '.join(LIST_COLUMNS)} FROM orders WHERE {where}"
            " ORDER BY placed_at DESC, number DESC LIMIT %s OFFSET %s",
            [*params, page_size + 1, (page - 1) * page_size],
        ).fetchall()
    out = [dict(zip(LIST_COLUMNS, r, strict=True)) for r in rows[:page_size]]
    return OrderPage(out, page, page_size, len(rows) > page_size, filters)


def order_detail(db: Database, tenant_id: object, actor: Actor, order: object) -> dict[str, Any]:
    """An order with its lines, allocation per warehouse, shipments and event timeline."""
    require(actor, "orders.view")
    with db.tenant(tenant_id) as conn:
        oid = resolve_order_id(conn, order)
        head = conn.execute(
            "SELECT id, number, status, customer_id, customer_name, channel, currency, subtotal,"
            " shipping_fee, tax, total, paid_amount, refunded_amount, placed_at, reserved_until, paid_at,"
            " shipped_at, delivered_at, closed_at, version FROM orders WHERE id = %s",
            [oid],
        )
        cols = [c.name for c in head.description]
        row = head.fetchone()
        if not row:
            raise NotFound(f"no order {str(order)[:60]}")
        detail = dict(zip(cols, row, strict=True))
        detail["lines"] = _rows(
            conn,
            "SELECT line_no, sku, name, quantity, unit_price, line_total, returned_quantity"
            " FROM order_lines WHERE order_id = %s ORDER BY line_no",
            oid,
        )
        detail["allocations"] = _rows(
            conn,
            "SELECT sku, warehouse, quantity, state FROM order_allocations"
            " WHERE order_id = %s ORDER BY warehouse, sku",
            oid,
        )
        detail["shipments"] = _rows(
            conn,
            "SELECT warehouse, carrier, tracking, shipped_at FROM shipments"
            " WHERE order_id = %s ORDER BY shipped_at, warehouse",
            oid,
        )
        detail["timeline"] = [
            {
                "version": e.version,
                "type": e.event_type,
                "at": e.data.get("at") or e.recorded_at.isoformat(),
                "recorded_at": e.recorded_at,
                "actor": e.metadata.get("actor", ""),
                "data": e.data,
            }
            for e in es.read_stream(conn, f"order-{oid}")
        ]
    return detail


def _rows(conn, query: str, *params: Any) -> list[dict[str, Any]]:
    cur = conn.execute(query, list(params))
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur]
