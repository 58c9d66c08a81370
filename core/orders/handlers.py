"""Order commands: one function per command, each run by core.commands.execute.

A command reads what it needs (in one round trip where it can), lets the Order aggregate decide,
appends the events first and then folds them into the inline read models, all in one transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from core import eventstore as es
from core.catalog import CODE_PATTERN, SKU_PATTERN, text_field
from core.commands import KEY_LOOKUP, Actor, Context, business_time, derived_id, execute, parse
from core.customers import parse_id
from core.db import Database
from core.errors import NotFound, ValidationError
from core.inventory import STOCK
from core.notifications.outbox import OUTBOX
from core.orders.model import CHANNELS, IllegalTransition, Order, OutOfStock, WarehouseStock, allocate
from core.orders.projection import ORDERS
from core.payments.projection import PAYMENTS

MAX_LINES = 100
MAX_LINE_UNITS = 10_000
MAX_FEE = 1_000_000_00

# Everything placing an order needs to know, in one statement: the customer, the products, stock
# per active warehouse, the tenant's settings and the next order number (a rejected or replayed
# order leaves a gap in the numbers; that is fine).
PLACE_CONTEXT = (
    f"SELECT {KEY_LOOKUP},"
    " (SELECT json_build_array(c.id, c.name, c.active) FROM customers c WHERE c.id = %(customer)s),"
    " (SELECT coalesce(json_agg(json_build_array(p.sku, p.name, p.price, p.active)), '[]')"
    "  FROM products p WHERE p.sku = ANY(%(skus)s)),"
    " (SELECT coalesce(json_agg(json_build_array(st.sku, st.warehouse, w.priority,"
    "  st.on_hand - st.reserved)), '[]') FROM stock st"
    "  JOIN warehouses w ON w.tenant_id = st.tenant_id AND w.code = st.warehouse"
    "  WHERE st.sku = ANY(%(skus)s) AND w.active),"
    " s.allocation_strategy, s.reservation_minutes, s.tax_rate_bp, t.currency, oms_next_order_number()"
    " FROM tenant_settings s JOIN tenants t ON t.id = s.tenant_id"
)
# Every read model an order event changes, folded in the command's transaction; OUTBOX last, as it
# reads the rows the others wrote (the order, the stock levels).
ORDER_FOLDS = (ORDERS, STOCK, PAYMENTS, OUTBOX)
ORDER_BY_NUMBER = "SELECT id FROM orders WHERE number = %s"
EXPIRED = (
    "SELECT id FROM orders WHERE status = 'reserved' AND reserved_until <= %s"
    " ORDER BY reserved_until LIMIT %s"
)


class LineIn(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    quantity: int = Field(ge=1, le=MAX_LINE_UNITS, strict=True)

    @field_validator("sku", mode="before")
    @classmethod
    def normalise(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v


class PlaceOrder(BaseModel):
    customer_id: uuid.UUID
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    channel: str = "web"
    shipping_fee: int = Field(default=0, ge=0, le=MAX_FEE, strict=True)

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if v not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> PlaceOrder:
        skus = [x.sku for x in self.lines]
        if dup := sorted({s for s in skus if skus.count(s) > 1}):
            raise ValueError(f"each SKU goes on one line; repeated: {', '.join(dup)}")
        return self


def _line_dicts(lines: object) -> list[dict[str, Any]]:
    """Order lines as {"sku", "quantity"}: from dicts or (sku, quantity) pairs."""
    if not isinstance(lines, list | tuple):
        raise ValidationError("lines must be a list of (SKU, quantity) pairs")
    out = []
    for x in lines:
        if isinstance(x, dict):
            out.append(x)
        elif isinstance(x, list | tuple) and len(x) == 2:
            out.append({"sku": x[0], "quantity": x[1]})
        else:
            raise ValidationError(f"lines: each line needs a SKU and a quantity, not {str(x)[:60]!r}")
    return out


def place_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    customer_id: object,
    lines: list[Any],
    channel: str = "web",
    shipping_fee: int = 0,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    """Place an order and reserve all of it, or reject all of it (OutOfStock). Lines are
    {"sku", "quantity"} dicts or (sku, quantity) pairs."""
    cmd = parse(
        PlaceOrder,
        {
            "customer_id": parse_id(customer_id, "customer"),
            "channel": channel,
            "shipping_fee": shipping_fee,
            "lines": _line_dicts(lines),
        },
    )
    when = business_time(at)
    skus = [x.sku for x in cmd.lines]

    def handle(ctx: Context) -> dict:
        context = ctx.conn.execute(PLACE_CONTEXT, {"key": ctx.key, "customer": cmd.customer_id, "skus": skus})
        found, customer, product_rows, stock_rows, strategy, minutes, tax_bp, currency, number = (
            context.fetchone()
        )
        ctx.replay_if_found(found)
        if not customer or not customer[2]:
            raise NotFound(f"no active customer {cmd.customer_id}")
        products = {r[0]: r for r in product_rows}
        if missing := [s for s in skus if s not in products]:
            raise ValidationError(f"unknown SKU: {', '.join(missing)}")
        if inactive := [s for s in skus if not products[s][3]]:
            raise ValidationError(f"inactive SKU: {', '.join(inactive)}")
        stock: dict[str, list[WarehouseStock]] = {}
        for sku, wh, priority, available in stock_rows:
            stock.setdefault(sku, []).append(WarehouseStock(wh, priority, available))
        allocations, short = allocate({x.sku: x.quantity for x in cmd.lines}, stock, strategy)
        order_id = str(derived_id(ctx.tenant_id, ctx.key, "order"))
        events = Order.place(
            order_id=order_id,
            number=number,
            customer={"id": customer[0], "name": customer[1]},
            channel=cmd.channel,
            currency=currency.strip(),
            shipping_fee=cmd.shipping_fee,
            tax_rate_bp=tax_bp,
            lines=[
                {
                    "sku": x.sku,
                    "name": products[x.sku][1],
                    "quantity": x.quantity,
                    "unit_price": products[x.sku][2],
                }
                for x in cmd.lines
            ],
            at=when,
            allocations=allocations,
            short=short,
            reserved_until=when + timedelta(minutes=minutes),
        )
        # If another order took the stock since the read, the stock CHECK fails at commit and
        # execute() runs this handler again with fresh stock levels.
        ctx.record(f"order-{order_id}", "order", events, 0, *ORDER_FOLDS, correlation_id=uuid.UUID(order_id))
        placed, outcome = events[0][1], events[1][1]
        return {
            "order_id": order_id,
            "number": number,
            "status": outcome["status"],
            "total": placed["total"],
            "currency": placed["currency"],
            "allocations": allocations,
            "short": short,
        }

    result = execute(db, tenant_id, actor, "orders.place", key, handle, lookup_in_handler=True)
    if result["status"] == "rejected":
        raise OutOfStock(result["number"], result["short"])
    return result


def order_command(
    db: Database,
    tenant_id: object,
    actor: Actor,
    action: str,
    order_ref: object,
    key: str | None,
    decide,
    check=None,
) -> dict:
    """Load an order by id or number, let the aggregate decide, append and fold.
    check(conn), if given, validates what the command refers to before the aggregate decides."""

    def handle(ctx: Context) -> dict:
        oid = resolve_order_id(ctx.conn, order_ref)
        events = es.read_stream(ctx.conn, f"order-{oid}")
        ctx.check_replay()
        if not events:
            raise NotFound(f"no order {str(order_ref)[:60]}")
        if check:
            check(ctx.conn)
        order = Order.load(events)
        new = decide(order)
        record_order(ctx, oid, new, order.version)
        return {
            "order_id": oid,
            "number": order.number,
            "status": new[-1][1]["status"],
            "events": [t for t, _ in new],
        }

    return execute(
        db, tenant_id, actor, action, key, handle, command=decide.__qualname__.split(".<locals>")[0]
    )


def record_order(ctx: Context, order_id: str, events: list, version: int) -> None:
    ctx.record(
        f"order-{order_id}", "order", events, version, *ORDER_FOLDS, correlation_id=uuid.UUID(order_id)
    )


def resolve_order_id(conn, ref: object) -> str:
    """An order's id from its id or its number ('1001' or '#1001')."""
    text = str(ref).strip().lstrip("#")
    if text.isdigit() and len(text) < 19:
        row = conn.execute(ORDER_BY_NUMBER, [int(text)]).fetchone()
        if not row:
            raise NotFound(f"no order #{text}")
        return str(row[0])
    return str(parse_id(text, "order"))


