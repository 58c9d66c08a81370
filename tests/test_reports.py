"""The analysts' reports on DuckDB: known answers on a small hand-made shop (in Tokyo time, so local days
differ from UTC days), and the same figures as SQL on PostgreSQL's read models for the demo shops; the
SQL workbench reads only the tenant's own tables and changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import followable

from core import catalog, customers, inventory, tenants
from core.analytics import kpis, reports, store
from core.analytics.kpis import Period
from core.analytics.reports import Filters
from core.commands import CLI, Actor
from core.demo import SHOPS, seed_demo
from core.errors import PermissionDenied
from core.orders.handlers import (
    cancel_order,
    deliver_order,
    pay_order,
    place_order,
    return_items,
    ship_order,
)
from core.orders.model import OutOfStock

TOKYO = "Asia/Tokyo"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def small(db, tmp_path_factory):
    """Six orders with answers worked out by hand. 14:30 UTC on 1 March is 23:30 in Tokyo (1 March);
    15:30 UTC is already 00:30 on 2 March there."""
    t = tenants.create_tenant(db, f"tokyo {uuid.uuid4().hex[:6]}", time_zone=TOKYO, currency="JPY")
    tid = t.id
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main", priority=1)
    catalog.add_warehouse(db, tid, CLI, code="EAST", name="East", priority=2)
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", category="Kitchen", price=1250)
    catalog.add_product(db, tid, CLI, sku="BOOK", name="Book", category="Books", price=2000)
    for wh in ("MAIN", "EAST"):
        inventory.receive(db, tid, CLI, sku="MUG", warehouse=wh, quantity=5, at=utc(2026, 2, 1))
    inventory.receive(db, tid, CLI, sku="BOOK", warehouse="MAIN", quantity=10, at=utc(2026, 2, 1))
    ada = customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")["id"]
    bob = customers.add_customer(db, tid, CLI, name="Bob", email="bob@example.com")["id"]

    def order(who, lines, channel, at):
        return place_order(db, tid, CLI, customer_id=who, lines=lines, channel=channel, at=at)

    o1 = order(ada, [("MUG", 2)], "web", utc(2026, 3, 1, 14, 30))  # Tokyo 1 March
    pay_order(db, tid, CLI, o1["order_id"], at=utc(2026, 3, 1, 15))
    o2 = order(bob, [("BOOK", 1)], "pos", utc(2026, 3, 1, 15, 30))  # Tokyo 2 March
    pay_order(db, tid, CLI, o2["order_id"], at=utc(2026, 3, 1, 16))
    ship_order(db, tid, CLI, o2["order_id"], carrier="DHL", tracking="T2", at=utc(2026, 3, 1, 20))
    deliver_order(db, tid, CLI, o2["order_id"], at=utc(2026, 3, 2, 20))
    return_items(db, tid, CLI, o2["order_id"], items={1: 1}, warehouse="MAIN", at=utc(2026, 3, 3))
    o3 = order(ada, [("MUG", 7)], "web", utc(2026, 3, 2, 1))  # split: 3 from MAIN, 4 from EAST
    pay_order(db, tid, CLI, o3["order_id"], at=utc(2026, 3, 2, 3))
    ship_order(db, tid, CLI, o3["order_id"], carrier="UPS", tracking="T3", at=utc(2026, 3, 2, 9))
    o4 = order(bob, [("BOOK", 2)], "phone", utc(2026, 3, 2, 2))
    cancel_order(db, tid, CLI, o4["order_id"], at=utc(2026, 3, 2, 4))
    o5 = order(bob, [("MUG", 1)], "web", utc(2026, 3, 5, 1))  # reserved, never paid
    with pytest.raises(OutOfStock):
        order(ada, [("MUG", 5)], "web", utc(2026, 3, 5, 2))  # rejected: left out of every report
    data_dir = tmp_path_factory.mktemp("analytics")
    followable(db, tid)
    store.sync(db, tid, data_dir)
    con = store.connect(tid, data_dir)
    yield {"tid": tid, "con": con, "orders": [o1, o2, o3, o4, o5], "ada": ada, "bob": bob}
    con.close()


MARCH_1_2 = Period(date(2026, 3, 1), date(2026, 3, 3))


def test_kpis_have_the_hand_worked_answers(small):
    k = reports.kpis(small["con"], TOKYO, MARCH_1_2)
    # Orders 1-4; revenue 2,500 + (2,000 - 2,000 refunded) + 8,750; paid orders 1, 2, 3.
    assert k == {
        "revenue": 11_250,
        "orders": 4,
        "average_order_value": 3_750,
        "units": 12,
        "cancellation_rate": 0.25,
        "return_rate": 1.0,  # the one delivered order came back
        "payment_failure_rate": None,  # paid by hand: no gateway attempt to fail
    }


def test_local_days_decide_where_an_order_falls(small):
    march_1 = reports.kpis(small["con"], TOKYO, Period(date(2026, 3, 1), date(2026, 3, 2)))
    assert (march_1["orders"], march_1["revenue"]) == (1, 2_500)  # 15:30 UTC on 1 March is 2 March here
    by_day = reports.over_time(small["con"], TOKYO, MARCH_1_2, "day", "channel")
    rows = {
        (r.period.date() if hasattr(r.period, "date") else r.period, r.key): (r.orders, r.revenue)
        for r in by_day.itertuples()
    }
    assert rows == {
        (date(2026, 3, 1), "web"): (1, 2_500),
        (date(2026, 3, 2), "phone"): (1, 0),
        (date(2026, 3, 2), "pos"): (1, 0),
        (date(2026, 3, 2), "web"): (1, 8_750),
    }


def test_previous_period_and_comparison(small):
    assert MARCH_1_2.previous() == Period(date(2026, 2, 27), date(2026, 3, 1))
    march = Period(date(2026, 3, 1), date(2026, 4, 1))
    assert march.previous() == Period(date(2026, 2, 1), date(2026, 3, 1))  # a month against the month before
    now = reports.kpis(small["con"], TOKYO, Period(date(2026, 3, 2), date(2026, 3, 3)))
    before = reports.kpis(small["con"], TOKYO, Period(date(2026, 3, 1), date(2026, 3, 2)))
    change = kpis.compare(now, before)
    assert change["orders"] == pytest.approx(2.0)  # 3 orders against 1
    assert change["revenue"] == pytest.approx((8_750 - 2_500) / 2_500)
    assert change["cancellation_rate"] == pytest.approx(1 / 3)  # points: 33 % against 0 %


def test_presets_are_local_days_ending_today():
    today = date(2026, 5, 20)
    assert kpis.preset("today", today) == Period(today, date(2026, 5, 21))
    assert kpis.preset("7 days", today) == Period(date(2026, 5, 14), date(2026, 5, 21))
    assert kpis.preset("this month", today) == Period(date(2026, 5, 1), date(2026, 5, 21))
    assert kpis.preset("this quarter", today) == Period(date(2026, 4, 1), date(2026, 5, 21))
    assert kpis.preset("custom", today, date(2026, 1, 1), date(2026, 1, 31)).days == 31
    with pytest.raises(reports.ValidationError):
        kpis.preset("custom", today, date(2026, 2, 1), date(2026, 1, 1))
    with pytest.raises(reports.ValidationError):
        kpis.preset("yesterday-ish", today)


def test_line_dimensions_split_item_sales(small):
    con = small["con"]
    by_product = reports.over_time(con, TOKYO, MARCH_1_2, "month", "product")
    assert {r.key: (r.units, r.revenue) for r in by_product.itertuples()} == {
        "MUG": (9, 11_250),
        "BOOK": (1, 2_000),  # item sales before the refund; order 4's books were never paid
    }
    by_category = reports.over_time(con, TOKYO, MARCH_1_2, "month", "category")
    assert {r.key: r.revenue for r in by_category.itertuples()} == {"Kitchen": 11_250, "Books": 2_000}
    by_wh = reports.over_time(con, TOKYO, MARCH_1_2, "month", "warehouse")
    assert {r.key: (r.units, r.revenue) for r in by_wh.itertuples()} == {
        "MAIN": (6, 5 * 1_250 + 2_000),  # 2 + 3 mugs and the book
        "EAST": (4, 4 * 1_250),
    }
    top = reports.top_products(con, TOKYO, MARCH_1_2)
    assert list(top["sku"]) == ["MUG", "BOOK"]


def test_funnel_fulfilment_and_drill_down(small):
    con = small["con"]
    f = reports.funnel(con, TOKYO, MARCH_1_2).set_index("step")
    assert list(f["orders"]) == [4, 3, 2, 1]
    assert f.loc["paid", "conversion"] == pytest.approx(0.75)
    assert f.loc["shipped", "median_hours"] == pytest.approx((4 + 6) / 2)  # 4 h and 6 h from payment
    times = reports.fulfilment_times(con, TOKYO, MARCH_1_2)
    assert sorted(times["hours_to_ship"]) == pytest.approx([4.0, 6.0])
    numbers = [o["number"] for o in small["orders"]]
    behind = reports.orders_behind(con, TOKYO, MARCH_1_2, Filters(channels=("web",)), bucket=date(2026, 3, 2))
    assert list(behind["number"]) == [numbers[2]]
    by_warehouse = reports.orders_behind(con, TOKYO, MARCH_1_2, Filters(warehouses=("EAST",)))
    assert list(behind["number"]) == [numbers[2]] and list(by_warehouse["number"]) == [numbers[2]]
    by_customer = reports.orders_behind(con, TOKYO, MARCH_1_2, Filters(customers=(small["bob"],)))
    assert sorted(by_customer["number"]) == [numbers[1], numbers[3]]


def test_stock_cover_and_cohorts(small):
    cover = reports.stock_cover(small["con"], utc(2026, 3, 10)).set_index(["sku", "warehouse"])
    # MAIN: 5 in, order 3 shipped 3, order 1 holds 2; EAST: 5 in, order 3 shipped 4, order 5 holds 1.
    mug_main, mug_east = cover.loc[("MUG", "MAIN")], cover.loc[("MUG", "EAST")]
    assert (mug_main.on_hand, mug_main.reserved, mug_main.available) == (2, 2, 0) and bool(mug_main.low)
    assert (mug_east.on_hand, mug_east.available) == (1, 0) and bool(mug_east.low)
    assert mug_east.units_per_day == pytest.approx(4 / 30)
    book = cover.loc[("BOOK", "MAIN")]
    assert book.on_hand == 10 and not bool(book.low)  # shipped one, it came back
    c = reports.cohorts(small["con"], TOKYO, Period(date(2026, 3, 1), date(2026, 4, 1)))
    assert [(r.months_after, r.customers, r.retention) for r in c.itertuples()] == [(0, 2, 1.0)]


def test_reports_need_the_reports_permission(small):
    clerk = Actor(role="clerk", name="clerk")
    with pytest.raises(PermissionDenied):
        reports.open_store(clerk, small["tid"])


# The demo shops: every figure again in SQL on PostgreSQL's read models.

END = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(db, tmp_path_factory):
    prefix = f"r{uuid.uuid4().hex[:8]}"
    seed_demo(db, orders=240, seed=5, prefix=prefix, end=END)
    by_slug = {t.slug: t for t in tenants.list_tenants(db)}
    data_dir = tmp_path_factory.mktemp("demo-analytics")
    shops = []
    for s in SHOPS:
        t = by_slug[f"{prefix}-{s.key}"]
        followable(db, t.id)
        store.sync(db, t.id, data_dir)
        shops.append((t, store.connect(t.id, data_dir)))
    yield shops
    for _, con in shops:
        con.close()


WHOLE = Period(date(2025, 1, 1), date(2027, 1, 1))

PG_SELECTED = """
WITH sel AS (
    SELECT *, (placed_at AT TIME ZONE %(tz)s) AS local_at FROM orders
    WHERE status <> 'rejected' AND (placed_at AT TIME ZONE %(tz)s) >= %(start)s
      AND (placed_at AT TIME ZONE %(tz)s) < %(end)s
)
"""
PG_KPIS = (
    PG_SELECTED
    + """
