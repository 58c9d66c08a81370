"""The analytic store with its writer and two reader processes running side by side for a minute:
every state a reader loads is one consistent manifest's, never half a batch, while the writer keeps
appending segments, compacting them and deleting the retired files under the readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import followable
from test_analytics import setup_shop

from core import inventory
from core.analytics import store
from core.commands import CLI
from core.orders.handlers import place_order

SECONDS = 60.0

READER = """
import json, sys, time
from core.analytics.store import connect
tid, data_dir, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
reads, bad, errors, last, counts = 0, [], [], 0, set()
while time.monotonic() < end:
    try:
        con = connect(tid, data_dir)
        n, facts, allocs, lines, sub, broken, reserved, qty = con.execute(
            "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_facts),"
            " (SELECT count(*) FROM order_allocations), (SELECT count(*) FROM order_lines),"
            " (SELECT coalesce(sum(subtotal), 0) FROM orders),"
            # every order has its lines, and they add up to its subtotal
            " (SELECT count(*) FROM orders o LEFT JOIN (SELECT order_id, sum(line_total) AS s"
            "   FROM order_lines GROUP BY 1) l USING (order_id) WHERE l.s IS DISTINCT FROM o.subtotal),"
            " (SELECT coalesce(sum(reserved_change), 0) FROM stock_movements WHERE order_id IS NOT NULL),"
            " (SELECT coalesce(sum(quantity), 0) FROM order_lines)"
        ).fetchone()
        con.close()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
        continue
    # each order: OrderPlaced + OrderReserved, two lines, two allocations, its units reserved
    if n < last or broken or facts != 2 * n or allocs != 2 * n or lines != 2 * n or reserved != qty:
        bad.append([n, facts, allocs, lines, broken, reserved, qty])
    last = n
    counts.add(n)
    reads += 1
out = {"reads": reads, "bad": bad[:5], "errors": errors[:5], "distinct": len(counts), "last": last}
print(json.dumps(out))
"""


def test_two_reader_processes_and_the_writer_for_a_minute(db, tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_AFTER", 6)  # compaction every few syncs
    monkeypatch.setattr(store, "GRACE_SECONDS", 1.0)  # retired files deleted while the readers read
    customer = setup_shop(db, tenant.id)
    for sku in ("MUG", "CUP"):
        inventory.receive(db, tenant.id, CLI, sku=sku, warehouse="MAIN", quantity=1_000_000)
    followable(db, tenant.id)
    sync = store.sync
    sync(db, tenant.id, tmp_path)
    directory = store.tenant_dir(tenant.id, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(tenant.id), str(tmp_path), str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    placed = syncs = compactions = 0
    deleted: set[str] = set()
    ever: set[str] = set()
    deadline = time.monotonic() + SECONDS + 5
    while any(r.poll() is None for r in readers) and time.monotonic() < deadline:
        for _ in range(4):
            place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1 + placed % 3), ("CUP", 2)])
            placed += 1
        followable(db, tenant.id)
        before = store.read_manifest(directory, tenant.id)["segments"]["order_facts"]
        sync(db, tenant.id, tmp_path)
        syncs += 1
        after = store.read_manifest(directory, tenant.id)["segments"]["order_facts"]
        compactions += len(after) < len(before) + 1
        on_disk = {p.name for p in directory.glob("*.parquet")}
        deleted |= ever - on_disk
        ever |= on_disk
    results = []
    for r in readers:
        out, err = r.communicate(timeout=30)
        assert r.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"placed {placed}, syncs {syncs}, compactions {compactions}, deleted {len(deleted)},"
        f" readers {results}"
    )
    for result in results:
        assert result["errors"] == [] and result["bad"] == [], result
        assert result["reads"] >= 100 and result["distinct"] >= 20, result
    assert syncs >= 30 and compactions >= 3 and len(deleted) >= 20
    followable(db, tenant.id)
    sync(db, tenant.id, tmp_path)
    con = store.connect(tenant.id, tmp_path)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == placed
    con.close()
