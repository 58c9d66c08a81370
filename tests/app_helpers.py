"""Shared by the AppTest tests: a seeded shop, its staff, and signing in through the real form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import catalog, customers, inventory, tenants
from core.commands import CLI
from core.orders.handlers import pay_order, place_order

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
PASSWORD = "correct horse battery"
T0 = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


@dataclass
class SeededShop:
    tenant: tenants.Tenant
    customer: str
    orders: list[dict]

    def login(self, username: str) -> str:
        return f"{username}@{self.tenant.slug}"


def seed_shop(db, tenant: tenants.Tenant) -> SeededShop:
    """Staff of every role, two products in two warehouses, a customer and three orders (one paid)."""
    tid = tenant.id
    for role in tenants.ROLES:
        tenants.add_user(db, tid, role, role, PASSWORD, display_name=f"The {role}")
    catalog.add_warehouse(db, tid, CLI, code="EAST", name="East", priority=1)
    catalog.add_warehouse(db, tid, CLI, code="WEST", name="West", priority=2)
    catalog.add_product(db, tid, CLI, sku="RED", name="Red mug", price=1250)
    catalog.add_product(db, tid, CLI, sku="BLUE", name="Blue mug", price=800)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="EAST", quantity=5)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="WEST", quantity=5)
    inventory.receive(db, tid, CLI, sku="BLUE", warehouse="EAST", quantity=10)
    customer = customers.add_customer(db, tid, CLI, name="Ada Lovelace", email="ada@example.com")["id"]
    orders = [
        place_order(db, tid, CLI, customer_id=customer, lines=[("RED", 1)], at=T0),
        place_order(db, tid, CLI, customer_id=customer, lines=[("BLUE", 2)], at=T0, channel="pos"),
        place_order(db, tid, CLI, customer_id=customer, lines=[("RED", 2), ("BLUE", 1)], at=T0),
    ]
    pay_order(db, tid, CLI, orders[0]["order_id"], at=T0)
    return SeededShop(tenant, customer, orders)


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30)


def sign_in(at: AppTest, login: str, password: str = PASSWORD) -> AppTest:
    if not at.text_input:  # not run yet
        at.run()
    at.text_input(key="sign_in_login").input(login)
    at.text_input(key="sign_in_password").input(password)
    return at.button[0].click().run()


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def texts(at: AppTest, kind: str) -> str:
    return " | ".join(str(e.value) for e in getattr(at, kind))
