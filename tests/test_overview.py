"""core.orders.queries.overview on known data: every KPI figure of the Overview page, exactly.

The shop is in Paris (UTC+1 in March) and "now" is 2025-03-04 15:00 Paris (14:00 UTC): today runs from
2025-03-03 23:00 UTC, yesterday from 2025-03-02 23:00 UTC up to 2025-03-03 14:00 UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import catalog, customers, inventory, tenants
from core.commands import CLI, Actor
from core.errors import PermissionDenied, ValidationError
from core.orders import handlers as h
from core.orders.model import OutOfStock
from core.orders.queries import overview

NOW = datetime(2025, 3, 4, 14, 0, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def paris(db):
    t = tenants.create_tenant(db, f"paris {uuid.uuid4().hex[:8]}", currency="EUR", time_zone="Europe/Paris")
    tid = t.id
    catalog.add_warehouse(db, tid, CLI, code="EAST", name="East", priority=1)
    catalog.add_warehouse(db, tid, CLI, code="WEST", name="West", priority=2)
    for sku, price in (("RED", 1250), ("BLUE", 800), ("GREEN", 300), ("YELLOW", 500)):
        catalog.add_product(db, tid, CLI, sku=sku, name=f"{sku.title()} mug", price=price)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="EAST", quantity=5)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="WEST", quantity=5)
    inventory.receive(db, tid, CLI, sku="BLUE", warehouse="EAST", quantity=20)
    buyer = customers.add_customer(db, tid, CLI, name="Ada Lovelace")["id"]

    def place(at, *lines):
        return h.place_order(db, tid, CLI, customer_id=buyer, lines=list(lines), at=at)

    later = timedelta(minutes=5)
    # Today in Paris. a: 00:30 Paris, which is still yesterday in UTC.
    place(utc(3, 23, 30), ("RED", 1))  # a: reserved, 12.50
    b = place(utc(4, 9), ("BLUE", 2))  # b: paid, 16.00
    h.pay_order(db, tid, CLI, b["order_id"], at=utc(4, 9) + later)
    c = place(utc(4, 10), ("BLUE", 3))  # c: paid then cancelled: an order, but no revenue
    h.pay_order(db, tid, CLI, c["order_id"], at=utc(4, 10) + later)
    h.cancel_order(db, tid, CLI, c["order_id"], at=utc(4, 10) + 2 * later)
    with pytest.raises(OutOfStock):
        place(utc(4, 11), ("RED", 100))  # d: rejected, not counted
    k = place(utc(4, 12), ("RED", 6))  # k: EAST 4 + WEST 2, paid, EAST shipped: partially shipped, 75.00
    h.pay_order(db, tid, CLI, k["order_id"], at=utc(4, 12) + later)
    h.ship_order(db, tid, CLI, k["order_id"], carrier="UPS", tracking="1Z", warehouse="EAST", at=utc(4, 13))
    place(utc(4, 14, 30), ("BLUE", 1))  # e: after now: not today's yet, but a pending payment
    # Yesterday in Paris.
    f = place(utc(3, 8), ("BLUE", 2))  # f: delivered, one of two returned: 16.00 less 8.00 refunded
    h.pay_order(db, tid, CLI, f["order_id"], at=utc(3, 8) + later)
    h.ship_order(db, tid, CLI, f["order_id"], carrier="UPS", tracking="2Z", at=utc(3, 9))
    h.deliver_order(db, tid, CLI, f["order_id"], at=utc(3, 10))
    h.return_items(db, tid, CLI, f["order_id"], items={1: 1}, warehouse="EAST", at=utc(3, 11))
    place(utc(3, 13, 59), ("BLUE", 2))  # g: 14:59 Paris, before the same time yesterday: reserved, 16.00
    hh = place(utc(3, 14, 30), ("BLUE", 1))  # h: 15:30 Paris yesterday, after the same time: paid
    h.pay_order(db, tid, CLI, hh["order_id"], at=utc(3, 14, 35))
    place(utc(2, 22, 30), ("BLUE", 1))  # i: 23:30 Paris the day before yesterday: reserved
    # Stock now: RED EAST 1 on hand, 1 reserved (available 0, reorder point 0: low); RED WEST 3 available;
    # BLUE EAST 19 on hand, 7 reserved: available 12, at its reorder point of 12: low.
    inventory.set_reorder_point(db, tid, CLI, sku="BLUE", warehouse="EAST", reorder_point=12)
    inventory.set_reorder_point(db, tid, CLI, sku="RED", warehouse="WEST", reorder_point=2)
    # GREEN has no stock and a reorder point (low), but is no longer sold: not counted.
    inventory.set_reorder_point(db, tid, CLI, sku="GREEN", warehouse="EAST", reorder_point=5)
    catalog.set_product_active(db, tid, CLI, "GREEN", False)
    return t


def test_overview_figures_on_known_data(db, paris):
    kpi = overview(db, paris.id, CLI, NOW)
    assert kpi["currency"] == "EUR" and kpi["time_zone"] == "Europe/Paris"
    assert kpi["today_start"] == utc(3, 23)
    assert kpi["yesterday_start"] == utc(2, 23)
    assert kpi["yesterday_now"] == utc(3, 14)
    assert (kpi["orders_today"], kpi["revenue_today"]) == (4, 1250 + 1600 + 7500)  # a, b, c, k
    assert (kpi["orders_yesterday"], kpi["revenue_yesterday"]) == (2, 1600 - 800 + 1600)  # f, g
    assert (kpi["pending_payments"], kpi["pending_amount"]) == (4, 1250 + 800 + 1600 + 800)  # a, e, g, i
    assert kpi["to_ship"] == 3  # b, k (partially shipped), h
    assert kpi["low_stock_skus"] == 2
    assert [(r["sku"], r["warehouse"], r["available"], r["reorder_point"]) for r in kpi["low_stock"]] == [
        ("BLUE", "EAST", 12, 12),
        ("RED", "EAST", 0, 0),
    ]


def test_overview_moves_with_now_and_the_tenants_day(db, paris):
    # At 23:59 UTC on the 3rd it is 00:59 on the 4th in Paris: only a is today's, and yesterday up to
    # the same time (00:00 to 00:59 Paris on the 3rd) holds nothing (i was placed at 23:30 on the 2nd).
    kpi = overview(db, paris.id, CLI, utc(3, 23, 59))
    assert (kpi["orders_today"], kpi["revenue_today"]) == (1, 1250)
    assert (kpi["orders_yesterday"], kpi["revenue_yesterday"]) == (0, 0)
    # A day later, today has nothing yet and yesterday (the 4th) up to the same time holds a, b, c, k.
    kpi = overview(db, paris.id, CLI, NOW + timedelta(days=1))
    assert (kpi["orders_today"], kpi["orders_yesterday"], kpi["revenue_yesterday"]) == (0, 4, 10350)


def test_overview_is_checked_and_takes_only_aware_times(db, paris):
    with pytest.raises(PermissionDenied, match="analyst may not view orders"):
        overview(db, paris.id, Actor("ana", "analyst"), NOW)
    with pytest.raises(ValidationError, match="time zone"):
        overview(db, paris.id, CLI, datetime(2025, 3, 4, 14))


def test_an_empty_shop_has_zeros(db, tenant):
    kpi = overview(db, tenant.id, CLI, NOW)
    assert [kpi[k] for k in ("orders_today", "revenue_today", "pending_payments", "to_ship")] == [0, 0, 0, 0]
    assert kpi["low_stock_skus"] == 0 and kpi["low_stock"] == []
