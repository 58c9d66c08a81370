"""The analytic store's fast paths against their references: the server-side flattening equals the
Python `flatten` table by table over the demo shops' whole logs, shapes the server path does not parse
go through Python, and a long-lived Reader that refreshes incrementally holds what a fresh connect holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from conftest import followable
from test_analytics import setup_shop, some_orders

from core import catalog, tenants
from core import eventstore as es
from core.analytics import store
from core.commands import CLI
from core.demo import SHOPS, seed_demo
from core.orders.handlers import place_order


def rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


@pytest.fixture(scope="module")
def demo_shops(db):
    prefix = f"s{uuid.uuid4().hex[:8]}"
    seed_demo(db, orders=150, seed=11, prefix=prefix, end=datetime(2026, 11, 30, 18, tzinfo=UTC))
    by_slug = {t.slug: t for t in tenants.list_tenants(db)}
    shops = [by_slug[f"{prefix}-{s.key}"] for s in SHOPS]
    for t in shops:
        followable(db, t.id)
    return shops


def same_flattening(db, tid) -> dict[str, int]:
    """Assert both paths flatten the tenant's whole log alike; the rows per table."""
    with db.tenant(tid) as conn:
        server = store.read_flat(db, tid, conn, 0, 0, 1_000_000)
        python = store.read_python(conn, 0, 0, 1_000_000)
    assert server is not None
    assert server[:2] == python[:2] and server[0] > 10  # events, end cursor
    for table, schema in store.SCHEMAS.items():
        got, want = server[2][table], python[2][table]
        assert got.schema == want.schema == schema, table
        assert rows(got) == rows(want), table
    return {t: server[2][t].num_rows for t in store.SCHEMAS}


def test_the_server_flattens_the_demo_logs_as_python_does(db, demo_shops):
    for t in demo_shops:
        counts = same_flattening(db, t.id)
        # every table the demo fills is compared with rows (gateway payments: the next test)
        assert [n for n, c in counts.items() if not c] == ["payment_attempts"], (t.slug, counts)


def test_gateway_payments_and_staff_movements_flatten_alike(db, tenant):
    from fakes import FakeGateway

    from core import inventory
    from core.payments import service as payments

    gateway = FakeGateway()
    try:
        customer = setup_shop(db, tenant.id)
        tenants.change_settings(db, tenant.id, CLI, payment_backoff_seconds=1, circuit_failures=10)
        payments.set_gateways(
            db, tenant.id, CLI, [{"name": "main", "kind": "http", "url": gateway.url, "timeout_seconds": 5}]
        )
        gateway.plan = ["decline", "ok", "ok"]
        for _ in range(2):
            o = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
            payments.request_payment(db, tenant.id, CLI, o["order_id"])
            payments.process_payments(db, "w", 5.0, only=[tenant.id])
        catalog.add_warehouse(db, tenant.id, CLI, code="EAST", name="East")
        inventory.transfer(db, tenant.id, CLI, sku="MUG", source="MAIN", destination="EAST", quantity=5)
        inventory.adjust(db, tenant.id, CLI, sku="CUP", warehouse="MAIN", change=-2, reason="broken")
        followable(db, tenant.id)
        counts = same_flattening(db, tenant.id)
        assert counts["payment_attempts"] >= 2 and counts["stock_movements"] >= 6, counts
    finally:
        gateway.close()


def test_batches_and_their_cursor_follow_read_after(db, demo_shops):
    t = demo_shops[0]
    with db.tenant(t.id) as conn:
        txid, position, seen = 0, 0, 0
        while True:
            count, end, tables = store.read_flat(db, t.id, conn, txid, position, 97)
            events = es.read_after(conn, txid, position, 97)
            assert count == len(events)
            if not count:
                break
            assert end == {"txid": events[-1].txid, "position": events[-1].position}
            facts = tables["order_facts"].column("position").to_pylist()
            assert set(facts) <= {e.position for e in events}
            txid, position, seen = end["txid"], end["position"], seen + count
        assert seen == conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_shapes_the_server_does_not_parse_go_through_python(db, tenant, tmp_path, monkeypatch):
    customer = setup_shop(db, tenant.id)
    placed = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    late = str(uuid.uuid4())
    naive = {"order_id": late, "number": 5, "status": "placed", "channel": "web", "lines": []}
    naive["at"] = "2026-03-01T10:00:00"  # no offset: pyarrow refuses it, `flatten` reads it as UTC
    with db.tenant(tenant.id) as conn:
        es.append(
            conn,
            [es.StreamAppend(f"order-{late}", "order", [es.NewEvent(event_type="OrderPlaced", data=naive)])],
            es.Metadata("test"),
        )
    followable(db, tenant.id)
    with db.tenant(tenant.id) as conn:
        assert store.read_flat(db, tenant.id, conn, 0, 0, 1000) is None
    store.sync(db, tenant.id, tmp_path)
    con = store.connect(tenant.id, tmp_path)
    at = dict(con.execute("SELECT order_id, placed_at FROM orders").fetchall())
    assert at[late] == datetime(2026, 3, 1, 10) and placed["order_id"] in at

    # With an upcaster registered the server path is not used at all.
    monkeypatch.setitem(es.UPCASTERS, ("OrderPlaced", 1), lambda d: d | {"channel": "phone"})
    monkeypatch.setattr(store, "read_flat", None)  # would fail if called
    store.sync(db, tenant.id, tmp_path / "again")
    con = store.connect(tenant.id, tmp_path / "again")
    assert con.execute("SELECT DISTINCT channel FROM orders").fetchall() == [("phone",)]


def state(con) -> dict[str, list]:
    tables = [*store.SCHEMAS, "orders", "products", "customers"]
    return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def test_an_incremental_reader_holds_what_a_fresh_connect_holds(db, tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_AFTER", 3)  # merges while the reader follows
    customer = setup_shop(db, tenant.id)
    reader = store.Reader(tenant.id, tmp_path)
    assert reader.cursor().execute("SELECT count(*) FROM orders").fetchone() == (0,)
    compactions = 0
    for round_ in range(8):
        some_orders(db, tenant.id, customer, n=2, start=2 * round_)
        followable(db, tenant.id)
        store.sync(db, tenant.id, tmp_path, batch=5)
        manifest = store.read_manifest(store.tenant_dir(tenant.id, tmp_path), tenant.id)
        compactions += bool(manifest.get("merged"))
        cur = reader.cursor()
        fresh = store.connect(tenant.id, tmp_path)
        assert state(cur) == state(fresh), round_
        assert cur.execute("SELECT count(*) FROM orders").fetchone() == (2 * round_ + 2,)
        fresh.close()
    assert compactions
    # the reader's cursors are locked down like any connection: no files, no settings, and none of the
    # process's Python objects by name
    cur = reader.cursor()
    secret = pa.table({"x": [1]})  # noqa: F841 - what a replacement scan would find
    for query in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM secret",
        "SET enable_external_access = true",
        "SET python_enable_replacements = true",
    ):
        with pytest.raises(duckdb.Error):
            cur.execute(query).fetchall()
    assert cur.execute("SELECT count(*) FROM orders").fetchone() == (16,)
