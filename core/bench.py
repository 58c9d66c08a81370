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


# --- oms bench ui: the app's pages on a big tenant ---------------------------------------------------
# The read models of one tenant, filled straight in SQL (generate_series, one transaction per chunk):
# placing a million orders through the command path would take about 20 minutes at ~900 orders/s, and
# the pages only read the read models. Every row is shaped as the projections write it.
UI_FIRST = (
    "Ada Grace Alan Edsger Barbara Donald Frances John Margaret Ken Radia Dennis Hedy Linus Katherine Tim"
    " Sophie Niklaus Annie Guido"
)
UI_LAST = (
    "Lovelace Hopper Turing Dijkstra Liskov Knuth Allen McCarthy Hamilton Thompson Perlman Ritchie Lamarr"
    " Torvalds Johnson Berners-Lee Wilson Wirth Easley Rossum Backus Kay Cerf Hoare Lamport Milner Naur Codd"
    " Stonebraker Gray"
)
UI_WAREHOUSES = (("EAST", "East", 1), ("WEST", "West", 2), ("NORTH", "North", 3))
UI_CATALOG = (
    "INSERT INTO warehouses (tenant_id, code, name, region, priority, created_at)"
    " SELECT oms_current_tenant(), w.code, w.name || ' warehouse', w.code, w.priority, %(start)s"
    " FROM jsonb_to_recordset(%(warehouses)s::jsonb) AS w (code text, name text, priority int);\n"
    " INSERT INTO products (tenant_id, sku, name, category, price, active, created_at, updated_at)"
    " SELECT oms_current_tenant(), 'SKU-' || lpad(k::text, 5, '0'),"
    " (ARRAY['Red', 'Blue', 'Green', 'Small', 'Large', 'Classic', 'Travel', 'Deluxe', 'Eco', 'Steel'])"
    "[1 + k %% 10] || ' ' || (ARRAY['mug', 'teapot', 'bowl', 'plate', 'kettle', 'jar', 'tray', 'cup',"
    " 'vase', 'spoon', 'pan', 'lamp'])[1 + (k / 10) %% 12] || ' ' || k,"
    " (ARRAY['kitchen', 'table', 'garden', 'office', 'bath', 'gifts', 'outdoor', 'storage'])[1 + k %% 8],"
    " 300 + (k * 7919) %% 9700, k %% 50 <> 0, %(start)s, %(start)s"
    " FROM generate_series(1, %(products)s) AS k;\n"
    " INSERT INTO customers (tenant_id, id, name, email, phone, created_at, updated_at)"
    " SELECT oms_current_tenant(), md5(%(salt)s || ':c:' || k)::uuid, f.name || ' ' || l.name,"
    " lower(f.name || '.' || l.name) || k || '@example.com', '+1555' || lpad(k::text, 7, '0'),"
    " %(start)s + (k - 1) * (%(now)s::timestamptz - %(start)s) / %(customers)s,"
    " %(start)s + (k - 1) * (%(now)s::timestamptz - %(start)s) / %(customers)s"
    " FROM generate_series(1, %(customers)s) AS k,"
    " LATERAL (SELECT (%(first)s::text[])[1 + k %% cardinality(%(first)s::text[])] AS name) f,"
    " LATERAL (SELECT (%(last)s::text[])[1 + (k / 7) %% cardinality(%(last)s::text[])] AS name) l"
)
# One chunk of orders: their heads in a temporary table (status by age: recent orders are still being
# paid and shipped, older ones mostly delivered), their lines, then the four read models and the stock
# movements the orders caused.
UI_CHUNK = """
CREATE TEMP TABLE bench_o ON COMMIT DROP AS
SELECT x.*,
       CASE WHEN x.status = 'partially_shipped' THEN greatest(x.line_count, 2) ELSE x.line_count END AS lines
FROM (
    SELECT n, md5(%(salt)s || ':o:' || n)::uuid AS id, 1000 + n AS number, placed_at,
           md5(%(salt)s || ':c:' || (1 + floor(random() * %(customers)s)::int))::uuid AS customer_id,
           (ARRAY['web', 'web', 'web', 'web', 'web', 'pos', 'pos', 'marketplace', 'marketplace', 'phone'])
               [1 + floor(random() * 10)::int] AS channel,
           CASE WHEN %(now)s::timestamptz - placed_at < interval '1 hour' THEN
                    CASE WHEN r < 0.6 THEN 'reserved' WHEN r < 0.9 THEN 'paid' WHEN r < 0.95 THEN 'rejected'
                         ELSE 'payment_pending' END
                WHEN %(now)s::timestamptz - placed_at < interval '3 days' THEN
                    CASE WHEN r < 0.3 THEN 'paid' WHEN r < 0.35 THEN 'partially_shipped'
                         WHEN r < 0.85 THEN 'shipped' WHEN r < 0.9 THEN 'cancelled'
                         WHEN r < 0.95 THEN 'expired'
                         WHEN r < 0.97 THEN 'rejected' ELSE 'payment_failed' END
                ELSE CASE WHEN r < 0.8 THEN 'delivered' WHEN r < 0.85 THEN 'cancelled'
                          WHEN r < 0.9 THEN 'expired'
                          WHEN r < 0.92 THEN 'rejected' WHEN r < 0.95 THEN 'refunded'
                          WHEN r < 0.97 THEN 'partially_refunded' WHEN r < 0.98 THEN 'shipped'
                          ELSE 'payment_failed' END
           END AS status,
           (ARRAY[1, 1, 1, 2, 2, 3])[1 + floor(random() * 6)::int] AS line_count,
           floor(random() * %(products)s)::int AS p0,
           (ARRAY['EAST', 'EAST', 'EAST', 'WEST', 'WEST', 'NORTH'])[1 + floor(random() * 6)::int] AS wh
    FROM (SELECT n, random() AS r,
                 %(start)s::timestamptz
                     + (n - 1) * (%(now)s::timestamptz - %(start)s::timestamptz) / %(orders)s
                     + random() * interval '50 seconds' AS placed_at
          FROM generate_series(%(lo)s::int, %(hi)s::int) AS n) g
) x;

CREATE TEMP TABLE bench_l ON COMMIT DROP AS
SELECT o.id AS order_id, o.n, o.number, o.placed_at, o.status, i AS line_no, p.sku, p.name,
       p.price AS unit_price,
       1 + floor(random() * 3)::int AS quantity,
       CASE WHEN o.status = 'partially_shipped' AND i > 1
            THEN CASE WHEN o.wh = 'EAST' THEN 'WEST' ELSE 'EAST' END
            ELSE o.wh END AS warehouse,
       CASE WHEN o.status IN ('reserved', 'payment_pending', 'paid') THEN 'reserved'
            WHEN o.status = 'partially_shipped' THEN CASE WHEN i = 1 THEN 'shipped' ELSE 'reserved' END
            WHEN o.status IN ('cancelled', 'expired', 'payment_failed') THEN 'released'
            WHEN o.status = 'rejected' THEN NULL
            ELSE 'shipped' END AS state
FROM bench_o o CROSS JOIN LATERAL generate_series(1, o.lines) AS i
JOIN products p ON p.sku = 'SKU-'
    || lpad((1 + (o.p0 + (i - 1) * greatest(%(products)s / 3, 1)) %% %(products)s)::text, 5, '0');

INSERT INTO orders (tenant_id, id, number, customer_id, customer_name, channel, status, currency,
                    subtotal, shipping_fee, tax, total, paid_amount, refunded_amount, placed_at,
                    reserved_until, paid_at, shipped_at, delivered_at, closed_at, updated_at, version)
SELECT oms_current_tenant(), o.id, o.number, o.customer_id, c.name, o.channel, o.status, %(currency)s,
       m.subtotal, m.fee, 0, m.subtotal + m.fee,
       CASE WHEN paid THEN m.subtotal + m.fee ELSE 0 END,
       CASE o.status WHEN 'refunded' THEN m.subtotal + m.fee
                     WHEN 'partially_refunded' THEN (m.subtotal + m.fee) / 3 ELSE 0 END,
       o.placed_at,
       CASE WHEN o.status = 'reserved' THEN o.placed_at + interval '30 minutes' END,
       CASE WHEN paid THEN o.placed_at + interval '4 minutes' END,
       CASE WHEN shipped THEN least(%(now)s::timestamptz, o.placed_at + interval '20 hours') END,
       CASE WHEN delivered THEN o.placed_at + interval '3 days' END,
       CASE WHEN o.status IN ('rejected', 'cancelled', 'expired', 'refunded')
            THEN least(%(now)s::timestamptz, o.placed_at + interval '30 minutes') END,
       least(%(now)s::timestamptz, o.placed_at + CASE WHEN delivered THEN interval '3 days'
                                                    WHEN shipped THEN interval '20 hours'
                                                    ELSE interval '30 minutes' END),
       2 + paid::int + shipped::int + delivered::int + (o.status LIKE '%%refunded')::int
FROM bench_o o
JOIN customers c ON c.id = o.customer_id
JOIN (SELECT order_id, sum(quantity * unit_price) AS subtotal,
             CASE WHEN sum(quantity * unit_price) >= 5000 THEN 0 ELSE 495 END AS fee
      FROM bench_l GROUP BY order_id) m ON m.order_id = o.id,
LATERAL (SELECT o.status IN ('paid', 'partially_shipped', 'shipped', 'delivered', 'refunded',
                             'partially_refunded') AS paid,
                o.status IN ('partially_shipped', 'shipped', 'delivered', 'refunded', 'partially_refunded')
                    AS shipped,
                o.status IN ('delivered', 'refunded', 'partially_refunded') AS delivered) f;

INSERT INTO order_lines (tenant_id, order_id, line_no, sku, name, quantity, unit_price, line_total,
                         returned_quantity)
SELECT oms_current_tenant(), order_id, line_no, sku, name, quantity, unit_price, quantity * unit_price,
       CASE WHEN status = 'refunded' OR (status = 'partially_refunded' AND line_no = 1) THEN quantity
            ELSE 0 END
FROM bench_l;

INSERT INTO order_allocations (tenant_id, order_id, sku, warehouse, quantity, state)
SELECT oms_current_tenant(), order_id, sku, warehouse, quantity, state FROM bench_l WHERE state IS NOT NULL;

INSERT INTO shipments (tenant_id, order_id, warehouse, carrier, tracking, shipped_at)
SELECT DISTINCT ON (order_id, warehouse) oms_current_tenant(), order_id, warehouse,
       (ARRAY['UPS', 'DHL', 'FedEx', 'USPS'])[1 + n %% 4], 'TRK' || number || warehouse,
       least(%(now)s::timestamptz, placed_at + interval '20 hours')
FROM bench_l WHERE state = 'shipped';

INSERT INTO stock_movements (tenant_id, position, line, sku, warehouse, kind, on_hand_change, reserved_change,
                             reason, order_id, actor, at)
SELECT oms_current_tenant(), n * 4, line_no, sku, warehouse, 'reserve', 0, quantity, '', order_id, 'bench',
       placed_at
FROM bench_l WHERE state IS NOT NULL
UNION ALL
SELECT oms_current_tenant(), n * 4 + 1, line_no, sku, warehouse,
       CASE state WHEN 'shipped' THEN 'ship' WHEN 'released' THEN
           CASE status WHEN 'expired' THEN 'expire' ELSE 'release' END END,
       CASE state WHEN 'shipped' THEN -quantity ELSE 0 END, -quantity,
       CASE state WHEN 'shipped' THEN 'TRK' || number || warehouse ELSE '' END, order_id, 'bench',
       least(%(now)s::timestamptz, placed_at + CASE state WHEN 'shipped' THEN interval '20 hours'
                                                    ELSE interval '30 minutes' END)
FROM bench_l WHERE state IN ('shipped', 'released');
"""
# Stock per SKU and warehouse: what the reserved allocations hold, plus what is free (a few rows near
# or below their reorder point), and the delivery that brought it in.
UI_STOCK = """
INSERT INTO stock (tenant_id, sku, warehouse, on_hand, reserved, reorder_point, updated_at)
SELECT oms_current_tenant(), p.sku, w.code,
       coalesce(a.reserved, 0) + CASE WHEN random() < 0.05 THEN floor(random() * 15)::int
                                      ELSE 40 + floor(random() * 800)::int END,
       coalesce(a.reserved, 0), 20, %(now)s
FROM products p CROSS JOIN warehouses w
LEFT JOIN (SELECT sku, warehouse, sum(quantity)::int AS reserved FROM order_allocations
           WHERE state = 'reserved' GROUP BY sku, warehouse) a ON a.sku = p.sku AND a.warehouse = w.code;
INSERT INTO stock_movements (tenant_id, position, line, sku, warehouse, kind, on_hand_change, reserved_change,
                             reason, order_id, actor, at)
SELECT oms_current_tenant(), 0, row_number() OVER (ORDER BY sku, warehouse)::int, sku, warehouse, 'receive',
       on_hand, 0, 'opening stock', NULL, 'bench', %(start)s
FROM stock;
"""


