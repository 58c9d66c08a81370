"""Which pages a signed-in person gets, from core.commands.PERMISSIONS (what core checks anyway)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.auth import Session
from core.commands import PERMISSIONS
from core.tenants import PLATFORM_ADMIN


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    url_path: str
    permission: str | None = None  # a core permission the role needs; None = see `roles`
    roles: frozenset[str] = frozenset()


PAGES = (
    PageSpec("pages/overview.py", "Overview", ":material/dashboard:", "overview", "orders.view"),
    PageSpec("pages/orders.py", "Orders", ":material/receipt_long:", "orders", "orders.view"),
    PageSpec("pages/new_order.py", "New order", ":material/add_shopping_cart:", "new-order", "orders.place"),
    PageSpec("pages/inventory.py", "Inventory", ":material/inventory_2:", "inventory", "stock.view"),
    PageSpec("pages/products.py", "Products", ":material/category:", "products", "catalog.view"),
    PageSpec("pages/customers.py", "Customers", ":material/groups:", "customers", "customers.view"),
    PageSpec("pages/payments.py", "Payments", ":material/payments:", "payments", "payments.view"),
    PageSpec(
        "pages/notifications.py",
        "Notifications",
        ":material/notifications:",
        "notifications",
        "notifications.view",
    ),
    PageSpec("pages/reports.py", "Reports", ":material/monitoring:", "reports", "reports.view"),
    PageSpec("pages/workbench.py", "SQL workbench", ":material/terminal:", "workbench", "reports.view"),
    PageSpec(
        "pages/alerts.py", "Summaries and alerts", ":material/notifications_active:", "alerts", "reports.view"
    ),
    PageSpec("pages/audit.py", "Audit trail", ":material/policy:", "audit", "audit.export"),
    PageSpec(
        "pages/tenants.py", "Tenants", ":material/storefront:", "tenants", roles=frozenset({PLATFORM_ADMIN})
    ),
    PageSpec("pages/settings.py", "Settings", ":material/settings:", "settings", "settings.manage"),
    PageSpec(
        "pages/system.py",
        "System",
        ":material/monitor_heart:",
        "system",
        roles=frozenset({"owner", "manager"}),
    ),
    PageSpec(
        "pages/account.py",
        "Account",
        ":material/person:",
        "account",
        roles=frozenset({"owner", "manager", "clerk", "analyst", PLATFORM_ADMIN}),
    ),
)


def allowed(spec: PageSpec, role: str) -> bool:
    if spec.permission is not None:
        return role in PERMISSIONS.get(spec.permission, frozenset())
    return role in spec.roles


def page_specs(session: Session) -> list[PageSpec]:
    return [p for p in PAGES if allowed(p, session.role)]


def pages_for(session: Session) -> list[st.Page]:
    """The st.Page list for st.navigation; the default page is the first of HOME the person may see."""
    specs = page_specs(session)
    home = next((h for h in HOME if any(p.url_path == h for p in specs)), specs[0].url_path)
    return [
        st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=p.url_path == home)
        for p in specs
    ]


# Where a sign-in lands: Overview for those who see orders, Tenants for a platform admin, else Account.
HOME = ("overview", "reports", "tenants", "account")