SELECT count(*), coalesce(sum(paid_amount - refunded_amount), 0), count(*) FILTER (WHERE paid_amount > 0),
       (SELECT coalesce(sum(quantity), 0) FROM order_lines JOIN sel ON sel.id = order_lines.order_id),
       count(*) FILTER (WHERE status = 'cancelled'), count(*) FILTER (WHERE delivered_at IS NOT NULL),
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = sel.id
                                      AND l.returned_quantity > 0))
FROM sel
"""
)
PG_ATTEMPTS = """
SELECT a.gateway, count(*), count(*) FILTER (WHERE a.outcome IN ('declined', 'transient'))
FROM payment_attempts a
WHERE a.outcome <> 'started' AND (a.started_at AT TIME ZONE %(tz)s) >= %(start)s
  AND (a.started_at AT TIME ZONE %(tz)s) < %(end)s
GROUP BY 1 ORDER BY 1
"""
PG_BY_CHANNEL = (
    PG_SELECTED
    + """
SELECT date_trunc('month', local_at)::date, channel, count(*), sum(paid_amount - refunded_amount)
FROM sel GROUP BY 1, 2 ORDER BY 1, 2
"""
)
PG_BY_PRODUCT = (
    PG_SELECTED
    + """
SELECT l.sku, sum(l.quantity), sum(l.line_total) FROM order_lines l JOIN sel ON sel.id = l.order_id
WHERE sel.paid_amount > 0 GROUP BY 1 ORDER BY 1
"""
)
PG_BY_CATEGORY = (
    PG_SELECTED
    + """