def _statements(script: str) -> list[str]:
    """A script's statements, to send one by one (a statement with parameters goes alone)."""
    return [s for s in script.split(";\n") if s.strip()]


UI_TABLES = (
    "customers",
    "products",
    "warehouses",
    "orders",
    "order_lines",
    "order_allocations",
    "shipments",
    "stock",
    "stock_movements",
)


def _fill_ui_tenant(
    db: Database,
    tenant: tn.Tenant,
    orders: int,
    customers: int,
    products: int,
    days: int,
    chunk: int,
    progress: bool,
) -> dict:
    """Fill the tenant's read models; return the fill's seconds and row counts."""
    import json
    from datetime import UTC, datetime, timedelta

    import psycopg
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core.db import owner_url

    now = datetime.now(UTC)
    params = {
        "salt": str(tenant.id),
        "now": now,
        "start": now - timedelta(days=days),
        "orders": orders,
        "customers": customers,
        "products": products,
        "currency": tenant.currency,
        "first": UI_FIRST.split(),
        "last": UI_LAST.split(),
        "warehouses": json.dumps([{"code": c, "name": n, "priority": p} for c, n, p in UI_WAREHOUSES]),
    }
    started = time.perf_counter()
    with db.tenant(tenant.id) as conn:
        for statement in _statements(UI_CATALOG):
            conn.execute(statement, params)
    bar = Progress(
        TextColumn("filling orders"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task("orders", total=orders)
        for lo in range(1, orders + 1, chunk):
            hi = min(orders, lo + chunk - 1)
            with db.tenant(tenant.id) as conn:
                for statement in _statements(UI_CHUNK):
                    conn.execute(statement, {**params, "lo": lo, "hi": hi})
            bar.update(task, completed=hi)
    with db.tenant(tenant.id) as conn:
        for statement in _statements(UI_STOCK):
            conn.execute(statement, params)
    filled = time.perf_counter() - started
    # The owner: the tenant's order numbers go on after the filled ones, and ANALYZE (only an owner may).
    with psycopg.connect(owner_url(), autocommit=True) as owner:
        owner.execute("SELECT setval(oms_order_number_sequence(%s), %s)", [tenant.id, 1000 + orders])
        for table in UI_TABLES:
            owner.execute(f"ANALYZE {table}")
    with db.tenant(tenant.id) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in UI_TABLES}
    return {
        "fill_s": round(filled, 1),
        "analyze_s": round(time.perf_counter() - started - filled, 1),
        "rows": rows,
    }


def ui(
    orders: int = 1_000_000,
    runs: int = 5,
    customers: int = 5_000,
    products: int = 300,
    days: int = 730,
    chunk: int = 50_000,
    progress: bool = True,
) -> dict:
    """Server time of the first render of Overview, Orders and Inventory for a fresh tenant with `orders`
    orders, signed in as its owner, through Streamlit's AppTest; then the median of `runs` reruns.

    The tenant's read models (customers, products, warehouses, orders, order lines, allocations,
    shipments, stock, stock movements) are filled directly in SQL, not through the command path, so the
    tenant has no events: the pages read only the read models, and placing a million orders as commands
    would take about 20 minutes. Statuses follow the orders' age (recent ones reserved, paid or shipping,
    older ones mostly delivered), over `days` days, `customers` customers, `products` SKUs and three
    warehouses; order numbers run from 1001 as the app's own do, and the number sequence continues after.

    The first pass renders the three pages once in this process (imports, plotly's first figure, the
    pool): `cold_ms`. A second, new browser session then gives `first_ms`, the first render as a person
    opening the page on a running server gets it, and `median_ms` over `runs` reruns of the same page."""
    # The one place core reaches into app/ (lazily, so core still never imports Streamlit otherwise): this
    # benchmark drives the app's pages.
    from app import page_timing
    from core import auth

    db = Database(application_name="oms-bench", max_size=2)
    tenant = tn.create_tenant(db, f"bench ui {uuid.uuid4().hex[:6]}")
    password = f"bench-{uuid.uuid4().hex}"
    tn.add_user(db, tenant.id, "owner", "owner", password, display_name="Bench owner")
    fill = _fill_ui_tenant(db, tenant, orders, customers, products, days, chunk, progress)
    with db.tenant(tenant.id) as conn:
        expected = conn.execute(
            "SELECT (SELECT max(number) FROM orders),"
            " (SELECT count(*) FROM orders WHERE status = 'reserved'),"
            " (SELECT count(*) FROM orders WHERE status IN ('paid', 'partially_shipped'))"
        ).fetchone()
    session = auth.authenticate(db, f"owner@{tenant.slug}", password)
    db.close()

    cold, _ = page_timing.render_pass(session)
    timed, shown = page_timing.render_pass(session, reruns=runs)
    pages = {
        name: {
            "cold_ms": round(cold[name][0], 1),
            "first_ms": round(ms[0], 1),
            "median_ms": round(statistics.median(ms[1:] or ms), 1),
        }
        for name, ms in timed.items()
    }
    return {
        "benchmark": "ui",
        "orders": orders,
        "tenant": tenant.slug,
        **fill,
        "pages": pages,
        "max_first_ms": max(p["first_ms"] for p in pages.values()),
        "shown": shown,
        "expected": {
            "newest_order": f"#{expected[0]}",
            "pending_payments": expected[1],
            "to_ship": expected[2],
        },
        "runs": runs,
        "cores": os.cpu_count(),
    }


# The analytic store: a tenant's log filled in bulk SQL, then sync, reports and freshness.

AN_EVENTS = """
WITH o AS (
    SELECT i, md5(%(salt)s::text || i)::uuid AS id, 1000 + i AS number,
           (ARRAY['web', 'pos', 'marketplace', 'phone'])[1 + i %% 4] AS channel,
           1 + i %% 3 AS qty, 1250 AS price, 100 * (i %% 2) AS fee,
           %(start)s::timestamptz + (i * %(step)s::float8) * interval '1 second' AS at
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
), e AS (
    SELECT o.*, o.qty * o.price AS subtotal, (o.qty * o.price * 2000 + 5000) / 10000 AS tax FROM o
)
INSERT INTO events (tenant_id, stream_id, version, event_id, event_type, data, metadata, recorded_at)
SELECT oms_current_tenant(), 'order-' || e.id, k.version,
       md5(%(salt)s::text || e.i || '/' || k.version)::uuid, k.type, k.data, '{"actor": "bench"}'::jsonb, e.at
FROM e CROSS JOIN LATERAL (VALUES
    (1, 'OrderPlaced', jsonb_build_object('order_id', e.id, 'number', e.number,
        'customer_id', %(customer)s::text,
        'customer_name', 'Bench', 'channel', e.channel, 'currency', 'EUR',
        'lines', jsonb_build_array(jsonb_build_object('line_no', 1, 'sku', 'MUG', 'name', 'Mug',
                                                      'quantity', e.qty, 'unit_price', e.price)),
        'subtotal', e.subtotal, 'shipping_fee', e.fee, 'tax', e.tax, 'total', e.subtotal + e.fee + e.tax,
        'status', 'placed', 'at', e.at)),
    (2, 'OrderReserved', jsonb_build_object('order_id', e.id,
        'allocations', jsonb_build_array(jsonb_build_object('sku', 'MUG', 'warehouse', 'MAIN',
                                                            'quantity', e.qty)),
        'reserved_until', e.at + interval '30 minutes', 'status', 'reserved', 'at', e.at)),
    (3, 'OrderPaid', jsonb_build_object('order_id', e.id, 'amount', e.subtotal + e.fee + e.tax,
        'method', 'card', 'reference', 'bench', 'status', 'paid', 'at', e.at + interval '5 minutes'))
) AS k (version, type, data)
WHERE k.version < 3 OR e.i %% 2 = 0
"""
# The same orders in PostgreSQL's read model, folded the way the orders projection would.
AN_ORDERS = """
WITH o AS (
    SELECT i, md5(%(salt)s::text || i)::uuid AS id, 1000 + i AS number,
           (ARRAY['web', 'pos', 'marketplace', 'phone'])[1 + i %% 4] AS channel,
           (1 + i %% 3) * 1250 AS subtotal, 100 * (i %% 2) AS fee,
           %(start)s::timestamptz + (i * %(step)s::float8) * interval '1 second' AS at
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
), e AS (SELECT o.*, (o.subtotal * 2000 + 5000) / 10000 AS tax FROM o)
INSERT INTO orders (tenant_id, id, number, customer_id, customer_name, channel, status, currency, subtotal,
                    shipping_fee, tax, total, paid_amount, placed_at, reserved_until, paid_at, updated_at,
                    version)
SELECT oms_current_tenant(), id, number, %(customer)s::uuid, 'Bench', channel,
       CASE WHEN i %% 2 = 0 THEN 'paid' ELSE 'reserved' END, 'EUR', subtotal, fee, tax, subtotal + fee + tax,
       CASE WHEN i %% 2 = 0 THEN subtotal + fee + tax ELSE 0 END, at,
       CASE WHEN i %% 2 = 0 THEN NULL ELSE at + interval '30 minutes' END,
       CASE WHEN i %% 2 = 0 THEN at + interval '5 minutes' END, at, CASE WHEN i %% 2 = 0 THEN 3 ELSE 2 END
FROM e
"""
AN_PG_REVENUE = (
    "SELECT (placed_at AT TIME ZONE 'UTC')::date AS day, channel, count(*) AS orders,"
    " sum(paid_amount - refunded_amount) AS revenue FROM orders WHERE status <> 'rejected'"
    " GROUP BY 1, 2 ORDER BY 1, 2"
)
# The app's side, in a process of its own: a store.Reader as app/database.py keeps one, loaded once, then
# asked for a cursor every 20 ms until each probe order (id and wall-clock time placed, one a line on
# stdin) shows; all pending probes are looked for at once, so a slow one does not delay the next.
AN_APP = """
import json, queue, resource, sys, threading, time
from core.analytics import store

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

t0 = time.perf_counter()
reader = store.Reader(sys.argv[1], sys.argv[2])
store.revenue_by_day(reader.cursor())
out = {"connect_s": time.perf_counter() - t0, "rss_first_mb": rss_mb(), "fresh": [], "refresh_s": []}
print("ready", flush=True)
lines = queue.Queue()
threading.Thread(target=lambda: [lines.put(line) for line in sys.stdin] + [lines.put(None)]).start()
pending, done = {}, False
while not done or pending:
    while not lines.empty():
        line = lines.get()
        if line is None:
            done = True
        else:
            order_id, placed = line.split()
            pending[order_id] = float(placed)
    if pending:
        t = time.perf_counter()
        cur = reader.cursor()
        out["refresh_s"].append(time.perf_counter() - t)
        seen = cur.execute("SELECT order_id FROM orders WHERE list_contains(?, order_id)", [list(pending)])
        now = time.time()
        for (order_id,) in seen.fetchall():
            out["fresh"].append(now - pending.pop(order_id))
    time.sleep(0.02)
out["rss_last_mb"] = rss_mb()
out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _an_order(customer: str, n: int) -> es.StreamAppend:
    """One order in the bulk fill's shape: placed and reserved, paid every other one."""
    from datetime import UTC, datetime

    oid, at, qty = str(uuid.uuid4()), datetime.now(UTC).isoformat(), 1 + n % 3
    subtotal = qty * 1250
    tax = (subtotal * 2000 + 5000) // 10000
    line = {"line_no": 1, "sku": "MUG", "name": "Mug", "quantity": qty, "unit_price": 1250}
    placed = {"order_id": oid, "number": None, "customer_id": customer, "customer_name": "Bench"}
    placed |= {"channel": "web", "currency": "EUR", "lines": [line], "subtotal": subtotal, "tax": tax}
    placed |= {"shipping_fee": 0, "total": subtotal + tax, "status": "placed", "at": at}
    reserved = {"order_id": oid, "allocations": [{"sku": "MUG", "warehouse": "MAIN", "quantity": qty}]}
    events = [("OrderPlaced", placed), ("OrderReserved", reserved | {"status": "reserved", "at": at})]
    if n % 2 == 0:
        events.append(("OrderPaid", {"order_id": oid, "amount": subtotal + tax, "status": "paid", "at": at}))
    return es.StreamAppend(f"order-{oid}", "order", [es.NewEvent(event_type=t, data=d) for t, d in events])


def _an_load(db: Database, tenant_id, customer: str, rate: int, stop, appended: list[int]) -> None:
    """Orders in the bulk fill's shape appended through the event store at `rate` events/s (2.5 events an
    order), in ten transactions a second."""
    meta = es.Metadata(actor="bench-load")
    start, n = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate / 2.5)
        if due > n:
            with db.tenant(tenant_id) as conn:
                appends = [_an_order(customer, i) for i in range(n, due)]
                appended.append(len(es.append(conn, appends, meta).events))
            n = due
        stop.wait(0.1)