class Shipment(BaseModel):
    carrier: str
    tracking: str
    warehouse: str | None = Field(default=None, pattern=CODE_PATTERN)

    @field_validator("carrier", "tracking")
    @classmethod
    def _text(cls, v: str) -> str:
        return text_field(v, "carrier and tracking", 100)


def pay_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    amount: int | None = None,
    method: str = "manual",
    reference: str = "",
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0):
        raise ValidationError("amount must be a positive whole number of minor units")
    method, reference = (
        text_field(method, "method", 40),
        text_field(reference, "reference", 200, required=False),
    )
    when = business_time(at)
    return order_command(
        db,
        tenant_id,
        actor,
        "orders.pay",
        order,
        key,
        lambda o: o.pay(o.total if amount is None else amount, method, reference, when),
    )


def ship_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    carrier: str,
    tracking: str,
    warehouse: str | None = None,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    s = parse(
        Shipment,
        {
            "carrier": carrier,
            "tracking": tracking,
            "warehouse": warehouse.strip().upper() if isinstance(warehouse, str) else warehouse,
        },
    )
    when = business_time(at)
    return order_command(
        db,
        tenant_id,
        actor,
        "orders.fulfil",
        order,
        key,
        lambda o: o.ship(s.warehouse, s.carrier, s.tracking, when),
    )


