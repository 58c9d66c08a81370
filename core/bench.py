"""Benchmarks behind `oms bench ...`: each returns a dict that the CLI prints as one JSON line."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import chain
from core import eventstore as es
from core import tenants as tn
from core.db import Database


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _append_client(
    db: Database, tenant_ids: list[str], deadline: float, client: int
) -> tuple[list[float], int]:
    """One client: append new 3-event order streams until the deadline, one transaction each."""
    metadata = es.Metadata(actor=f"bench-client-{client}")
    latencies: list[float] = []
    errors = 0
    i = 0
    while time.perf_counter() < deadline:
        tenant = tenant_ids[(client + i) % len(tenant_ids)]
        i += 1
        order = uuid.uuid4()
        events = [
            es.NewEvent(
                event_type="OrderPlaced",
                data={
                    "order_id": str(order),
                    "lines": [{"sku": "SKU-1", "qty": 2}],
                    "total": 2598,
                    "channel": "web",
                },
            ),
            es.NewEvent(
                event_type="StockReserved", data={"order_id": str(order), "warehouse": "MAIN", "qty": 2}
            ),
            es.NewEvent(event_type="OrderReserved", data={"order_id": str(order)}),
        ]
        started = time.perf_counter()
        try:
            # An append that is a whole transaction: oms_append sets the tenant for it, one round trip.
            with db.connection() as conn:
                es.append(
                    conn, [es.StreamAppend(f"order-{order}", "order", events)], metadata, tenant_id=tenant
                )
        except Exception:  # a failed append is counted, not fatal to the run
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return latencies, errors


def append(clients: int = 8, seconds: float = 10.0, tenants: int = 1) -> dict:
    """Append new 3-event streams from `clients` processes into `tenants` fresh tenants, then seal
    and verify the hash chain of what was written."""
    db = Database(application_name="oms-bench", max_size=clients)
    run = uuid.uuid4().hex[:6]
    tenant_ids = [str(tn.create_tenant(db, f"bench {run} {n}").id) for n in range(tenants)]
    db.pool.wait()
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(clients) as threads:
        futures = [threads.submit(_append_client, db, tenant_ids, deadline, c) for c in range(clients)]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - started
    latencies = sorted(lat for lats, _ in results for lat in lats)
    streams = len(latencies)

    seal_started = time.perf_counter()
    sealed = sum(chain.seal(db, t) for t in tenant_ids)
    seal_s = time.perf_counter() - seal_started
    verify_started = time.perf_counter()
    verified = all(chain.verify(db, t).ok for t in tenant_ids)
    verify_s = time.perf_counter() - verify_started
    db.close()
    return {
        "benchmark": "append",
        "streams": streams,
        "errors": sum(e for _, e in results),
        "seconds": round(elapsed, 2),
        "streams_per_s": round(streams / elapsed, 1),
        "events_per_s": round(3 * streams / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else 0.0,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "seal_events_per_s": round(sealed / seal_s, 1) if seal_s else 0.0,
        "chain_verified": verified,
        "verify_events_per_s": round(sealed / verify_s, 1) if verify_s else 0.0,
        "clients": clients,
        "tenants": tenants,
        "cores": os.cpu_count(),
    }


def _intake_client(
    db: Database,
    tenant_id: str,
    customers: list[str],
    skus: list[str],
    hot: str | None,
    deadline: float,
    seed: int,
) -> tuple[list[float], int, int]:
    """One client: place two-line orders through the command path until the deadline."""
    import random

    from core.commands import CLI
    from core.orders.handlers import place_order
    from core.orders.model import OutOfStock

    rng = random.Random(seed)
    latencies: list[float] = []
    rejected = errors = 0
    while time.perf_counter() < deadline:
        first = hot or rng.choice(skus)
        second = rng.choice([s for s in rng.sample(skus, 2) if s != first])
        started = time.perf_counter()
        try:
            place_order(
                db,
                tenant_id,
                CLI,
                customer_id=rng.choice(customers),
                lines=[(first, rng.randint(1, 2)), (second, 1)],
                channel=rng.choice(CHANNELS),
            )
        except OutOfStock:
            rejected += 1
        except Exception:  # counted and reported, never fatal to the run
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return latencies, rejected, errors


CHANNELS = ("web", "web", "pos", "marketplace", "phone")


def intake(
    clients: int = 8,
    seconds: float = 10.0,
    hot_sku: bool = False,
    skus: int = 1000,
    hot_units: int = 1_000_000,
) -> dict:
    """Place two-line orders from concurrent clients into one fresh tenant; check nothing was oversold."""
    from core import catalog, customers, inventory
    from core.commands import CLI

    db = Database(application_name="oms-bench", max_size=clients + 1)
    tenant = tn.create_tenant(db, f"bench intake {uuid.uuid4().hex[:6]}")
    for code, priority in (("EAST", 1), ("WEST", 2)):
        catalog.add_warehouse(
            db, tenant.id, CLI, code=code, name=f"{code.title()} warehouse", priority=priority
        )
    sku_names = [f"SKU-{n:05d}" for n in range(skus)]
    for n, sku in enumerate(sku_names):
        catalog.add_product(
            db, tenant.id, CLI, sku=sku, name=f"Product {n}", category=f"cat-{n % 10}", price=500 + n
        )
        for wh in ("EAST", "WEST"):
            units = hot_units // 2 if (hot_sku and n == 0) else 100_000
            inventory.receive(db, tenant.id, CLI, sku=sku, warehouse=wh, quantity=units)
    people = [customers.add_customer(db, tenant.id, CLI, name=f"Customer {n}")["id"] for n in range(100)]
    db.pool.wait()

    started = time.perf_counter()
    deadline = started + seconds
    hot = sku_names[0] if hot_sku else None
    with ThreadPoolExecutor(clients) as threads:
        futures = [
            threads.submit(_intake_client, db, str(tenant.id), people, sku_names, hot, deadline, c)
            for c in range(clients)
        ]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - started
    latencies = sorted(lat for lats, _, _ in results for lat in lats)
    with db.tenant(tenant.id) as conn:
        oversold = conn.execute(
            "SELECT coalesce(sum(greatest(a.reserved - s.on_hand, 0) + greatest(-s.on_hand, 0)), 0)"
            " FROM stock s LEFT JOIN (SELECT sku, warehouse, sum(quantity) AS reserved FROM order_allocations"
            " WHERE state = 'reserved' GROUP BY sku, warehouse) a USING (sku, warehouse)"
        ).fetchone()[0]
        placed = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    db.close()
    accepted = len(latencies) - sum(r for _, r, _ in results)
    return {
        "benchmark": "intake",
        "hot_sku": hot_sku,
        "orders": len(latencies),
        "orders_in_db": placed,
        "reserved": accepted,
        "rejected": sum(r for _, r, _ in results),
        "errors": sum(e for _, _, e in results),
        "seconds": round(elapsed, 2),
        "orders_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else 0.0,
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "oversold_units": int(oversold),
        "clients": clients,
        "cores": os.cpu_count(),
    }


def _backend_cpu_s(pid: int) -> float:
    """CPU seconds a local PostgreSQL backend has used (Linux /proc; the server must run here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cost(operations: int = 2000) -> dict:
    """Where one operation's time goes, one client at a time: wall time, this process's CPU and the
    PostgreSQL backend's CPU, per empty tenant transaction, per 3-event append, per two-line order."""
    from core import catalog, customers, inventory
    from core.commands import CLI
    from core.orders.handlers import place_order

    db = Database(application_name="oms-bench", max_size=1)
    tenant = tn.create_tenant(db, f"bench cost {uuid.uuid4().hex[:6]}")
    catalog.add_warehouse(db, tenant.id, CLI, code="MAIN", name="Main")
    skus = [f"SKU-{n}" for n in range(20)]
    for sku in skus:
        catalog.add_product(db, tenant.id, CLI, sku=sku, name=sku, price=1299)
        inventory.receive(db, tenant.id, CLI, sku=sku, warehouse="MAIN", quantity=1_000_000)
    buyer = customers.add_customer(db, tenant.id, CLI, name="Bench buyer")["id"]
    with db.connection() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    metadata = es.Metadata("bench")

    def empty(_: int) -> None:
        with db.tenant(tenant.id):
            pass

    def append_stream(_: int) -> None:
        order = uuid.uuid4()
        events = [
            es.NewEvent(event_type=t, data={"order_id": str(order), "qty": 2})
            for t in ("OrderPlaced", "StockReserved", "OrderReserved")
        ]
        with db.tenant(tenant.id) as conn:
            es.append(conn, [es.StreamAppend(f"order-{order}", "order", events)], metadata)

    def place(i: int) -> None:
        place_order(db, tenant.id, CLI, customer_id=buyer, lines=[(skus[i % 20], 1), (skus[(i + 1) % 20], 1)])

    out: dict = {"benchmark": "cost", "operations": operations, "cores": os.cpu_count()}
    for name, fn in (
        ("empty_transaction", empty),
        ("append_3_events", append_stream),
        ("place_order", place),
    ):
        backend, python, wall = _backend_cpu_s(pid), time.process_time(), time.perf_counter()
        for i in range(operations):
            fn(i)
        out[name] = {
            "wall_ms": round((time.perf_counter() - wall) * 1000 / operations, 3),
            "python_cpu_ms": round((time.process_time() - python) * 1000 / operations, 3),
            "postgres_cpu_ms": round((_backend_cpu_s(pid) - backend) * 1000 / operations, 3),
        }
    db.close()
    return out


# Queued email notifications, as the outbox fold would write them (the benchmark measures delivery,
# not order intake, so a producer inserts them straight into the outbox at a steady rate).
QUEUE_EMAILS = (
    "INSERT INTO notifications (tenant_id, dedupe_key, topic, channel, recipient, context, created_at,"
    " next_attempt_at)"
    " SELECT oms_current_tenant(), %(prefix)s || n, 'order_paid', 'email', 'customer' || n || '@example.com',"
    " jsonb_build_object('order_number', 1000 + n, 'total', 2599, 'currency', 'USD',"
    " 'customer_name', 'Customer ' || n), clock_timestamp(), clock_timestamp()"
    " FROM generate_series(%(first)s::int, %(last)s::int) AS n"
)


def worker(notifications: int = 20_000, workers: int = 2, rate: int = 2_000, batch: int = 200) -> dict:
    """Deliver queued emails through a local SMTP server (aiosmtpd) with `workers` dispatch threads,
    while a producer queues `notifications` of them at `rate` per second. Lag = arrival at the SMTP
    server minus the moment the row was queued."""
    import threading

    from core.commands import CLI
    from core.notifications import channels, dispatch
    from core.notifications.smtp_sink import SmtpServer

    db = Database(application_name="oms-bench", max_size=workers + 2)
    tenant = tn.create_tenant(db, f"bench worker {uuid.uuid4().hex[:6]}")
    sink = SmtpServer()
    channels.set_channel(
        db,
        tenant.id,
        CLI,
        "email",
        {"host": sink.host, "port": sink.port, "starttls": False, "sender": "bench@example.com"},
    )
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    produced = threading.Event()
    created: dict[str, float] = {}

    def produce() -> None:
        step = max(1, rate // 10)  # ten inserts a second
        start = time.perf_counter()
        for first in range(0, notifications, step):
            last = min(notifications, first + step) - 1
            with db.tenant(tenant.id) as conn:
                conn.execute(QUEUE_EMAILS, {"prefix": prefix, "first": first, "last": last})
            now = time.time()
            for n in range(first, last + 1):
                created[f"{prefix}{n}"] = now
            pause = start + (last + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        produced.set()

    def deliver(name: str) -> None:
        while True:
            report = dispatch.process_notifications(db, name, 60.0, limit=batch, only=[tenant.id])
            if not report.processed:
                if produced.is_set() and dispatch.counts(db, tenant.id, CLI)["queued"] == 0:
                    return
                time.sleep(0.02)

    started = time.time()
    threads = [threading.Thread(target=produce)] + [
        threading.Thread(target=deliver, args=(f"bench-{n}",)) for n in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    received = sink.arrivals("X-OMS-Dedupe-Key")
    sink.close()
    keys = {k for k, _ in received}
    lags = sorted((at - created[k]) * 1000 for k, at in received if k in created)
    counts = dispatch.counts(db, tenant.id, CLI)
    db.close()
    return {
        "benchmark": "worker",
        "notifications": notifications,
        "workers": workers,
        "offered_rate": rate,
        "cores": os.cpu_count(),
        "seconds": round(elapsed, 2),
        "notifications_per_s": round(len(keys) / elapsed, 1),
        "p50_delivery_lag_ms": round(_percentile(lags, 0.50), 1),
        "p99_delivery_lag_ms": round(_percentile(lags, 0.99), 1),
        "duplicates": len(received) - len(keys),
        "dead": counts["dead"],
        "lost": notifications - len(keys),
    }