# The tenant's committed events a follower cannot read yet: they lie above the oldest transaction still
# running anywhere in the cluster.
AN_HELD_BACK = "SELECT count(*) FROM events WHERE txid >= pg_snapshot_xmin(pg_current_snapshot())"


def _an_sync_loop(db: Database, tenant_id, data_dir: Path, stop, took: list[float], held: list[int]) -> None:
    """What the worker's analytics job does: a sync every second."""
    from core.analytics import store

    while not stop.is_set():
        t = time.perf_counter()
        store.sync(db, tenant_id, data_dir)
        took.append(time.perf_counter() - t)
        with db.tenant(tenant_id) as conn:
            held.append(conn.execute(AN_HELD_BACK).fetchone()[0])
        stop.wait(max(0.0, 1.0 - took[-1]))


def analytics(events: int = 5_000_000, chunk: int = 100_000, runs: int = 5, probes: int = 20) -> dict:
    """Sync throughput, report speed against PostgreSQL, freshness under load and app memory.

    A new tenant's log is filled directly in SQL (`events` order events: OrderPlaced and OrderReserved
    for every order, OrderPaid for every other one, about 2.5 per order over a year), with the same
    orders written to PostgreSQL's `orders` read model as the orders projection folds them. Then: one
    sync from empty (events/s); the revenue-by-day-by-channel report on DuckDB (`store.revenue_by_day`
    and the Reports page's `reports.over_time`, on an open connection) and in SQL on PostgreSQL's read
    model (medians of `runs`); a fresh connect(). Then freshness under load: a thread appends orders in
    the fill's shape at 1,000 events/s through the event store, another syncs every second as the worker
    does, and an app process (a store.Reader, as app/database.py keeps) is timed from each of `probes`
    orders placed through the command path until its cursor shows it; that process also reports its
    time to first load, and its RSS after it and after the whole phase."""
    import json
    import subprocess
    import sys
    import tempfile
    import threading
    from datetime import UTC, datetime, timedelta

    import psycopg

    from core import catalog, customers, inventory
    from core.analytics import reports, store
    from core.commands import CLI
    from core.db import owner_url
    from core.orders.handlers import place_order

    db = Database(application_name="oms-bench", max_size=6)  # the sync reads two tables at a time
    tenant = tn.create_tenant(db, f"bench analytics {uuid.uuid4().hex[:6]}")
    catalog.add_warehouse(db, tenant.id, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tenant.id, CLI, sku="MUG", name="Mug", price=1250)
    inventory.receive(db, tenant.id, CLI, sku="MUG", warehouse="MAIN", quantity=1_000_000)
    customer = customers.add_customer(db, tenant.id, CLI, name="Bench")["id"]
    orders = max(1, round(events / 2.5))
    start = datetime.now(UTC) - timedelta(days=365)
    params = {"salt": str(tenant.id), "customer": str(customer), "start": start, "step": 365 * 86400 / orders}
    t0 = time.perf_counter()
    for lo in range(1, orders + 1, chunk):
        with db.tenant(tenant.id) as conn:
            p = {**params, "lo": lo, "hi": min(orders, lo + chunk - 1)}
            conn.execute(AN_EVENTS, p)
            conn.execute(AN_ORDERS, p)
    with psycopg.connect(owner_url(), autocommit=True) as owner:  # new orders number on after the filled
        owner.execute("SELECT setval(oms_order_number_sequence(%s), %s)", [tenant.id, 1000 + orders])
        owner.execute("ANALYZE orders")
        owner.execute("ANALYZE events")  # without statistics the follower read is a sort of the whole log
    fill_s = time.perf_counter() - t0
    with db.tenant(tenant.id) as conn:
        total_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    data_dir = Path(tempfile.mkdtemp(prefix="oms-bench-analytics-"))

    t0 = time.perf_counter()
    synced = store.sync(db, tenant.id, data_dir)
    sync_s = time.perf_counter() - t0

    def median_ms(fn) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(times), 1)

    t0 = time.perf_counter()
    con = store.connect(tenant.id, data_dir)
    connect_s = time.perf_counter() - t0
    duck_rows = len(store.revenue_by_day(con))
    duck_ms = median_ms(lambda: store.revenue_by_day(con))
    today = datetime.now(UTC).date()
    year = reports.Period(today - timedelta(days=366), today + timedelta(days=1))
    page_ms = median_ms(lambda: reports.over_time(con, "UTC", year, "day", "channel"))
    con.close()

    def pg_query():
        with db.tenant(tenant.id) as conn:
            return conn.execute(AN_PG_REVENUE).fetchall()

    pg_rows = len(pg_query())
    pg_ms = median_ms(pg_query)

    app = subprocess.Popen(
        [sys.executable, "-c", AN_APP, str(tenant.id), str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    app.stdout.readline()  # loaded
    stop, appended, syncs, held = threading.Event(), [], [], []
    threads = [
        threading.Thread(target=_an_load, args=(db, tenant.id, str(customer), 1000, stop, appended)),
        threading.Thread(target=_an_sync_loop, args=(db, tenant.id, data_dir, stop, syncs, held)),
    ]
    load_t0 = time.perf_counter()
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)  # the load and the sync loop under way
        for i in range(probes):
            placed = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
            app.stdin.write(f"{placed['order_id']} {time.time()}\n")
            app.stdin.flush()
            time.sleep(0.5 + (i % 5) * 0.1)  # not in step with the sync loop
        app.stdin.close()
        app_out = json.loads(app.stdout.read().strip().splitlines()[-1])
    finally:
        stop.set()
        for t in threads:
            t.join()
        app.wait(timeout=60)
    load_rate = sum(appended) / (time.perf_counter() - load_t0)
    fresh = sorted(app_out["fresh"])
    store_mb = sum(f.stat().st_size for f in store.tenant_dir(tenant.id, data_dir).glob("*.parquet")) / 2**20
    db.close()
    return {
        "benchmark": "analytics",
        "events": total_events,
        "orders": orders,
        "fill_s": round(fill_s, 1),
        "sync_s": round(sync_s, 2),
        "sync_events_per_s": round(synced / sync_s),
        "store_mb": round(store_mb, 1),
        "connect_s": round(connect_s, 2),
        "report_rows": [duck_rows, pg_rows],
        "duckdb_ms": duck_ms,
        "reports_over_time_ms": page_ms,
        "postgres_ms": pg_ms,
        "speedup": round(pg_ms / duck_ms, 1),
        "load_events_per_s": round(load_rate),
        "syncs_under_load": len(syncs),
        "sync_under_load_p99_s": round(_percentile(sorted(syncs), 0.99), 2),
        "held_back_max_events": max(held),  # after a sync, not yet readable (an older transaction runs)
        "freshness_s": round(_percentile(fresh, 0.99), 2),
        "freshness_p50_s": round(fresh[len(fresh) // 2], 2),
        "freshness_probes_s": [round(f, 2) for f in fresh],
        "app_refresh_p99_ms": round(_percentile(sorted(app_out["refresh_s"]), 0.99) * 1000, 1),
        # the names the figures had before (same measurements)
        "duckdb_query_ms": duck_ms,
        "pg_query_ms": pg_ms,
        "freshness_p99_ms": round(_percentile(fresh, 0.99) * 1000, 1),
        "app_connect_s": round(app_out["connect_s"], 2),
        "app_rss_mb": round(app_out["rss_first_mb"], 1),
        "app_rss_end_mb": round(app_out["rss_last_mb"], 1),
        "app_rss_peak_mb": round(app_out["rss_peak_mb"], 1),
        "data_dir": str(data_dir),
        "cores": os.cpu_count(),
    }
