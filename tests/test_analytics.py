"""The per-tenant DuckDB analytic store: synced from the event log without skipping a late commit,
equal to PostgreSQL's read model, isolated per tenant, locked down, and readable by another process
while the writer swaps in new segments."""

from __future__ import annotations

import json
import os
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