SELECT p.category, sum(l.line_total) FROM order_lines l JOIN sel ON sel.id = l.order_id
JOIN products p ON p.sku = l.sku WHERE sel.paid_amount > 0 GROUP BY 1 ORDER BY 1
"""
)
PG_BY_WAREHOUSE = (
    PG_SELECTED
    + """
SELECT a.warehouse, sum(a.quantity), sum(a.quantity * l.unit_price)
FROM order_allocations a JOIN sel ON sel.id = a.order_id
JOIN order_lines l ON l.order_id = a.order_id AND l.sku = a.sku
WHERE sel.paid_amount > 0
  -- released rows of an order reserved again elsewhere are not where its goods came from
  AND (a.state <> 'released' OR NOT EXISTS (
      SELECT FROM order_allocations b WHERE b.order_id = a.order_id AND b.state <> 'released'))
GROUP BY 1 ORDER BY 1
"""
)
PG_FUNNEL = PG_SELECTED + "SELECT count(*), count(paid_at), count(shipped_at), count(delivered_at) FROM sel"
PG_STOCK = "SELECT sku, warehouse, on_hand, reserved FROM stock ORDER BY 1, 2"
PG_COHORTS = """
WITH o AS (SELECT customer_id, date_trunc('month', placed_at AT TIME ZONE %(tz)s)::date AS month
           FROM orders WHERE status <> 'rejected'),
