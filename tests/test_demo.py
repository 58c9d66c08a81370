"""The demo generator on the test database: a small history with every kind of outcome, consistent stock,
several months of business time, and the same seed giving the same shops and creating nothing when rerun."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from core import tenants
from core.catalog import list_products, list_warehouses
from core.commands import CLI
from core.demo import SHOPS, _ShopRun, seed_demo

END = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
ORDERS, SEED = 150, 11


@pytest.fixture(scope="module")
def demo(db):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    result = seed_demo(db, orders=ORDERS, seed=SEED, prefix=prefix, end=END)
    by_slug = {t.slug: t for t in tenants.list_tenants(db)}
    return prefix, result, [by_slug[f"{prefix}-{s.key}"] for s in SHOPS]


def tenant_ids(shops) -> list[uuid.UUID]:
    return [t.id for t in shops]


def count_events(owner, shops) -> int:
    return owner.execute(
        "SELECT count(*) FROM events WHERE tenant_id = ANY(%s)", [tenant_ids(shops)]
    ).fetchone()[0]


def order_rows(owner, tenant) -> list[tuple]:
    return owner.execute(
        "SELECT number, status, channel, total, placed_at FROM orders WHERE tenant_id = %s ORDER BY number",
        [tenant.id],
    ).fetchall()


def test_three_shops_with_a_user_per_role(db, demo):
    prefix, result, shops = demo
    assert [s["slug"] for s in result["created"]] == [
        f"{prefix}-electronics",
        f"{prefix}-fashion",
        f"{prefix}-books",
    ]
    assert [(t.currency, t.time_zone) for t in shops] == [
        ("USD", "America/New_York"),
        ("EUR", "Europe/Paris"),
        ("GBP", "Europe/London"),
    ]
    for t, created in zip(shops, result["created"], strict=True):
        users = tenants.list_users(db, t.id)
        assert sorted(u.role for u in users) == sorted(tenants.ROLES)
        logins = {u["username"]: u["password"] for u in created["users"]}
        assert set(logins) == {u.username for u in users}
        assert all(len(p) >= 12 for p in logins.values())
        assert len(list_warehouses(db, t.id, CLI)) == 3
        products = list_products(db, t.id, CLI)
        assert 20 <= len(products) <= 40
        assert len({p["category"] for p in products}) >= 4
        assert 50 <= created["customers"] <= 151
    assert sum(s["orders"] for s in result["created"]) == ORDERS


def test_the_history_has_every_outcome(owner, demo):
    _, result, shops = demo
    rows = owner.execute(
        "SELECT status, count(*) FROM orders WHERE tenant_id = ANY(%s) GROUP BY status", [tenant_ids(shops)]
    ).fetchall()
    statuses = dict(rows)
    assert sum(statuses.values()) == ORDERS
    for status in ("delivered", "cancelled", "expired", "rejected"):
        assert statuses.get(status, 0) > 0, statuses
    assert statuses.get("refunded", 0) + statuses.get("partially_refunded", 0) > 0, statuses
    assert statuses["delivered"] > ORDERS / 2
    # The generator's own bookkeeping agrees with the read model.
    reported = {}
    for shop in result["created"]:
        for status, n in shop["statuses"].items():
            reported[status] = reported.get(status, 0) + n
    assert reported == statuses
    channels = {
        r[0]
        for r in owner.execute(
            "SELECT DISTINCT channel FROM orders WHERE tenant_id = ANY(%s)", [tenant_ids(shops)]
        )
    }
    assert {"web", "pos", "marketplace"} <= channels


def test_stock_never_negative_nor_over_reserved(owner, demo):
    _, _, shops = demo
    rows = owner.execute(
        "SELECT count(*), count(*) FILTER (WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand)"
        " FROM stock WHERE tenant_id = ANY(%s)",
        [tenant_ids(shops)],
    ).fetchone()
    assert rows[0] > 0 and rows[1] == 0
    # What is still reserved is exactly what open (reserved, paid, partly shipped) orders hold.
    mismatch = owner.execute(
        "SELECT s.tenant_id, s.sku, s.warehouse, s.reserved, coalesce(a.held, 0) FROM stock s"
        " LEFT JOIN (SELECT tenant_id, sku, warehouse, sum(quantity) AS held FROM order_allocations"
        "            WHERE state = 'reserved' GROUP BY 1, 2, 3) a USING (tenant_id, sku, warehouse)"
        " WHERE s.tenant_id = ANY(%s) AND s.reserved <> coalesce(a.held, 0)",
        [tenant_ids(shops)],
    ).fetchall()
    assert mismatch == []


def test_orders_span_months_of_business_time(owner, demo):
    _, _, shops = demo
    first, last, months = owner.execute(
        "SELECT min(placed_at), max(placed_at), count(DISTINCT date_trunc('month', placed_at))"
        " FROM orders WHERE tenant_id = ANY(%s)",
        [tenant_ids(shops)],
    ).fetchone()
    assert months >= 5
    assert (last - first).days >= 150
    assert last <= END
    # Business time, not wall-clock time: the order events carry the time they happened.
    stamped = owner.execute(
        "SELECT count(*) FROM events WHERE tenant_id = ANY(%s) AND event_type = 'OrderPlaced'"
        " AND (data->>'at')::timestamptz < recorded_at - interval '30 days'",
        [tenant_ids(shops)],
    ).fetchone()[0]
    assert stamped > ORDERS / 2


def test_rerunning_with_the_same_seed_creates_nothing(db, owner, demo):
    prefix, _, shops = demo
    before = count_events(owner, shops)
    again = seed_demo(db, orders=ORDERS, seed=SEED, prefix=prefix, end=END)
    assert again["created"] == [] and again["existing"] == [t.slug for t in shops]
    assert count_events(owner, shops) == before


def test_replaying_a_shops_history_writes_nothing(db, owner, demo):
    # Every command carries a key derived from the seed and the generator decides only from its random
    # stream and the commands' results, so playing a shop again on its tenant replays every command.
    _, result, shops = demo
    before, rows_before = count_events(owner, shops), order_rows(owner, shops[2])
    replay = _ShopRun(
        db, shops[2], SHOPS[2], orders=_orders_of(demo, 2), seed=SEED, end=END, progress=None
    ).run()
    assert replay["users"] == []  # they exist already
    assert count_events(owner, shops) == before
    assert order_rows(owner, shops[2]) == rows_before
    assert replay["statuses"] == result["created"][2]["statuses"]


def _orders_of(demo, i: int) -> int:
    return demo[1]["created"][i]["orders"]


def test_the_same_seed_gives_the_same_history(db, owner, demo):
    _, result, shops = demo
    prefix = f"u{uuid.uuid4().hex[:8]}"
    twin = seed_demo(db, orders=ORDERS, seed=SEED, prefix=prefix, end=END)
    assert [s["statuses"] for s in twin["created"]] == [s["statuses"] for s in result["created"]]
    by_slug = {t.slug: t for t in tenants.list_tenants(db)}
    for original, shop in zip(shops, SHOPS, strict=True):
        assert order_rows(owner, by_slug[f"{prefix}-{shop.key}"]) == order_rows(owner, original)


def test_bad_arguments_are_refused(db):
    from core.errors import ValidationError

    with pytest.raises(ValidationError, match="--orders"):
        seed_demo(db, orders=0, prefix="never")
    with pytest.raises(ValidationError, match="prefix"):
        seed_demo(db, orders=10, prefix="Not OK")
