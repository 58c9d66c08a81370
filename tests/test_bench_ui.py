"""`oms bench ui` on a small tenant: the figures it prints, and that the pages it timed showed that tenant."""

from __future__ import annotations

from core import bench, tenants
from core.commands import CLI
from core.orders.handlers import place_order
from core.orders.queries import list_orders

ORDERS = 2_000


def test_bench_ui_times_the_pages_of_the_filled_tenant(owner_url, db):
    # Three days of orders, so that some are still reserved and some are waiting to ship.
    result = bench.ui(orders=ORDERS, runs=1, customers=200, products=40, days=3, chunk=700, progress=False)

    assert result["benchmark"] == "ui" and result["orders"] == ORDERS and result["cores"] >= 1
    assert set(result["pages"]) == {"overview", "orders", "inventory"}
    for page in result["pages"].values():
        assert set(page) == {"cold_ms", "first_ms", "median_ms"}
        assert all(ms > 0 for ms in page.values())
    assert result["max_first_ms"] == max(p["first_ms"] for p in result["pages"].values())
    rows = result["rows"]
    assert rows["orders"] == ORDERS and rows["customers"] == 200 and rows["products"] == 40
    assert rows["warehouses"] == 3 and rows["stock"] == 40 * 3
    assert rows["order_lines"] >= ORDERS and rows["shipments"] > 0 and rows["stock_movements"] > 0

    # What the timed pages showed is the bench tenant's data, not an empty or another shop's page.
    shown, expected = result["shown"], result["expected"]
    assert expected["newest_order"] == f"#{1000 + ORDERS}"
    assert shown["orders"]["rows"] == 50 and shown["orders"]["first_order"] == expected["newest_order"]
    assert expected["pending_payments"] > 0 and expected["to_ship"] > 0
    cards = shown["overview"]["metrics"]
    assert cards["Pending payments"] == f"{expected['pending_payments']:,}"
    assert cards["Orders to ship"] == f"{expected['to_ship']:,}"
    assert shown["inventory"]["metrics"]["SKUs in stock"] == "40"

    # The filled read models are what the app expects: its next order is numbered after them, and the
    # filled ones list newest first.
    tenant = tenants.resolve_tenant(db, result["tenant"])
    first = list_orders(db, tenant.id, CLI, page_size=3).rows
    assert [r["number"] for r in first] == [1000 + ORDERS, 999 + ORDERS, 998 + ORDERS]
    placed = place_order(db, tenant.id, CLI, customer_id=first[0]["customer_id"], lines=[("SKU-00001", 1)])
    assert placed["number"] == 1001 + ORDERS