f AS (SELECT customer_id, min(month) AS cohort FROM o GROUP BY 1)
SELECT f.cohort,
       (extract(year FROM age(o.month, f.cohort)) * 12 + extract(month FROM age(o.month, f.cohort)))::int,
       count(DISTINCT o.customer_id)
FROM o JOIN f USING (customer_id) GROUP BY 1, 2 ORDER BY 1, 2
"""


def pg(db, tid, sql, tz, period=WHOLE):
    with db.tenant(tid) as conn:
        return conn.execute(sql, {"tz": tz, "start": period.start, "end": period.end}).fetchall()


def day(v) -> date:
    return v.date() if hasattr(v, "date") else v


@pytest.mark.parametrize("period", [WHOLE, Period(date(2026, 10, 1), date(2026, 11, 1))], ids=["all", "oct"])
def test_demo_reports_equal_postgres(db, demo, period):
    for tenant, con in demo:
        tz = tenant.time_zone
        k = reports.kpis(con, tz, period)
        orders, revenue, paid, units, cancelled, delivered, returned = pg(db, tenant.id, PG_KPIS, tz, period)[
            0
        ]
        assert orders > 0, tenant.slug
        assert (k["orders"], k["revenue"], k["units"]) == (orders, revenue, units), tenant.slug
        assert k["average_order_value"] == (round(revenue / paid) if paid else None)
        assert k["cancellation_rate"] == pytest.approx(cancelled / orders)
        assert k["return_rate"] == (pytest.approx(returned / delivered) if delivered else None)

        attempts = pg(db, tenant.id, PG_ATTEMPTS, tz, period)
        failures = reports.payment_failures(con, tz, period)
        assert [(r.gateway, r.attempts, r.failures) for r in failures.itertuples()] == attempts
        total = sum(a[1] for a in attempts)
        assert k["payment_failure_rate"] == (
            pytest.approx(sum(a[2] for a in attempts) / total) if total else None
        )

        ch = reports.over_time(con, tz, period, "month", "channel")
        assert [(day(r.period), r.key, r.orders, r.revenue) for r in ch.itertuples()] == pg(
            db, tenant.id, PG_BY_CHANNEL, tz, period
        )
        prod = reports.over_time(con, tz, period, "month", "product")
        per_sku = prod.groupby("key")[["units", "revenue"]].sum().sort_index()
        assert [(s, r.units, r.revenue) for s, r in per_sku.iterrows()] == pg(
            db, tenant.id, PG_BY_PRODUCT, tz, period
        )
        cat = (
            reports.over_time(con, tz, period, "week", "category")
            .groupby("key")["revenue"]
            .sum()
            .sort_index()
        )
        assert list(cat.items()) == pg(db, tenant.id, PG_BY_CATEGORY, tz, period)
        wh = reports.over_time(con, tz, period, "day", "warehouse").groupby("key")[["units", "revenue"]].sum()
        assert [(w, r.units, r.revenue) for w, r in wh.sort_index().iterrows()] == pg(
            db, tenant.id, PG_BY_WAREHOUSE, tz, period
        )
        f = reports.funnel(con, tz, period)
        assert tuple(f["orders"]) == pg(db, tenant.id, PG_FUNNEL, tz, period)[0]


def test_demo_stock_and_cohorts_equal_postgres(db, demo):
    for tenant, con in demo:
        cover = reports.stock_cover(con, END)
        got = sorted((r.sku, r.warehouse, r.on_hand, r.reserved) for r in cover.itertuples())
        want = [r for r in pg(db, tenant.id, PG_STOCK, tenant.time_zone) if r[2] or r[3]]
        assert [g for g in got if g[2] or g[3]] == want, tenant.slug
        c = reports.cohorts(con, tenant.time_zone, WHOLE)
        assert [(day(r.cohort), r.months_after, r.customers) for r in c.itertuples()] == pg(
            db, tenant.id, PG_COHORTS, tenant.time_zone
        )


# The SQL workbench


def test_the_workbench_reads_and_limits(small):
    con = small["con"]
    rows, more = reports.run_sql(con, "SELECT number, status FROM orders ORDER BY number", limit=3)
    assert len(rows) == 3 and more
    rows, more = reports.run_sql(con, "select count(*) as n from orders;")
    assert rows["n"][0] == 6 and not more  # the rejected order is a row too; its status says so
    assert set(reports.schema(con)["table"]) >= {
        "orders",
        "order_lines",
        "payment_attempts",
        "stock_movements",
    }


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM order_facts",
        "DROP TABLE order_lines",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO order_lines SELECT * FROM order_lines",
        "SET enable_external_access = true",
        "ATTACH 'other.duckdb' AS other",
        "COPY orders TO '/tmp/leak.csv'",
        "SELECT 1; DROP TABLE orders",
        "INSTALL httpfs",
        "PRAGMA enable_profiling",
        "not sql at all",
        "",
    ],
)
def test_the_workbench_refuses_anything_but_one_select(small, sql):
    with pytest.raises(reports.QueryRefused):
        reports.run_sql(small["con"], sql)
    assert reports.run_sql(small["con"], "SELECT count(*) AS n FROM order_lines")[0]["n"][0] == 6


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('../*/manifest.json')",
        "SELECT * FROM glob('/*')",
        "SELECT 'x' AS v WHERE false UNION ALL SELECT content FROM read_text('/etc/hostname')",
    ],
)
def test_the_workbench_reaches_no_file(small, sql):
    with pytest.raises(reports.QueryRefused):
        reports.run_sql(small["con"], sql)


def test_the_workbench_sees_only_its_tenant(db, small, demo):
    other, _ = demo[0]
    theirs = {str(r[0]) for r in pg(db, other.id, "SELECT id FROM orders", "UTC")}
    ours, _ = reports.run_sql(small["con"], "SELECT DISTINCT order_id FROM order_facts", limit=100_000)
    assert theirs and not theirs & set(ours["order_id"])
    assert len(ours) == 6


def test_the_workbench_stops_a_long_query(small):
    slow = "SELECT count(*) FROM range(100000000) a, range(1000) b WHERE a.range * b.range % 7 = 3"
    started = datetime.now()
    with pytest.raises(reports.QueryRefused, match="longer than"):
        reports.run_sql(small["con"], slow, timeout=0.5)
    assert datetime.now() - started < timedelta(seconds=10)


def test_payment_failures_by_gateway_equal_postgres(db, tmp_path):
    """Charges through a real HTTP gateway on loopback: declines and a transient failure per gateway."""
    from fakes import FakeGateway

    from core.payments import service as payments

    main, backup = FakeGateway(), FakeGateway()
    try:
        t = tenants.create_tenant(db, f"gw {uuid.uuid4().hex[:6]}", time_zone="Europe/Paris", currency="EUR")
        tid = t.id
        tenants.change_settings(db, tid, CLI, payment_backoff_seconds=1, circuit_failures=10)
        catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
        catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
        inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=100)
        who = customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")["id"]
        gateways = [
            {"name": n, "kind": "http", "url": g.url, "timeout_seconds": 5}
            for n, g in (("main", main), ("backup", backup))
        ]
        payments.set_gateways(db, tid, CLI, gateways)
        main.plan = ["decline", "ok", "decline", "5xx", "ok", "ok"]
        for _ in range(5):
            o = place_order(db, tid, CLI, customer_id=who, lines=[("MUG", 1)])
            payments.request_payment(db, tid, CLI, o["order_id"])
            payments.process_payments(db, "w", 5.0, only=[tid])
        for _ in range(30):  # the transient failure is retried after its backoff
            payments.process_payments(db, "w", 5.0, only=[tid])
            with db.tenant(tid) as conn:
                if not conn.execute("SELECT count(*) FROM payments WHERE status = 'pending'").fetchone()[0]:
                    break
            import time

            time.sleep(0.5)
        followable(db, tid)
        store.sync(db, tid, tmp_path)
        con = store.connect(tid, tmp_path)
        today = datetime.now(UTC).date()
        period = Period(today - timedelta(days=1), today + timedelta(days=2))
        want = pg(db, tid, PG_ATTEMPTS, t.time_zone, period)
        assert sum(n for _, n, _ in want) == 6 and sum(f for _, _, f in want) == 3, want
        got = reports.payment_failures(con, t.time_zone, period)
        assert [(r.gateway, r.attempts, r.failures) for r in got.itertuples()] == want
        assert reports.kpis(con, t.time_zone, period)["payment_failure_rate"] == pytest.approx(3 / 6)
    finally:
        main.close()
        backup.close()


def test_an_order_reserved_again_counts_at_its_last_warehouse(db, tmp_path):
    """A declined charge releases the stock; the staff's retry reserves again, here elsewhere. The
    warehouse split counts the order once, where it was finally reserved, as PostgreSQL does."""
    from fakes import FakeGateway

    from core.payments import service as payments

    gateway = FakeGateway()
    try:
        t = tenants.create_tenant(db, f"again {uuid.uuid4().hex[:6]}")
        tid = t.id
        catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main", priority=1)
        catalog.add_warehouse(db, tid, CLI, code="EAST", name="East", priority=2)
        catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
        inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=2)
        inventory.receive(db, tid, CLI, sku="MUG", warehouse="EAST", quantity=5)
        who = customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")["id"]
        payments.set_gateways(db, tid, CLI, [{"name": "main", "kind": "http", "url": gateway.url}])
        gateway.plan = ["decline", "ok"]
        first = place_order(db, tid, CLI, customer_id=who, lines=[("MUG", 2)])  # reserved at MAIN
        payments.request_payment(db, tid, CLI, first["order_id"])
        payments.process_payments(db, "w", 5.0, only=[tid])  # declined: released
        place_order(db, tid, CLI, customer_id=who, lines=[("MUG", 2)])  # another order takes MAIN's two
        payments.retry_payment(db, tid, CLI, first["order_id"])  # reserved again, now at EAST
        payments.process_payments(db, "w", 5.0, only=[tid])

        followable(db, tid)
        store.sync(db, tid, tmp_path)
        con = store.connect(tid, tmp_path)
        today = datetime.now(UTC).date()
        period = Period(today - timedelta(days=1), today + timedelta(days=2))
        reservations = con.execute(
            "SELECT warehouse FROM order_allocations WHERE order_id = ? ORDER BY position",
            [first["order_id"]],
        ).fetchall()
        assert reservations == [("MAIN",), ("EAST",)]  # both are in the store...
        by_wh = reports.over_time(con, t.time_zone, period, "day", "warehouse")
        got = [(r.key, r.units, r.revenue) for r in by_wh.itertuples()]
        assert got == [("EAST", 2, 2500)]  # ...and the paid order counts at EAST only
        assert [(w, int(u), int(r)) for w, u, r in pg(db, tid, PG_BY_WAREHOUSE, t.time_zone, period)] == got
        con.close()
    finally:
        gateway.close()
