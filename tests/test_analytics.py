"""The per-tenant DuckDB analytic store: synced from the event log without skipping a late commit,
equal to PostgreSQL's read model, isolated per tenant, locked down, and readable by another process
while the writer swaps in new segments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

import duckdb
import pytest
from conftest import followable

from core import catalog, customers, inventory
from core import eventstore as es
from core.analytics import store
from core.analytics.store import connect, revenue_by_day, sync
from core.commands import CLI
from core.orders.handlers import cancel_order, pay_order, place_order
from core.workers import heartbeats

PG_REVENUE = (
    "SELECT (placed_at AT TIME ZONE 'UTC')::date, channel, count(*)::int,"
    " sum(paid_amount - refunded_amount)::bigint FROM orders WHERE status <> 'rejected'"
    " GROUP BY 1, 2 ORDER BY 1, 2"
)
PG_STATUS = "SELECT status, count(*)::int FROM orders GROUP BY 1 ORDER BY 1"
DUCK_STATUS = "SELECT status, count(*)::int FROM orders GROUP BY 1 ORDER BY 1"


def setup_shop(db, tid) -> str:
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
    catalog.add_product(db, tid, CLI, sku="CUP", name="Cup", price=700)
    inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=10_000)
    inventory.receive(db, tid, CLI, sku="CUP", warehouse="MAIN", quantity=10_000)
    return customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")["id"]


def some_orders(db, tid, customer, n: int = 6, start: int = 0) -> list[str]:
    ids = []
    channels = ("web", "pos", "phone")
    for i in range(start, start + n):
        at = datetime(2026, 3, 1 + i % 3, 10 + i % 5, tzinfo=UTC)
        o = place_order(
            db,
            tid,
            CLI,
            customer_id=customer,
            lines=[("MUG", 1 + i % 3), ("CUP", 2)],
            channel=channels[i % 3],
            shipping_fee=100 * (i % 2),
            at=at,
        )
        if i % 3 == 0:
            pay_order(db, tid, CLI, o["order_id"], at=at)
        elif i % 3 == 1:
            cancel_order(db, tid, CLI, o["order_id"], at=at)
        ids.append(o["order_id"])
    return ids


def pg_figures(db, tid) -> tuple[list, list]:
    with db.tenant(tid) as conn:
        return conn.execute(PG_REVENUE).fetchall(), conn.execute(PG_STATUS).fetchall()


def duck_figures(con) -> tuple[list, list]:
    df = revenue_by_day(con)
    revenue = [(r.day.date(), r.channel, int(r.orders), int(r.revenue)) for r in df.itertuples()]
    return revenue, con.execute(DUCK_STATUS).fetchall()


def test_the_store_equals_the_read_model_and_syncs_incrementally(db, tenant, tmp_path, monkeypatch):
    customer = setup_shop(db, tenant.id)
    some_orders(db, tenant.id, customer)
    followable(db, tenant.id)
    consumed = sync(db, tenant.id, tmp_path)
    with db.tenant(tenant.id) as conn:
        assert consumed == conn.execute("SELECT count(*) FROM events").fetchone()[0]
    con = connect(tenant.id, tmp_path)
    assert duck_figures(con) == pg_figures(db, tenant.id)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 6
    window = revenue_by_day(con, since=date(2026, 3, 2), until=date(2026, 3, 3))
    expected = [r for r in pg_figures(db, tenant.id)[0] if r[0] == date(2026, 3, 2)]
    assert [(r.day.date(), r.channel, r.orders, r.revenue) for r in window.itertuples()] == expected != []
    con.close()

    assert sync(db, tenant.id, tmp_path) == 0  # nothing new

    # New orders: only they are consumed, in small batches that also get compacted and the old
    # segments deleted (grace period 0 here).
    monkeypatch.setattr(store, "COMPACT_AFTER", 2)
    monkeypatch.setattr(store, "GRACE_SECONDS", 0.0)
    with db.tenant(tenant.id) as conn:
        before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    some_orders(db, tenant.id, customer, n=5, start=6)
    followable(db, tenant.id)
    with db.tenant(tenant.id) as conn:
        after = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert sync(db, tenant.id, tmp_path, batch=3) == after - before
    sync(db, tenant.id, tmp_path)  # deletes what the last compaction retired
    con = connect(tenant.id, tmp_path)
    assert duck_figures(con) == pg_figures(db, tenant.id)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 11
    # line totals and subtotals agree, and the lines are the read model's
    lines, subtotal = con.execute(
        "SELECT (SELECT sum(line_total) FROM order_lines), (SELECT sum(subtotal) FROM orders)"
    ).fetchone()
    assert lines == subtotal
    with db.tenant(tenant.id) as conn:
        assert conn.execute("SELECT sum(line_total) FROM order_lines").fetchone()[0] == lines
        on_hand = conn.execute("SELECT sum(on_hand), sum(reserved) FROM stock").fetchone()
    assert con.execute(
        "SELECT sum(on_hand_change), sum(reserved_change) FROM stock_movements"
    ).fetchone() == (on_hand)
    con.close()
    manifest = json.loads((store.tenant_dir(tenant.id, tmp_path) / "manifest.json").read_text())
    on_disk = {p.name for p in store.tenant_dir(tenant.id, tmp_path).glob("*.parquet")}
    listed = {f for files in manifest["segments"].values() for f in files}
    assert on_disk == listed | {r["file"] for r in manifest["retired"]}
    assert all(len(files) <= 2 for files in manifest["segments"].values())
    assert manifest["events"] == after


def test_a_late_committing_event_is_not_skipped(db, tenant, tmp_path):
    customer = setup_shop(db, tenant.id)
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path)
    late_id = str(uuid.uuid4())
    placed = {
        "order_id": late_id,
        "number": 999_999,
        "customer_id": str(customer),
        "customer_name": "Ada",
        "channel": "web",
        "currency": "EUR",
        "lines": [],
        "subtotal": 0,
        "tax": 0,
        "shipping_fee": 0,
        "total": 0,
        "status": "placed",
        "at": datetime.now(UTC).isoformat(),
    }
    with db.tenant(tenant.id) as held:  # takes its position (and txid) first, commits last
        late = es.append(
            held,
            [
                es.StreamAppend(
                    f"order-{late_id}", "order", [es.NewEvent(event_type="OrderPlaced", data=placed)]
                )
            ],
            es.Metadata("test"),
        )
        other = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
        sync(db, tenant.id, tmp_path)  # while the late one is open: it must not move past it
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path)
    con = connect(tenant.id, tmp_path)
    seen = {r[0]: r[1] for r in con.execute("SELECT order_id, position FROM order_facts").fetchall()}
    assert late_id in seen and other["order_id"] in seen
    assert seen[late_id] == late.events[0].position < seen[other["order_id"]]
    assert con.execute("SELECT count(*) FROM order_facts").fetchone()[0] == len(seen) + 1  # + OrderReserved


def test_a_tenant_sees_only_its_own_data_and_cannot_reach_files(db, tenant, other_tenant, tmp_path):
    for t in (tenant, other_tenant):
        customer = setup_shop(db, t.id)
        some_orders(db, t.id, customer, n=3 if t is tenant else 4)
        followable(db, t.id)
        sync(db, t.id, tmp_path)
    other_ids = {
        r[0] for r in connect(other_tenant.id, tmp_path).execute("SELECT order_id FROM orders").fetchall()
    }
    con = connect(tenant.id, tmp_path)
    mine = {r[0] for r in con.execute("SELECT order_id FROM orders").fetchall()}
    assert len(mine) == 3 and len(other_ids) == 4 and not mine & other_ids
    with db.tenant(tenant.id) as conn:
        assert mine == {str(r[0]) for r in conn.execute("SELECT id FROM orders").fetchall()}

    other_dir = store.tenant_dir(other_tenant.id, tmp_path)
    other_file = next(other_dir.glob("*order_facts.parquet"))
    for query in (
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_parquet('{other_file}')",
        f"SELECT * FROM '{other_file}'",
        f"SELECT * FROM glob('{other_dir}/*')",
        f"COPY orders TO '{tmp_path / 'out.csv'}'",
        f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "INSTALL httpfs",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(query).fetchall()
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 3  # still works after all that


READER = """
import json, sys, time
from core.analytics.store import connect
tid, data_dir, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
reads, bad, last, counts = 0, [], 0, set()
while time.monotonic() < end:
    con = connect(tid, data_dir)
    n, lines, sub, facts = con.execute(
        "SELECT (SELECT count(*) FROM orders), (SELECT coalesce(sum(line_total), 0) FROM order_lines),"
        " (SELECT coalesce(sum(subtotal), 0) FROM orders), (SELECT count(*) FROM order_facts)"
    ).fetchone()
    con.close()
    if lines != sub or n < last or facts != 2 * n:
        bad.append([n, lines, sub, facts])
    last = n
    counts.add(n)
    reads += 1
