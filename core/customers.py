"""Customers: who orders, how to reach them, and on which channels they want to hear from us."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, field_validator

from core import eventstore as es
from core.catalog import text_field
from core.commands import Actor, Context, business_time, derived_id, execute, parse, require
from core.db import Database
from core.errors import NotFound, ValidationError
from core.projections import Projection

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24}$")
PHONE = re.compile(r"^\+?[0-9 ()-]{6,24}$")
COLUMNS = ("id", "name", "email", "phone", "notify_email", "notify_sms", "notify_push", "active")


class CustomerFields(BaseModel):
    name: str
    email: str = ""
    phone: str = ""
    notify_email: bool = True
    notify_sms: bool = False
    notify_push: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return text_field(v, "name")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = text_field(v, "email", 254, required=False)
        if v and not EMAIL.fullmatch(v):
            raise ValueError(f"'{v[:60]}' is not an email address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        v = text_field(v, "phone", 40, required=False)
        if v and not PHONE.fullmatch(v):
            raise ValueError(f"'{v[:30]}' is not a phone number")
        return v


def add_customer(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    key: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> dict:
    c = parse(CustomerFields, fields)
    when = business_time(at)

    def handle(ctx: Context) -> dict:
        cid = derived_id(ctx.tenant_id, ctx.key, "customer")
        data = {"customer_id": str(cid), **c.model_dump(), "at": when.isoformat()}
        ctx.record(f"customer-{cid}", "customer", [("CustomerAdded", data)], 0, CUSTOMERS)
        return {"id": str(cid), **c.model_dump(), "active": True}

    return execute(db, tenant_id, actor, "customers.manage", key, handle)


def update_customer(
    db: Database,
    tenant_id: object,
    actor: Actor,
    customer_id: object,
    *,
    key: str | None = None,
    **changes: Any,
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_customer(ctx.conn, customer_id)
        merged = parse(CustomerFields, {**{k: current[k] for k in CustomerFields.model_fields}, **changes})
        data = {k: v for k, v in merged.model_dump().items() if v != current[k]}
        if data:
            ctx.record(
                f"customer-{current['id']}",
                "customer",
                [("CustomerUpdated", {"customer_id": str(current["id"]), **data})],
                None,
                CUSTOMERS,
            )
        return {**current, **merged.model_dump(), "id": str(current["id"])}

    return execute(db, tenant_id, actor, "customers.manage", key, handle)


def set_customer_active(
    db: Database,
    tenant_id: object,
    actor: Actor,
    customer_id: object,
    active: bool,
    *,
    key: str | None = None,
) -> dict:
    def handle(ctx: Context) -> dict:
        current = get_customer(ctx.conn, customer_id)
        if current["active"] != active:
            event = "CustomerReactivated" if active else "CustomerDeactivated"
            ctx.record(
                f"customer-{current['id']}",
                "customer",
                [(event, {"customer_id": str(current["id"])})],
                None,
                CUSTOMERS,
            )
        return {"id": str(current["id"]), "active": active}

    return execute(db, tenant_id, actor, "customers.manage", key, handle)


def parse_id(value: object, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ValidationError(f"'{str(value)[:60]}' is not a valid {what} id") from None


def get_customer(conn, customer_id: object) -> dict:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM customers WHERE id = %s", [parse_id(customer_id, "customer")]
    ).fetchone()
    if not row:
        raise NotFound(f"no customer {str(customer_id)[:60]}")
    return dict(zip(COLUMNS, row, strict=True))


def list_customers(
    db: Database, tenant_id: object, actor: Actor, *, search: str = "", limit: int = 200, offset: int = 0
) -> list[dict]:
    require(actor, "customers.view")
    like = f"%{search.strip().lower()}%"
    with db.tenant(tenant_id) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM customers"
            " WHERE lower(name) LIKE %s OR lower(email) LIKE %s OR phone LIKE %s"
            " ORDER BY lower(name), id LIMIT %s OFFSET %s",
            [like, like, like, min(limit, 1000), offset],
        ).fetchall()
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


class CustomersProjection(Projection):
    name = "customers"
    tables = ("customers",)
    kind = "inline"
    FIELDS = ("name", "email", "phone", "notify_email", "notify_sms", "notify_push")

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d, at = event.data, event.recorded_at
        match event.event_type:
            case "CustomerAdded":
                conn.execute(
                    "INSERT INTO customers (tenant_id, id, name, email, phone, notify_email, notify_sms,"
                    " notify_push, created_at, updated_at)"
                    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [d["customer_id"], *(d[f] for f in self.FIELDS), d.get("at") or at, d.get("at") or at],
                )
            case "CustomerUpdated":
                changed = [f for f in self.FIELDS if f in d]
                sets = ", ".join(f"{f} = %s" for f in changed)
                conn.execute(
                    f"UPDATE customers SET {sets}, updated_at = %s WHERE id = %s",
                    [*(d[f] for f in changed), at, d["customer_id"]],
                )
            case "CustomerDeactivated" | "CustomerReactivated":
                conn.execute(
                    "UPDATE customers SET active = %s, updated_at = %s WHERE id = %s",
                    [event.event_type == "CustomerReactivated", at, d["customer_id"]],
                )


CUSTOMERS = CustomersProjection()