def deliver_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    when = business_time(at)
    return order_command(db, tenant_id, actor, "orders.fulfil", order, key, lambda o: o.deliver(when))


def cancel_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    reason: str = "",
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    reason = text_field(reason, "reason", 200, required=False)
    when = business_time(at)
    return order_command(db, tenant_id, actor, "orders.cancel", order, key, lambda o: o.cancel(reason, when))


def return_items(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    items: dict[int, int],
    warehouse: str,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    """Take back delivered units (line number -> quantity) into a warehouse, and refund them."""
    if not isinstance(items, dict) or not items:
        raise ValidationError("a return needs at least one line and quantity")
    for line_no, qty in items.items():
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (line_no, qty)):
            raise ValidationError("return lines and quantities must be whole numbers")
        if not 1 <= qty <= MAX_LINE_UNITS:
            raise ValidationError(f"return quantity must be between 1 and {MAX_LINE_UNITS}")
    code = str(warehouse).strip().upper()
    when = business_time(at)

    def restock_warehouse(conn) -> None:
        row = conn.execute("SELECT active FROM warehouses WHERE code = %s", [code]).fetchone()
        if not row or not row[0]:
            raise ValidationError(f"no active warehouse {code[:32]} to restock into")

    return order_command(
        db,
        tenant_id,
        actor,
        "orders.return",
        order,
        key,
        lambda o: o.return_items(items, code, when),
        check=restock_warehouse,
    )


def expire_order(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    now: datetime | None = None,
    key: str | None = None,
) -> dict:
    when = business_time(now)
    return order_command(
        db, tenant_id, actor, "orders.expire", order, key or f"expire:{order}", lambda o: o.expire(when)
    )


def expire_reservations(
    db: Database, tenant_id: object, actor: Actor, *, now: datetime | None = None, limit: int = 500
) -> list[dict]:
    """Release every reservation of the tenant that ran out unpaid. The worker calls this."""
    when = business_time(now)
    with db.tenant(tenant_id) as conn:
        due = [str(r[0]) for r in conn.execute(EXPIRED, [when, limit])]
    done = []
    for oid in due:
        try:
            done.append(expire_order(db, tenant_id, actor, oid, now=when))
        except IllegalTransition:
            continue  # paid or cancelled since we looked: nothing to expire
    return done