print(json.dumps({"reads": reads, "bad": bad, "distinct": len(counts), "last": last}))
"""


def test_a_reader_process_sees_consistent_states_while_the_writer_syncs(db, tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_AFTER", 4)  # compaction swaps happen under the reader too
    customer = setup_shop(db, tenant.id)
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tenant.id), str(tmp_path), "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    placed = syncs = 0
    deadline = time.monotonic() + 6.5
    while reader.poll() is None and time.monotonic() < deadline:
        for _ in range(3):
            place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1 + placed % 4), ("CUP", 1)])
            placed += 1
        followable(db, tenant.id)
        sync(db, tenant.id, tmp_path)
        syncs += 1
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bad"] == []
    assert result["reads"] >= 10 and result["distinct"] >= 3, result
    assert syncs >= 5
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path)
    assert connect(tenant.id, tmp_path).execute("SELECT count(*) FROM orders").fetchone()[0] == placed


def test_products_customers_and_allocations_equal_the_read_models(db, tenant, tmp_path):
    customer = setup_shop(db, tenant.id)
    catalog.add_warehouse(db, tenant.id, CLI, code="EAST", name="East", priority=200)
    catalog.add_product(db, tenant.id, CLI, sku="PLATE", name="Plate", category="kitchen", price=900)
    inventory.receive(db, tenant.id, CLI, sku="PLATE", warehouse="MAIN", quantity=3)
    inventory.receive(db, tenant.id, CLI, sku="PLATE", warehouse="EAST", quantity=3)
    some_orders(db, tenant.id, customer)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("PLATE", 5), ("MUG", 1)])  # split
    # updates that carry only the changed fields, and (de)activations
    catalog.update_product(db, tenant.id, CLI, "MUG", price=1300)
    catalog.update_product(db, tenant.id, CLI, "CUP", name="Tea cup", category="kitchen")
    catalog.update_product(db, tenant.id, CLI, "MUG", name="Big mug")
    catalog.set_product_active(db, tenant.id, CLI, "CUP", False)
    catalog.set_product_active(db, tenant.id, CLI, "PLATE", False)
    catalog.set_product_active(db, tenant.id, CLI, "PLATE", True)
    bob = customers.add_customer(db, tenant.id, CLI, name="Bob", email="bob@example.com")["id"]
    cy = customers.add_customer(db, tenant.id, CLI, name="Cy", at=datetime(2026, 1, 5, 9, tzinfo=UTC))["id"]
    customers.update_customer(db, tenant.id, CLI, bob, email="robert@example.com")
    customers.update_customer(db, tenant.id, CLI, customer, name="Ada L.")
    customers.set_customer_active(db, tenant.id, CLI, bob, False)
    customers.set_customer_active(db, tenant.id, CLI, cy, False)
    customers.set_customer_active(db, tenant.id, CLI, cy, True)
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path, batch=7)  # several segments: folding must work across them
    con = connect(tenant.id, tmp_path)
    with db.tenant(tenant.id) as conn:
        pg_products = conn.execute(
            "SELECT sku, name, category, price, active FROM products ORDER BY sku"
        ).fetchall()
        pg_customers = conn.execute(
            "SELECT id::text, name, email, (created_at AT TIME ZONE 'UTC'), active FROM customers ORDER BY 1"
        ).fetchall()
        pg_allocations = conn.execute(
            "SELECT order_id::text, sku, warehouse, quantity::bigint FROM order_allocations ORDER BY 1, 2, 3"
        ).fetchall()
        placed_at = dict(conn.execute("SELECT id::text, placed_at AT TIME ZONE 'UTC' FROM orders").fetchall())
    assert len(pg_products) == 3 and len(pg_customers) == 3 and len(pg_allocations) >= 12
    assert con.execute("SELECT sku, name, category, price, active FROM products ORDER BY sku").fetchall() == (
        pg_products
    )
    assert (
        con.execute(
            "SELECT customer_id, name, email, created_at, active FROM customers ORDER BY 1"
        ).fetchall()
        == pg_customers
    )
    duck_allocations = con.execute(
        'SELECT order_id, sku, warehouse, quantity, "at" FROM order_allocations ORDER BY 1, 2, 3'
    ).fetchall()
    assert [r[:4] for r in duck_allocations] == pg_allocations
    assert {r[1:3] for r in duck_allocations if r[1] == "PLATE"} >= {("PLATE", "MAIN"), ("PLATE", "EAST")}
    assert all(r[4] == placed_at[r[0]] for r in duck_allocations)  # reserved when placed
    # the typed columns the reports rely on
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'order_allocations'"
        ).fetchall()
    )
    assert types["quantity"] == "BIGINT" and types["at"] == "TIMESTAMP"
    con.close()


def test_a_store_in_the_old_format_still_loads_and_is_rebuilt(db, tenant, tmp_path):
    customer = setup_shop(db, tenant.id)
    some_orders(db, tenant.id, customer, n=3)
    followable(db, tenant.id)
    # Make the store look as format 1 wrote it: only the first four tables.
    old_tables = ("order_facts", "order_lines", "payment_attempts", "stock_movements")
    sync(db, tenant.id, tmp_path)
    directory = store.tenant_dir(tenant.id, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    for table in set(manifest["segments"]) - set(old_tables):
        for f in manifest["segments"].pop(table):
            (directory / f).unlink()
    manifest["format"] = 1
    (directory / "manifest.json").write_text(json.dumps(manifest))
    assert manifest["format"] == 1 and set(manifest["segments"]) == set(old_tables)
    con = connect(tenant.id, tmp_path)  # loads: the new tables are there, empty
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM products").fetchone()[0] == 0
    con.close()
    old_files = {f for files in manifest["segments"].values() for f in files}

    with db.tenant(tenant.id) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert sync(db, tenant.id, tmp_path) == events  # rebuilt from the start of the log
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format"] == store.FORMAT_VERSION and manifest["events"] == events
    assert {r["file"] for r in manifest["retired"]} == old_files
    assert not old_files & {f for files in manifest["segments"].values() for f in files}
    con = connect(tenant.id, tmp_path)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM products").fetchone()[0] == 2
    assert duck_figures(con) == pg_figures(db, tenant.id)
    con.close()


def visible_after(tid, order_id: str, timeout: float = 10.0) -> float:
    """Seconds until order_id shows in a fresh connect() of the worker's store (data_dir from settings)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        con = connect(tid)
        seen = con.execute("SELECT count(*) FROM orders WHERE order_id = ?", [order_id]).fetchone()[0]
        con.close()
        if seen:
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} not in the analytic store after {timeout} s")


