"""The catalog: products (SKU unique per tenant, price in minor units) and warehouses."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from core import eventstore as es
from core.commands import Actor, Context, execute, parse, require
from core.db import Database
from core.errors import NotFound, ValidationError
from core.projections import Projection

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


@dataclass(frozen=True)
class Kind:
    """Products (by SKU) and warehouses (by code) are added, changed and (de)activated alike."""

    name: str
    key: str
    fields: type[BaseModel]
    columns: tuple[str, ...]
    permission: str

    @property
    def table(self) -> str:
        return f"{self.name}s"

    @property
    def label(self) -> str:
        return "SKU" if self.key == "sku" else self.key

    def event(self, verb: str) -> str:
        return f"{self.name.title()}{verb}"

    def get(self, conn, value: Any) -> dict:
        row = conn.execute(
            f"SELECT {', '.join(self.columns)} FROM {self.table} WHERE {self.key} = %s",
            [str(value).strip().upper()],
        ).fetchone()
        if not row:
            raise NotFound(f"no {self.name} with {self.label} {str(value)[:64]}")
        return dict(zip(self.columns, row, strict=True))


PRODUCT = Kind(
    "product", "sku", ProductFields, ("sku", "name", "category", "price", "active"), "catalog.manage"
)
WAREHOUSE = Kind(
    "warehouse",
    "code",
    WarehouseFields,
    ("code", "name", "region", "priority", "active"),
    "warehouses.manage",
)


def _add(db: Database, tenant_id: object, actor: Actor, kind: Kind, key: str | None, fields: dict) -> dict:
    new = parse(kind.fields, fields)
    value = getattr(new, kind.key)

    def handle(ctx: Context) -> dict:
        if ctx.conn.execute(f"SELECT 1 FROM {kind.table} WHERE {kind.key} = %s", [value]).fetchone():
            raise ValidationError(f"a {kind.name} with {kind.label} {value} already exists")
        ctx.record(f"{kind.name}-{value}", kind.name, [(kind.event("Added"), new.model_dump())], 0, CATALOG)
        return new.model_dump()

    return execute(db, tenant_id, actor, kind.permission, key, handle, command=f"add_{kind.name}")


def _update(
    db: Database, tenant_id: object, actor: Actor, kind: Kind, value: Any, key: str | None, changes: dict
) -> dict:
    def handle(ctx: Context) -> dict:
        current = kind.get(ctx.conn, value)
        merged = parse(kind.fields, {**current, **changes, kind.key: current[kind.key]})
        data = {k: v for k, v in merged.model_dump().items() if v != current[k] or k == kind.key}
        if len(data) > 1:
            stream = f"{kind.name}-{current[kind.key]}"
            ctx.record(stream, kind.name, [(kind.event("Updated"), data)], None, CATALOG)
        return merged.model_dump()

    return execute(db, tenant_id, actor, kind.permission, key, handle, command=f"update_{kind.name}")


def _set_active(
    db: Database, tenant_id: object, actor: Actor, kind: Kind, value: Any, active: bool, key: str | None
) -> dict:
    if not isinstance(active, bool):
        raise ValidationError("active must be true or false")

    def handle(ctx: Context) -> dict:
        current = kind.get(ctx.conn, value)
        if current["active"] != active:
            event = kind.event("Reactivated" if active else "Deactivated")
            stream = f"{kind.name}-{current[kind.key]}"
            ctx.record(stream, kind.name, [(event, {kind.key: current[kind.key]})], None, CATALOG)
        return {kind.key: current[kind.key], "active": active}

    return execute(db, tenant_id, actor, kind.permission, key, handle, command=f"set_{kind.name}_active")


def add_product(
    db: Database, tenant_id: object, actor: Actor, *, key: str | None = None, **fields: Any
) -> dict:
    return _add(db, tenant_id, actor, PRODUCT, key, fields)


def update_product(
    db: Database, tenant_id: object, actor: Actor, sku: str, *, key: str | None = None, **changes: Any
) -> dict:
    return _update(db, tenant_id, actor, PRODUCT, sku, key, changes)


def set_product_active(
    db: Database, tenant_id: object, actor: Actor, sku: str, active: bool, *, key: str | None = None
) -> dict:
    return _set_active(db, tenant_id, actor, PRODUCT, sku, active, key)


def get_product(conn, sku: Any) -> dict:
    return PRODUCT.get(conn, sku)


def add_warehouse(
    db: Database, tenant_id: object, actor: Actor, *, key: str | None = None, **fields: Any
) -> dict:
    return _add(db, tenant_id, actor, WAREHOUSE, key, fields)


def update_warehouse(
    db: Database, tenant_id: object, actor: Actor, code: str, *, key: str | None = None, **changes: Any
) -> dict:
    return _update(db, tenant_id, actor, WAREHOUSE, code, key, changes)


def set_warehouse_active(
    db: Database, tenant_id: object, actor: Actor, code: str, active: bool, *, key: str | None = None
) -> dict:
    return _set_active(db, tenant_id, actor, WAREHOUSE, code, active, key)


def get_warehouse(conn, code: Any) -> dict:
    return WAREHOUSE.get(conn, code)


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
            f"SELECT {', '.join(PRODUCT.columns)} FROM products"
            " WHERE (lower(sku) LIKE %s OR lower(name) LIKE %s) AND (%s = '' OR category = %s)"
            " AND (%s OR active) ORDER BY sku LIMIT %s OFFSET %s",
            [like, like, category, category, include_inactive, min(limit, 1000), offset],
        ).fetchall()
    return [dict(zip(PRODUCT.columns, r, strict=True)) for r in rows]


def list_warehouses(db: Database, tenant_id: object, actor: Actor) -> list[dict]:
    require(actor, "stock.view")
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(f"SELECT {', '.join(WAREHOUSE.columns)} FROM warehouses ORDER BY priority, code")
        return [dict(zip(WAREHOUSE.columns, r, strict=True)) for r in rows]


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
