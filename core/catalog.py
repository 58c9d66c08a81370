"""The catalog: products (SKU unique per tenant, price in minor units) and warehouses."""

from __future__ import annotations

import unicodedata
from typing import Any

from pydantic import BaseModel, Field, field_validator

from core import eventstore as es
from core.commands import Actor, Context, execute, parse, require
from core.db import Database
from core.errors import NotFound, ValidationError
from core.projections import Projection, fold

SKU_PATTERN = r"^[A-Z0-9][A-Z0-9._-]{0,63}$"
CODE_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{0,31}$"
MAX_PRICE = 100_000_000_00  # a hundred million in major units


# Characters that make text lie about itself: controls, bidi overrides, invisible spaces.
# Joiners stay allowed (emoji sequences such as a family use them).
HIDDEN = set("\u200b\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_field(v: object, what: str, max_len: int = 200, required: bool = True) -> str:
    """Clean one line of text a person typed, or refuse it with a ValidationError naming the field."""
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise ValidationError(f"{what} must be text")
    v = v.strip()
    if required and not v:
        raise ValidationError(f"{what} is required")
    if len(v) > max_len:
        raise ValidationError(f"{what} must be at most {max_len} characters")
    if any(c in HIDDEN or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") for c in v):
        raise ValidationError(f"{what} must be plain text, without control or invisible characters")
    return v


class ProductFields(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    name: str
    category: str = ""
    price: int = Field(ge=0, le=MAX_PRICE, strict=True)

    @field_validator("sku", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return text_field(v, "name")

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        return text_field(v, "category", 100, required=False)


class WarehouseFields(BaseModel):
    code: str = Field(pattern=CODE_PATTERN)
    name: str
    region: str = ""
    priority: int = Field(default=100, ge=0, le=10_000, strict=True)

    @field_validator("code", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return text_field(v, "name")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        return text_field(v, "region", 100, required=False)


def _append(ctx: Context, stream: str, kind: str, event_type: str, data: dict, expected: int | None) -> None:
    result = es.append(
        ctx.conn,
        [
            es.StreamAppend(
                stream,
                kind,
                [es.NewEvent(event_type=event_type, data=data, event_id=ctx.event_id(0))],
                expected_version=expected,
            )
        ],
        es.Metadata(ctx.actor.name),
    )
    fold(ctx.conn, result, CATALOG)


def add_product(
    db: Database, tenant_id: object, actor: Actor, *, key: str | None = None, **fields: Any
) -> dict:
    p = parse(ProductFields, fields)

    def handle(ctx: Context) -> dict:
        if ctx.conn.execute("SELECT 1 FROM products WHERE sku = %s", [p.sku]).fetchone():
            raise ValidationError(f"a product with SKU {p.sku} already exists")
        _append(ctx, f"product-{p.sku}", "product", "ProductAdded", p.model_dump(), 0)
        return p.model_dump()

    return execute(db, tenant_id, actor, "catalog.manage", key, handle)


def update_product(
    db: Database, tenant_id: object, actor: Actor, sku: str, *, key: str | None = None, **changes: Any
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_product(ctx.conn, sku)
        merged = parse(ProductFields, {**current, **changes, "sku": current["sku"]})
        data = {k: v for k, v in merged.model_dump().items() if v != current[k] or k == "sku"}
        if len(data) > 1:
            _append(ctx, f"product-{merged.sku}", "product", "ProductUpdated", data, None)
        return merged.model_dump()

    return execute(db, tenant_id, actor, "catalog.manage", key, handle)


def set_product_active(
    db: Database, tenant_id: object, actor: Actor, sku: str, active: bool, *, key: str | None = None
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_product(ctx.conn, sku)
        if current["active"] != active:
            event = "ProductReactivated" if active else "ProductDeactivated"
            _append(ctx, f"product-{current['sku']}", "product", event, {"sku": current["sku"]}, None)
        return {"sku": current["sku"], "active": active}

    return execute(db, tenant_id, actor, "catalog.manage", key, handle)


def get_product(conn, sku: Any) -> dict:
    row = conn.execute(
        "SELECT sku, name, category, price, active FROM products WHERE sku = %s", [str(sku).strip().upper()]
    ).fetchone()
    if not row:
        raise NotFound(f"no product with SKU {str(sku)[:64]}")
    return dict(zip(("sku", "name", "category", "price", "active"), row, strict=True))


def list_products(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    search: str = "",
    category: str = "",
    include_inactive: bool = True,
    limit: int = 200,
    offset: int = 0,
) -> list[dict]:
    require(actor, "catalog.view")
    like = f"%{search.strip().lower()}%"
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(
            "SELECT sku, name, category, price, active FROM products"
            " WHERE (lower(sku) LIKE %s OR lower(name) LIKE %s) AND (%s = '' OR category = %s)"
            " AND (%s OR active) ORDER BY sku LIMIT %s OFFSET %s",
            [like, like, category, category, include_inactive, min(limit, 1000), offset],
        ).fetchall()
    return [dict(zip(("sku", "name", "category", "price", "active"), r, strict=True)) for r in rows]


def add_warehouse(
    db: Database, tenant_id: object, actor: Actor, *, key: str | None = None, **fields: Any
) -> dict:
    w = parse(WarehouseFields, fields)

    def handle(ctx: Context) -> dict:
        if ctx.conn.execute("SELECT 1 FROM warehouses WHERE code = %s", [w.code]).fetchone():
            raise ValidationError(f"a warehouse with code {w.code} already exists")
        _append(ctx, f"warehouse-{w.code}", "warehouse", "WarehouseAdded", w.model_dump(), 0)
        return w.model_dump()

    return execute(db, tenant_id, actor, "warehouses.manage", key, handle)


def update_warehouse(
    db: Database, tenant_id: object, actor: Actor, code: str, *, key: str | None = None, **changes: Any
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_warehouse(ctx.conn, code)
        merged = parse(WarehouseFields, {**current, **changes, "code": current["code"]})
        data = {k: v for k, v in merged.model_dump().items() if v != current[k] or k == "code"}
        if len(data) > 1:
            _append(ctx, f"warehouse-{merged.code}", "warehouse", "WarehouseUpdated", data, None)
        return merged.model_dump()

    return execute(db, tenant_id, actor, "warehouses.manage", key, handle)


def set_warehouse_active(
    db: Database, tenant_id: object, actor: Actor, code: str, active: bool, *, key: str | None = None
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_warehouse(ctx.conn, code)
        if current["active"] != active:
            event = "WarehouseReactivated" if active else "WarehouseDeactivated"
            _append(ctx, f"warehouse-{current['code']}", "warehouse", event, {"code": current["code"]}, None)
        return {"code": current["code"], "active": active}

    return execute(db, tenant_id, actor, "warehouses.manage", key, handle)


def get_warehouse(conn, code: Any) -> dict:
    row = conn.execute(
        "SELECT code, name, region, priority, active FROM warehouses WHERE code = %s",
        [str(code).strip().upper()],
    ).fetchone()
    if not row:
        raise NotFound(f"no warehouse with code {str(code)[:32]}")
    return dict(zip(("code", "name", "region", "priority", "active"), row, strict=True))


def list_warehouses(db: Database, tenant_id: object, actor: Actor) -> list[dict]:
    require(actor, "stock.view")
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(
            "SELECT code, name, region, priority, active FROM warehouses ORDER BY priority, code"
        )
        return [dict(zip(("code", "name", "region", "priority", "active"), r, strict=True)) for r in rows]


class CatalogProjection(Projection):
    """products and warehouses, folded inline from Product* and Warehouse* events."""

    name = "catalog"
    tables = ("products", "warehouses")
    kind = "inline"
    PRODUCT_COLUMNS = ("name", "category", "price")
    WAREHOUSE_COLUMNS = ("name", "region", "priority")

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d, at = event.data, event.recorded_at
        match event.event_type:
            case "ProductAdded":
                conn.execute(
                    "INSERT INTO products (tenant_id, sku, name, category, price, created_at, updated_at)"
                    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s, %s)",
                    [d["sku"], d["name"], d["category"], d["price"], at, at],
                )
            case "ProductUpdated":
                self._update(conn, "products", "sku", d, self.PRODUCT_COLUMNS, at)
            case "ProductDeactivated" | "ProductReactivated":
                conn.execute(
                    "UPDATE products SET active = %s, updated_at = %s WHERE sku = %s",
                    [event.event_type == "ProductReactivated", at, d["sku"]],
                )
            case "WarehouseAdded":
                conn.execute(
                    "INSERT INTO warehouses (tenant_id, code, name, region, priority, created_at)"
                    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s)",
                    [d["code"], d["name"], d["region"], d["priority"], at],
                )
            case "WarehouseUpdated":
                self._update(conn, "warehouses", "code", d, self.WAREHOUSE_COLUMNS, None)
            case "WarehouseDeactivated" | "WarehouseReactivated":
                conn.execute(
                    "UPDATE warehouses SET active = %s WHERE code = %s",
                    [event.event_type == "WarehouseReactivated", d["code"]],
                )

    @staticmethod
    def _update(conn, table: str, key: str, data: dict, columns: tuple[str, ...], at) -> None:
        from psycopg import sql

        changed = [c for c in columns if c in data]
        sets = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in changed]
        values = [data[c] for c in changed]
        if at is not None:
            sets.append(sql.SQL("updated_at = %s"))
            values.append(at)
        if sets:
            conn.execute(
                sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
                    sql.Identifier(table), sql.SQL(", ").join(sets), sql.Identifier(key)
                ),
                [*values, data[key]],
            )


CATALOG = CatalogProjection()