def test_the_worker_keeps_the_store_fresh_also_under_load(db, tenant, owner_url):
    """Two real `oms worker` processes (the second must be harmless) sync the store under the session's
    data dir; an order shows up in connect() within 5 s, also while another thread keeps placing orders."""
    import threading

    customer = setup_shop(db, tenant.id)
    for sku in ("MUG", "CUP"):
        inventory.receive(db, tenant.id, CLI, sku=sku, warehouse="MAIN", quantity=100_000)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "core.cli", "worker", "--heartbeat", "0.5"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    stop, load, errors = threading.Event(), [], []

    def keep_placing() -> None:
        try:
            while not stop.is_set():
                o = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1), ("CUP", 1)])
                load.append(o["order_id"])
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    try:
        first = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
        visible_after(tenant.id, first["order_id"], timeout=60)  # the workers have started and synced
        idle = []
        for _ in range(3):
            o = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("CUP", 1)])
            idle.append(visible_after(tenant.id, o["order_id"]))
        thread = threading.Thread(target=keep_placing, daemon=True)
        thread.start()
        loaded = []
        for _ in range(5):
            time.sleep(0.3)
            o = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 2)])
            loaded.append(visible_after(tenant.id, o["order_id"]))
        stop.set()
        thread.join(timeout=30)
        print(f"freshness idle {[round(s, 2) for s in idle]} s, under load {[round(s, 2) for s in loaded]} s")
        assert not errors and len(load) >= 20, (errors, len(load))
        assert max(idle) < 5 and max(loaded) < 5, (idle, loaded)
        # Once everything is synced the store holds every order exactly once and counts every event.
        followable(db, tenant.id)
        with db.tenant(tenant.id) as conn:
            events, orders = conn.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM orders)"
            ).fetchone()

        def synced() -> int:
            return store.read_manifest(store.tenant_dir(tenant.id), tenant.id)["events"]

        deadline = time.monotonic() + 30  # the backlog of the load, on two cores shared with it all
        while synced() != events and time.monotonic() < deadline:
            time.sleep(0.1)
        assert synced() == events, (
            synced(),
            events,
            [h["jobs"].get("analytics") for h in heartbeats(db)][:4],
        )
        con = connect(tenant.id)
        assert con.execute("SELECT count(*), count(DISTINCT order_id) FROM orders").fetchone() == (
            orders,
            orders,
        )
        assert duck_figures(con) == pg_figures(db, tenant.id)
        con.close()
        assert all(w.poll() is None for w in workers)
    finally:
        stop.set()
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
