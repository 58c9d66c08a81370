"""What people ask about orders: filtered, paginated lists (in SQL) and one order in full."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
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
    "payment_pending",
    "payment_failed",
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


# The Overview's figures in one statement. Day bounds are computed in the tenant's time zone by the
# server: "today" runs from local midnight to now, "yesterday" from the local midnight before to the same
# local wall-clock time a day earlier. Orders count if not rejected; revenue is what placed orders are
# worth now: totals less refunds, leaving out orders that were rejected, cancelled or expired.
OVERVIEW = """
WITH z AS (
    SELECT currency::text AS currency, time_zone AS tz,
           %(now)s::timestamptz AT TIME ZONE time_zone AS local_now
    FROM tenants
), b AS (
    SELECT currency, tz,
           date_trunc('day', local_now) AT TIME ZONE tz AS today_start,
           (date_trunc('day', local_now) - interval '1 day') AT TIME ZONE tz AS yesterday_start,
           (local_now - interval '1 day') AT TIME ZONE tz AS yesterday_now
    FROM z
), d AS (
    SELECT o.placed_at >= b.today_start AS today, o.status, o.total - o.refunded_amount AS worth
    FROM b JOIN orders o ON o.placed_at >= b.yesterday_start AND o.placed_at <= %(now)s
    WHERE o.placed_at >= b.today_start OR o.placed_at <= b.yesterday_now
)
SELECT b.currency, b.tz, b.today_start, b.yesterday_start, b.yesterday_now,
       (SELECT count(*) FROM d WHERE today AND status <> 'rejected'),
       (SELECT coalesce(sum(worth), 0) FROM d WHERE today AND status <> ALL(%(gone)s)),
       (SELECT count(*) FROM d WHERE NOT today AND status <> 'rejected'),
       (SELECT coalesce(sum(worth), 0) FROM d WHERE NOT today AND status <> ALL(%(gone)s)),
       (SELECT count(*) FROM orders WHERE status = 'reserved'),
       (SELECT coalesce(sum(total), 0) FROM orders WHERE status = 'reserved'),
       (SELECT count(*) FROM orders WHERE status IN ('paid', 'partially_shipped')),
       (SELECT count(DISTINCT s.sku) FROM stock s JOIN products p ON p.sku = s.sku
         WHERE p.active AND s.on_hand - s.reserved <= s.reorder_point)
FROM b
"""
OVERVIEW_KEYS = (
    "currency",
    "time_zone",
    "today_start",
    "yesterday_start",
    "yesterday_now",
    "orders_today",
    "revenue_today",
    "orders_yesterday",
    "revenue_yesterday",
    "pending_payments",
    "pending_amount",
    "to_ship",
    "low_stock_skus",
)
# The SKUs behind the low-stock figure, emptiest first (per warehouse, as the Inventory page shows them).
LOW_STOCK = (
    "SELECT s.sku, p.name, s.warehouse, s.on_hand - s.reserved, s.reorder_point FROM stock s"
    " JOIN products p ON p.sku = s.sku WHERE p.active AND s.on_hand - s.reserved <= s.reorder_point"
    " ORDER BY s.on_hand - s.reserved - s.reorder_point, s.sku, s.warehouse LIMIT %s"
)
LOW_STOCK_KEYS = ("sku", "name", "warehouse", "available", "reorder_point")
GONE = ("rejected", "cancelled", "expired")


def overview(
    db: Database, tenant_id: object, actor: Actor, now: datetime | None = None, *, low_stock_rows: int = 10
) -> dict[str, Any]:
    """The Overview's KPI figures at `now` (default: the current time), money in minor units of the
    tenant's currency: orders and revenue today and up to the same time yesterday (tenant's time zone),
    pending payments (reserved orders and what they are worth), orders to ship (paid or partially shipped)
    and low-stock SKUs (active SKUs with a warehouse at or below its reorder point)."""
    require(actor, "orders.view")
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime) or now.tzinfo is None:
        raise ValidationError("now must be a date with a time and a time zone")
    with db.tenant(tenant_id) as conn:
        row = conn.execute(OVERVIEW, {"now": now, "gone": list(GONE)}).fetchone()
        if row is None:
            raise NotFound(f"no tenant with id {tenant_id}")
        low = conn.execute(LOW_STOCK, [low_stock_rows]).fetchall() if actor.can("stock.view") else []
    out = dict(zip(OVERVIEW_KEYS, row, strict=True))
    out["currency"] = out["currency"].strip()
    out["now"] = now
    if not actor.can("stock.view"):
        out["low_stock_skus"] = None
    out["low_stock"] = [dict(zip(LOW_STOCK_KEYS, r, strict=True)) for r in low]
    return out
