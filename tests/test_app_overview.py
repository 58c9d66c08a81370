"""The Overview page through AppTest: the KPI cards of a seeded shop, in its currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from app_helpers import PASSWORD, app, seed_shop, sign_in, titles

from core import inventory, tenants
from core.commands import CLI
from core.orders.handlers import place_order


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def metrics(at) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def test_overview_shows_the_shops_figures(db, shop, other_tenant):
    seed_shop(db, other_tenant)  # another shop's orders must not count
    tid = shop.tenant.id  # a UTC shop
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # One order today (12.50) and one yesterday before the same time (8.00), both awaiting payment.
    at_today = max(today, now - timedelta(seconds=60))
    at_yesterday = max(today - timedelta(days=1), now - timedelta(days=1, seconds=60))
    place_order(db, tid, CLI, customer_id=shop.customer, lines=[("RED", 1)], at=at_today)
    place_order(db, tid, CLI, customer_id=shop.customer, lines=[("BLUE", 1)], at=at_yesterday)
    inventory.set_reorder_point(db, tid, CLI, sku="BLUE", warehouse="EAST", reorder_point=100)

    at = sign_in(app(), shop.login("clerk"))
    assert not at.exception
    assert titles(at) == ["Overview"]  # the default page of everyone who sees orders
    assert metrics(at) == {
        "Orders today": ("1", "±0 vs yesterday"),
        "Revenue today": ("$12.50", "+$4.50 vs yesterday"),
        # Seeded: two reserved orders (16.00 and 33.00) and one paid; plus the two above.
        "Pending payments": ("4", ""),
        "Orders to ship": ("1", ""),
        "Low-stock SKUs": ("1", ""),
    }
    help_texts = {m.label: m.help for m in at.metric}
    assert "worth $69.50" in help_texts["Pending payments"]
    low = at.dataframe[0].value
    assert list(low["SKU"]) == ["BLUE"] and list(low["Reorder point"]) == [100]


def test_overview_of_a_quiet_shop_says_what_to_do(db, tenant):
    tenants.add_user(db, tenant.id, "owner", "owner", PASSWORD)
    at = sign_in(app(), f"owner@{tenant.slug}")
    assert not at.exception
    assert metrics(at)["Orders today"] == ("0", "±0 vs yesterday")
    assert "No orders today or yesterday yet" in " ".join(i.value for i in at.info)
