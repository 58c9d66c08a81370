"""Stock per SKU and warehouse: receive, adjust, transfer, reorder points, and the stock read model.

Every movement is an event. Staff movements go to the SKU's stock stream; reservations, releases,
shipments and returns are order events that the same projection folds into stock. The table's
CHECK (0 <= reserved <= on_hand) refuses any fold that would oversell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from core import eventstore as es
from core.catalog import CODE_PATTERN, SKU_PATTERN, get_product, get_warehouse, text_field
from core.commands import Actor, Context, business_time, execute, parse, require
from core.db import Database
from core.errors import ValidationError
from core.projections import Projection

MAX_UNITS = 1_000_000


def _upper(v: Any) -> Any:
    return v.strip().upper() if isinstance(v, str) else v


class Movement(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    warehouse: str = Field(pattern=CODE_PATTERN)

    @field_validator("sku", "warehouse", mode="before")
    @classmethod
    def normalise(cls, v: Any) -> Any:
        return _upper(v)


class Receive(Movement):
    quantity: int = Field(ge=1, le=MAX_UNITS, strict=True)


class Adjust(Movement):
    change: int = Field(ge=-MAX_UNITS, le=MAX_UNITS, strict=True)
    reason: str

    @field_validator("change")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("an adjustment must change the quantity")
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return text_field(v, "reason")


class Transfer(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    source: str = Field(pattern=CODE_PATTERN)
    destination: str = Field(pattern=CODE_PATTERN)
    quantity: int = Field(ge=1, le=MAX_UNITS, strict=True)

    @field_validator("sku", "source", "destination", mode="before")
    @classmethod
    def normalise(cls, v: Any) -> Any:
        return _upper(v)


class ReorderPoint(Movement):
    reorder_point: int = Field(ge=0, le=MAX_UNITS, strict=True)


def _known(ctx: Context, sku: str, *warehouses: str) -> None:
    if not get_product(ctx.conn, sku)["active"]:
        raise ValidationError(f"product {sku} is inactive")
    for code in warehouses:
        if not get_warehouse(ctx.conn, code)["active"]:
            raise ValidationError(f"warehouse {code} is inactive")


def _move(
    db: Database,
    tenant_id: object,
    actor: Actor,
    key: str | None,
    at: datetime | None,
    m: BaseModel,
    event_type: str,
    check: Callable[[Context], None],
    answer: Callable[[Context], dict],
) -> dict:
    """Run one staff stock movement: check it against current stock, record it on the SKU's stock
    stream, fold it, and answer with the rows it changed."""
    when = business_time(at)

    def handle(ctx: Context) -> dict:
        check(ctx)
        data = {**m.model_dump(), "at": when.isoformat()}
        from core.notifications.outbox import OUTBOX  # here: the outbox reads this module's STOCK changes

        ctx.record(f"stock-{m.sku}", "stock", [(event_type, data)], None, STOCK, OUTBOX)
        return answer(ctx)

    # The command's name for its idempotency key: StockReceived -> "stock received".
    command = re.sub(r"(?<!^)(?=[A-Z])", " ", event_type).lower()
    return execute(db, tenant_id, actor, "stock.move", key, handle, command=command)


def receive(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    key: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> dict:
    m = parse(Receive, fields)
    return _move(
        db,
        tenant_id,
        actor,
        key,
        at,
        m,
        "StockReceived",
        check=lambda ctx: _known(ctx, m.sku, m.warehouse),
        answer=lambda ctx: stock_row(ctx.conn, m.sku, m.warehouse),
    )


def adjust(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    key: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> dict:
    """Correct on-hand units (breakage, a count); written-off stock may belong to inactive records."""
    m = parse(Adjust, fields)

    def check(ctx: Context) -> None:
        get_product(ctx.conn, m.sku)
        get_warehouse(ctx.conn, m.warehouse)
        available = stock_row(ctx.conn, m.sku, m.warehouse)["available"]
        if available + m.change < 0:
            raise ValidationError(
                f"{m.sku} has {available} available in {m.warehouse}: cannot take away {-m.change}"
            )

    return _move(
        db,
        tenant_id,
        actor,
        key,
        at,
        m,
        "StockAdjusted",
        check,
        answer=lambda ctx: stock_row(ctx.conn, m.sku, m.warehouse),
    )


def transfer(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    key: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> dict:
    m = parse(Transfer, fields)
    if m.source == m.destination:
        raise ValidationError("a transfer needs two different warehouses")

    def check(ctx: Context) -> None:
        _known(ctx, m.sku, m.source, m.destination)
        available = stock_row(ctx.conn, m.sku, m.source)["available"]
        if available < m.quantity:
            raise ValidationError(
                f"{m.sku} has {available} available in {m.source}: cannot transfer {m.quantity}"
            )

    def answer(ctx: Context) -> dict:
        return {"from": stock_row(ctx.conn, m.sku, m.source), "to": stock_row(ctx.conn, m.sku, m.destination)}

    return _move(db, tenant_id, actor, key, at, m, "StockTransferred", check, answer)


def set_reorder_point(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    key: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> dict:
    m = parse(ReorderPoint, fields)

    def check(ctx: Context) -> None:
        get_product(ctx.conn, m.sku)
        get_warehouse(ctx.conn, m.warehouse)

    return _move(
        db,
        tenant_id,
        actor,
        key,
        at,
        m,
        "ReorderPointSet",
        check,
        answer=lambda ctx: stock_row(ctx.conn, m.sku, m.warehouse),
    )


STOCK_COLUMNS = ("sku", "warehouse", "on_hand", "reserved", "available", "reorder_point", "low")
STOCK_SELECT = (
    "SELECT s.sku, s.warehouse, s.on_hand, s.reserved, s.on_hand - s.reserved,"
    " s.reorder_point, s.on_hand - s.reserved <= s.reorder_point FROM stock s"
)


def stock_row(conn, sku: str, warehouse: str) -> dict:
    row = conn.execute(STOCK_SELECT + " WHERE s.sku = %s AND s.warehouse = %s", [sku, warehouse]).fetchone()
    return (
        dict(zip(STOCK_COLUMNS, row, strict=True))
        if row
        else {
            "sku": sku,
            "warehouse": warehouse,
            "on_hand": 0,
            "reserved": 0,
            "available": 0,
            "reorder_point": 0,
            "low": False,
        }
    )


def stock_levels(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    sku: str = "",
    warehouse: str = "",
    low_only: bool = False,
) -> list[dict]:
    require(actor, "stock.view")
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(
            STOCK_SELECT + " WHERE (%s = '' OR s.sku = %s) AND (%s = '' OR s.warehouse = %s)"
            " AND (NOT %s OR s.on_hand - s.reserved <= s.reorder_point) ORDER BY s.sku, s.warehouse",
            [sku.upper(), sku.upper(), warehouse.upper(), warehouse.upper(), low_only],
        ).fetchall()
    return [dict(zip(STOCK_COLUMNS, r, strict=True)) for r in rows]


MOVEMENT_COLUMNS = (
    "at",
    "warehouse",
    "kind",
    "on_hand_change",
    "reserved_change",
    "reason",
    "order_id",
    "actor",
)


def movements(db: Database, tenant_id: object, actor: Actor, sku: str, limit: int = 200) -> list[dict]:
    require(actor, "stock.view")
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(MOVEMENT_COLUMNS)} FROM stock_movements WHERE sku = %s"
            " ORDER BY at DESC, position DESC, line DESC LIMIT %s",
            [sku.strip().upper(), min(limit, 5000)],
        ).fetchall()
    return [dict(zip(MOVEMENT_COLUMNS, r, strict=True)) for r in rows]


class StockProjection(Projection):
    """stock and stock_movements, from staff movements and from the order events that move stock."""

    name = "stock"
    tables = ("stock", "stock_movements")
    kind = "inline"
    # One statement per batch of events: the movements travel as JSON, are summed per SKU and warehouse
    # (so each row is touched once), and every row moves and every movement is recorded together.
    # Stock arriving (more on hand, nothing reserved) may create the row; every other change updates an
    # existing one. (An upsert would not do for reservations: CHECK runs on the proposed insert row
    # before the conflict.)
    MOVE = (
        "WITH u AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%(moves)s::jsonb) AS u (position bigint,"
        " line int, sku text, warehouse text, kind text, on_hand_change int, reserved_change int,"
        " reason text, order_id uuid, actor text, at timestamptz)),"
        " net AS MATERIALIZED (SELECT sku, warehouse, sum(on_hand_change)::int AS on_hand,"
        " sum(reserved_change)::int AS reserved FROM u GROUP BY sku, warehouse),"
        " arrive AS (INSERT INTO stock (tenant_id, sku, warehouse, on_hand, updated_at)"
        " SELECT oms_current_tenant(), n.sku, n.warehouse, n.on_hand, %(at)s FROM net n"
        " WHERE n.on_hand > 0 AND n.reserved = 0"
        " ON CONFLICT (tenant_id, sku, warehouse) DO UPDATE SET on_hand = stock.on_hand + excluded.on_hand,"
        " updated_at = excluded.updated_at),"
        " change AS (UPDATE stock SET on_hand = stock.on_hand + n.on_hand,"
        " reserved = stock.reserved + n.reserved,"
        " updated_at = %(at)s FROM net n WHERE stock.sku = n.sku AND stock.warehouse = n.warehouse"
        " AND NOT (n.on_hand > 0 AND n.reserved = 0) AND (n.on_hand <> 0 OR n.reserved <> 0))"
        " INSERT INTO stock_movements (tenant_id, position, line, sku, warehouse, kind, on_hand_change,"
        " reserved_change, reason, order_id, actor, at)"
        " SELECT oms_current_tenant(), u.position, u.line, u.sku, u.warehouse, u.kind, u.on_hand_change,"
        " u.reserved_change, u.reason, u.order_id, u.actor, u.at FROM u"
    )
    REORDER = (
        "INSERT INTO stock (tenant_id, sku, warehouse, reorder_point, updated_at)"
        " VALUES (oms_current_tenant(), %s, %s, %s, %s) ON CONFLICT (tenant_id, sku, warehouse)"
        " DO UPDATE SET reorder_point = excluded.reorder_point, updated_at = excluded.updated_at"
    )

    @staticmethod
    def changes(event: es.RecordedEvent) -> list[tuple[str, str, str, int, int, str]]:
        """(sku, warehouse, kind, on_hand change, reserved change, reason) for each line the event moves."""
        d = event.data
        match event.event_type:
            case "StockReceived":
                return [(d["sku"], d["warehouse"], "receive", d["quantity"], 0, "")]
            case "StockAdjusted":
                return [(d["sku"], d["warehouse"], "adjust", d["change"], 0, d["reason"])]
            case "StockTransferred":
                return [
                    (d["sku"], d["source"], "transfer_out", -d["quantity"], 0, f"to {d['destination']}"),
                    (d["sku"], d["destination"], "transfer_in", d["quantity"], 0, f"from {d['source']}"),
                ]
            case "OrderReserved":
                return [(a["sku"], a["warehouse"], "reserve", 0, a["quantity"], "") for a in d["allocations"]]
            case "OrderCancelled" | "ReservationExpired" | "PaymentFailed":
                kind = "expire" if event.event_type == "ReservationExpired" else "release"
                return [(a["sku"], a["warehouse"], kind, 0, -a["quantity"], "") for a in d["released"]]
            case "OrderShipped":
                return [
                    (i["sku"], d["warehouse"], "ship", -i["quantity"], -i["quantity"], d["tracking"])
                    for i in d["items"]
                ]
            case "ReturnReceived":
                return [(i["sku"], d["warehouse"], "return", i["quantity"], 0, "") for i in d["items"]]
        return []

    def movements(self, event: es.RecordedEvent, at: Any) -> list[dict]:
        """The stock_movements rows the event makes (also flattened into the analytic store)."""
        order_id = event.data.get("order_id")
        return [
            {
                "position": event.position,
                "line": n,
                "sku": sku,
                "warehouse": wh,
                "kind": kind,
                "on_hand_change": on_hand,
                "reserved_change": reserved,
                "reason": reason,
                "order_id": order_id,
                "at": at,
            }
            for n, (sku, wh, kind, on_hand, reserved, reason) in enumerate(self.changes(event))
        ]

    def apply(self, conn, event: es.RecordedEvent) -> None:
        self.apply_all(conn, [event])

    def apply_all(self, conn, events) -> None:
        moves: list[dict] = []
        for event in events:
            if event.event_type == "ReorderPointSet":
                d = event.data
                conn.execute(self.REORDER, [d["sku"], d["warehouse"], d["reorder_point"], event.recorded_at])
                continue
            at = event.data.get("at") or event.recorded_at.isoformat()
            actor = event.metadata.get("actor", "")
            moves += [m | {"actor": actor} for m in self.movements(event, at)]
        if moves:
            encoded = json.dumps(moves, ensure_ascii=False, separators=(",", ":"))
            conn.execute(self.MOVE, {"moves": encoded, "at": moves[-1]["at"]})


STOCK = StockProjection()
