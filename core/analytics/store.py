"""The per-tenant analytic store: immutable Parquet segments plus an atomically swapped manifest.

Layout, one directory per tenant (never shared, so a tenant's connection cannot reach another's data):

    <data_dir>/analytics/<tenant_id>/
        manifest.json                     the pointer: segment files per table + the follower checkpoint
        00000001-order_facts.parquet      immutable segments, one set per sync batch (seq-numbered)
        00000001-order_lines.parquet
        ...

Writer (the worker's `analytics` job, `sync`): under a transaction-scoped advisory lock (one writer per
tenant and store directory, so any number of workers can run the job), read the next batch after the
checkpoint kept in the manifest, flattened into append-only fact tables by the server (`read_flat`: the
same events as `eventstore.read_after`, one COPY per table into Arrow; `read_python` with `flatten` when
an upcaster is registered or the batch holds a shape the server path does not parse), write each table
as a new Parquet file (temp name, then os.replace), then write the new manifest (temp file, fsync,
os.replace). The manifest names both the segments and the checkpoint, so data and checkpoint change
together: a crash before the swap leaves the old manifest (the orphan segment is overwritten by the next
attempt, which reuses its sequence number); a crash after it loses nothing. When segments pile up they
are compacted into one file per table (`merged` names the files each merged one holds, in order); the
replaced files stay on disk for GRACE_SECONDS (listed as `retired` in the manifest) so a reader that read
the old manifest can still load them, then a later sync deletes them.

Readers (the app's `Reader`, kept per tenant; `connect` for a one-off): load the listed files into an
in-memory DuckDB (tables, not views over files: those stop working once external access is off), fold
`orders` into a table, add the derived views, then `enable_external_access = false`, no extension
autoloading, no Python replacement scans, and `lock_configuration = true`. When the manifest changes a
Reader appends only the new files' rows and refolds the orders they touch, in one transaction. No DuckDB
database file exists, so DuckDB's one-writer file lock never comes into play, and a query always sees
exactly one manifest's state (never half a batch).

Tables (append-only facts; every timestamp is UTC without zone):
    order_facts        one row per order event (txid, position, version, order_id, event_type, status, at,
                       amount, number, channel, customer_id, customer_name, currency, subtotal, tax,
                       shipping_fee, total, warehouse, carrier, tracking)
    order_lines        from OrderPlaced (order_id, line_no, sku, name, quantity, unit_price, line_total,
                       placed_at, channel)
    payment_attempts   PaymentAttemptFailed and gateway-paid OrderPaid (position, order_id, payment_id,
                       attempt, gateway, outcome, code, amount, at)
    stock_movements    the stock projection's changes (position, line, sku, warehouse, kind, on_hand_change,
                       reserved_change, reason, order_id, at)
    order_allocations  from OrderReserved (order_id, sku, warehouse, quantity, at, position); an order
                       reserved again after a failed payment has a row per reservation
    product_facts      Product{Added,Updated,Deactivated,Reactivated} (position, sku, name, category, price,
                       active, event_type, at); an update carries only the changed fields (others NULL)
    customer_facts     Customer{Added,Updated,Deactivated,Reactivated} (position, customer_id, name, email,
                       event_type, at)
    orders             the current state per order (ORDERS: arg_max over the stream version), a table in
                       the reader only
Views: order_events, products (sku, name, category, price, active: latest value of each column per SKU),
customers (customer_id, name, email, created_at, active).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import eventstore as es
from core.db import Database, as_tenant_id
from core.inventory import STOCK

MANIFEST = "manifest.json"
# 2: order_allocations, product_facts and customer_facts. A store written in an older format still loads
# (its missing tables are empty); the next sync rebuilds it from the start of the log in the new format.
FORMAT_VERSION = 2
GRACE_SECONDS = 300.0
COMPACT_AFTER = 64  # segments per table before they are merged into one
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"
ORDER_PREFIXES = ("Order", "Reservation", "Return", "Refund", "Payment")
# event type: the active flag it sets (None: leaves it as it was)
PRODUCT_EVENTS = {
    "ProductAdded": True,
    "ProductUpdated": None,
    "ProductDeactivated": False,
    "ProductReactivated": True,
}
CUSTOMER_EVENTS = ("CustomerAdded", "CustomerUpdated", "CustomerDeactivated", "CustomerReactivated")

# What a reader's connection may not do, set last (lock_configuration then refuses any other SET).
LOCKDOWN = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET python_enable_replacements = false",  # no reading of the app's Python objects by name
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)

TS = pa.timestamp("us")  # UTC, without zone: DuckDB reads it as TIMESTAMP and ::date is the UTC day
ZONED = pa.timestamp("us", tz="UTC")
SCHEMAS: dict[str, pa.Schema] = {
    "order_facts": pa.schema(
        [
            ("txid", pa.int64()),
            ("position", pa.int64()),
            ("version", pa.int64()),
            ("order_id", pa.string()),
            ("event_type", pa.string()),
            ("status", pa.string()),
            ("at", TS),
            ("amount", pa.int64()),
            ("number", pa.int64()),
            ("channel", pa.string()),
            ("customer_id", pa.string()),
            ("customer_name", pa.string()),
            ("currency", pa.string()),
            ("subtotal", pa.int64()),
            ("tax", pa.int64()),
            ("shipping_fee", pa.int64()),
            ("total", pa.int64()),
            ("warehouse", pa.string()),
            ("carrier", pa.string()),
            ("tracking", pa.string()),
        ]
    ),
    "order_lines": pa.schema(
        [
            ("order_id", pa.string()),
            ("line_no", pa.int32()),
            ("sku", pa.string()),
            ("name", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.int64()),
            ("line_total", pa.int64()),
            ("placed_at", TS),
            ("channel", pa.string()),
        ]
    ),
    "payment_attempts": pa.schema(
        [
            ("position", pa.int64()),
            ("order_id", pa.string()),
            ("payment_id", pa.string()),
            ("attempt", pa.int64()),
            ("gateway", pa.string()),
            ("outcome", pa.string()),
            ("code", pa.string()),
            ("amount", pa.int64()),
            ("at", TS),
        ]
    ),
    "stock_movements": pa.schema(
        [
            ("position", pa.int64()),
            ("line", pa.int32()),
            ("sku", pa.string()),
            ("warehouse", pa.string()),
            ("kind", pa.string()),
            ("on_hand_change", pa.int64()),
            ("reserved_change", pa.int64()),
            ("reason", pa.string()),
            ("order_id", pa.string()),
            ("at", TS),
        ]
    ),
    "order_allocations": pa.schema(
        [
            ("order_id", pa.string()),
            ("sku", pa.string()),
            ("warehouse", pa.string()),
            ("quantity", pa.int64()),
            ("at", TS),
            ("position", pa.int64()),
        ]
    ),
    "product_facts": pa.schema(
        [
            ("position", pa.int64()),
            ("sku", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("price", pa.int64()),
            ("active", pa.bool_()),
            ("event_type", pa.string()),
            ("at", TS),
        ]
    ),
    "customer_facts": pa.schema(
        [
            ("position", pa.int64()),
            ("customer_id", pa.string()),
            ("name", pa.string()),
            ("email", pa.string()),
            ("event_type", pa.string()),
            ("at", TS),
        ]
    ),
}

# The current state of each order (the reader keeps it as a table, see Reader).
ORDERS = (
    "SELECT order_id,"
    " any_value(number) FILTER (WHERE event_type = 'OrderPlaced') AS number,"
    " min(\"at\") FILTER (WHERE event_type = 'OrderPlaced') AS placed_at,"
    " any_value(channel) FILTER (WHERE event_type = 'OrderPlaced') AS channel,"
    " any_value(customer_id) FILTER (WHERE event_type = 'OrderPlaced') AS customer_id,"
    " any_value(customer_name) FILTER (WHERE event_type = 'OrderPlaced') AS customer_name,"
    " any_value(currency) FILTER (WHERE event_type = 'OrderPlaced') AS currency,"
    " any_value(subtotal) FILTER (WHERE event_type = 'OrderPlaced') AS subtotal,"
    " any_value(tax) FILTER (WHERE event_type = 'OrderPlaced') AS tax,"
    " any_value(shipping_fee) FILTER (WHERE event_type = 'OrderPlaced') AS shipping_fee,"
    " any_value(total) FILTER (WHERE event_type = 'OrderPlaced') AS total,"
    " arg_max(status, version) FILTER (WHERE status IS NOT NULL) AS status,"
    " max(\"at\") FILTER (WHERE event_type = 'OrderPaid') AS paid_at,"
    " max(\"at\") FILTER (WHERE event_type = 'OrderShipped') AS shipped_at,"
    " max(\"at\") FILTER (WHERE event_type = 'OrderDelivered') AS delivered_at,"
    " max(\"at\") FILTER (WHERE event_type = 'OrderCancelled') AS cancelled_at,"
    " coalesce(sum(amount) FILTER (WHERE event_type = 'OrderPaid'), 0)::BIGINT AS paid_amount,"
    " coalesce(sum(amount) FILTER (WHERE event_type = 'RefundIssued'), 0)::BIGINT AS refunded_amount"
    " FROM {facts} GROUP BY order_id HAVING count(*) FILTER (WHERE event_type = 'OrderPlaced') > 0"
)
VIEWS = (
    'CREATE VIEW order_events AS SELECT position, order_id, event_type, status, "at" FROM order_facts',
    # Latest state per SKU: an update carries only the changed fields, so each column is folded on its own
    # (the value of the latest event that has one).
    "CREATE VIEW products AS SELECT sku,"
    " arg_max(name, position) FILTER (WHERE name IS NOT NULL) AS name,"
    " arg_max(category, position) FILTER (WHERE category IS NOT NULL) AS category,"
    " arg_max(price, position) FILTER (WHERE price IS NOT NULL) AS price,"
    " arg_max(active, position) FILTER (WHERE active IS NOT NULL) AS active"
    " FROM product_facts GROUP BY sku HAVING count(*) FILTER (WHERE event_type = 'ProductAdded') > 0",
    "CREATE VIEW customers AS SELECT customer_id,"
    " arg_max(name, position) FILTER (WHERE name IS NOT NULL) AS name,"
    " arg_max(email, position) FILTER (WHERE email IS NOT NULL) AS email,"
    ' min("at") AS created_at,'
    " arg_max(CASE event_type WHEN 'CustomerDeactivated' THEN false ELSE true END, position)"
    " FILTER (WHERE event_type <> 'CustomerUpdated') AS active"
    " FROM customer_facts GROUP BY customer_id"
    " HAVING count(*) FILTER (WHERE event_type = 'CustomerAdded') > 0",
)

REVENUE_BY_DAY = (
    "SELECT placed_at::date AS day, channel, count(*) AS orders,"
    " sum(paid_amount - refunded_amount) AS revenue FROM orders"
    " WHERE status <> 'rejected' AND ($since IS NULL OR placed_at::date >= $since)"
    " AND ($until IS NULL OR placed_at::date < $until)"
    " GROUP BY ALL ORDER BY day, channel"
)

# Flattening on the server: one query per table over the batch's events, fetched with COPY as CSV and
# parsed by pyarrow into the table's schema. `e` holds exactly the rows oms_read_after returned for the
# batch: everything after the cursor up to the batch's last event, all of it committed below the snapshot
# xmin the batch was cut at, so every later statement, on any connection, sees the same rows. The position
# range only lets the planner use the primary key; it removes nothing. Times travel as text and pyarrow
# parses them (parsing them in PostgreSQL cost more than the rest of a query).
BATCH_END = (
    "SELECT txid::text, position, count(*) OVER (), min(position) OVER (), max(position) OVER ()"
    " FROM oms_read_after(%(txid)s::xid8, %(position)s, %(limit)s) ORDER BY txid DESC, position DESC LIMIT 1"
)
BATCH = """WITH e AS NOT MATERIALIZED (
    SELECT txid::text AS txid, position, version, event_type, data AS d,
           coalesce(data->>'at', recorded_at::text) AS at
    FROM events WHERE tenant_id = (SELECT oms_current_tenant()) AND position BETWEEN %(lo)s AND %(hi)s
      AND (txid, position) > (%(txid)s::xid8, %(position)s)
      AND (txid, position) <= (%(end_txid)s::xid8, %(end)s)
), o AS (
    SELECT e.*, d->>'order_id' AS order_id FROM e
    WHERE event_type ^@ ANY (%(prefixes)s) AND nullif(d->>'order_id', '') IS NOT NULL
)
"""
SERVER_FLATTEN = {
    "order_facts": """
SELECT txid, position, version, order_id, event_type, d->>'status', at,
       CASE WHEN event_type IN ('OrderPaid', 'RefundIssued') THEN d->>'amount' END,
       p->>'number', p->>'channel', p->>'customer_id', p->>'customer_name', p->>'currency',
       p->>'subtotal', p->>'tax', p->>'shipping_fee', p->>'total',
       s->>'warehouse', s->>'carrier', s->>'tracking'
FROM o, LATERAL (SELECT CASE WHEN event_type = 'OrderPlaced' THEN d END AS p,
                        CASE WHEN event_type = 'OrderShipped' THEN d END AS s) x""",
    "order_lines": """
SELECT order_id, coalesce((l->>'line_no')::int, n), l->>'sku', l->>'name', l->>'quantity', l->>'unit_price',
       (l->>'quantity')::bigint * (l->>'unit_price')::bigint, at, d->>'channel'
FROM o, jsonb_array_elements(d->'lines') WITH ORDINALITY AS x (l, n) WHERE event_type = 'OrderPlaced'""",
    "payment_attempts": """
SELECT position, order_id, d->>'payment_id', d->>'attempt',
       CASE WHEN event_type = 'PaymentAttemptFailed' THEN nullif(d->>'gateway', '')
            ELSE coalesce(nullif(d->>'gateway', ''), d->>'method') END,
       CASE WHEN event_type = 'PaymentAttemptFailed' THEN d->>'outcome' ELSE 'captured' END,
       d->>'code', d->>'amount', at
FROM o WHERE event_type = 'PaymentAttemptFailed'
   OR (event_type = 'OrderPaid' AND nullif(d->>'payment_id', '') IS NOT NULL)""",
    # StockProjection.changes (core/inventory.py) in SQL; tests/test_analytics_sync.py keeps them equal.
    "stock_movements": """
SELECT position, n - 1, coalesce(x->>'sku', d->>'sku'),
       CASE WHEN event_type = 'StockTransferred' THEN d->>(CASE n WHEN 1 THEN 'source' ELSE 'destination' END)
            WHEN event_type IN ('OrderShipped', 'ReturnReceived', 'StockReceived', 'StockAdjusted')
            THEN d->>'warehouse' ELSE x->>'warehouse' END,
       CASE event_type WHEN 'StockReceived' THEN 'receive' WHEN 'StockAdjusted' THEN 'adjust'
            WHEN 'StockTransferred' THEN (CASE n WHEN 1 THEN 'transfer_out' ELSE 'transfer_in' END)
            WHEN 'OrderReserved' THEN 'reserve' WHEN 'ReservationExpired' THEN 'expire'
            WHEN 'OrderShipped' THEN 'ship' WHEN 'ReturnReceived' THEN 'return' ELSE 'release' END,
       CASE event_type WHEN 'StockReceived' THEN (d->>'quantity')::bigint
            WHEN 'StockAdjusted' THEN (d->>'change')::bigint
            WHEN 'StockTransferred' THEN (CASE n WHEN 1 THEN -1 ELSE 1 END) * (d->>'quantity')::bigint
            WHEN 'OrderShipped' THEN -(x->>'quantity')::bigint
            WHEN 'ReturnReceived' THEN (x->>'quantity')::bigint
            ELSE 0 END,
       CASE WHEN event_type = 'OrderReserved' THEN (x->>'quantity')::bigint
            WHEN event_type IN ('OrderCancelled', 'ReservationExpired', 'PaymentFailed', 'OrderShipped')
            THEN -(x->>'quantity')::bigint ELSE 0 END,
       CASE event_type WHEN 'StockAdjusted' THEN d->>'reason' WHEN 'OrderShipped' THEN d->>'tracking'
            WHEN 'StockTransferred' THEN (CASE n WHEN 1 THEN 'to ' || (d->>'destination')
                                                ELSE 'from ' || (d->>'source') END)
            ELSE '' END,
       nullif(d->>'order_id', ''), at
FROM e, jsonb_array_elements(CASE event_type
        WHEN 'OrderReserved' THEN d->'allocations' WHEN 'OrderShipped' THEN d->'items'
        WHEN 'ReturnReceived' THEN d->'items' WHEN 'StockTransferred' THEN '[{}, {}]'
        WHEN 'StockReceived' THEN '[{}]' WHEN 'StockAdjusted' THEN '[{}]' ELSE d->'released' END)
     WITH ORDINALITY AS i (x, n)
WHERE event_type IN ('StockReceived', 'StockAdjusted', 'StockTransferred', 'OrderReserved', 'OrderCancelled',
                     'ReservationExpired', 'PaymentFailed', 'OrderShipped', 'ReturnReceived')""",
    "order_allocations": """
SELECT order_id, a->>'sku', a->>'warehouse', a->>'quantity', at, position
FROM o, jsonb_array_elements(d->'allocations') AS a WHERE event_type = 'OrderReserved'""",
    "product_facts": """
SELECT position, d->>'sku', d->>'name', d->>'category', d->>'price',
       CASE event_type WHEN 'ProductUpdated' THEN NULL ELSE event_type <> 'ProductDeactivated' END,
       event_type, at
FROM e WHERE event_type IN ('ProductAdded', 'ProductUpdated', 'ProductDeactivated', 'ProductReactivated')
  AND nullif(d->>'sku', '') IS NOT NULL""",
    "customer_facts": """
SELECT position, d->>'customer_id', d->>'name', d->>'email', event_type, at
FROM e WHERE event_type IN ('CustomerAdded', 'CustomerUpdated', 'CustomerDeactivated', 'CustomerReactivated')
  AND nullif(d->>'customer_id', '') IS NOT NULL""",
}


# Paths and the manifest


def tenant_dir(tenant_id: object, data_dir: Path | str | None = None) -> Path:
    if data_dir is None:
        from core.settings import get_settings

        data_dir = get_settings().data_dir
    return Path(data_dir) / "analytics" / str(as_tenant_id(tenant_id))


def empty_manifest(tid: uuid.UUID) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "tenant_id": str(tid),
        "seq": 0,
        "checkpoint": {"txid": 0, "position": 0},
        "events": 0,
        "segments": {t: [] for t in SCHEMAS},
        "retired": [],
    }


def read_manifest(directory: Path, tid: uuid.UUID) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return empty_manifest(tid)
    if manifest.get("tenant_id") != str(tid):
        raise RuntimeError(f"analytic store at {directory} belongs to another tenant")
    for table in SCHEMAS:
        manifest["segments"].setdefault(table, [])
    return manifest


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# Flattening events into rows


def _ts(value: Any, default: datetime) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = default
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def flatten(events: list[es.RecordedEvent]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in SCHEMAS}
    for e in events:
        d = e.data
        at = _ts(d.get("at"), e.recorded_at)
        oid = d.get("order_id")
        if oid and e.event_type.startswith(ORDER_PREFIXES):
            fact = {
                "txid": e.txid,
                "position": e.position,
                "version": e.version,
                "order_id": str(oid),
                "event_type": e.event_type,
                "status": d.get("status"),
                "at": at,
                "amount": d.get("amount") if e.event_type in ("OrderPaid", "RefundIssued") else None,
            }
            if e.event_type == "OrderPlaced":
                for k in ("number", "channel", "customer_id", "customer_name", "currency"):
                    fact[k] = d.get(k)
                for k in ("subtotal", "tax", "shipping_fee", "total"):
                    fact[k] = d.get(k)
                for n, line in enumerate(d.get("lines", []), 1):
                    rows["order_lines"].append(
                        {
                            "order_id": str(oid),
                            "line_no": line.get("line_no", n),
                            "sku": line["sku"],
                            "name": line.get("name"),
                            "quantity": line["quantity"],
                            "unit_price": line["unit_price"],
                            "line_total": line["quantity"] * line["unit_price"],
                            "placed_at": at,
                            "channel": d.get("channel"),
                        }
                    )
            elif e.event_type == "OrderShipped":
                fact |= {k: d.get(k) for k in ("warehouse", "carrier", "tracking")}
            rows["order_facts"].append(fact)
            if e.event_type == "PaymentAttemptFailed" or (
                e.event_type == "OrderPaid" and d.get("payment_id")
            ):
                failed = e.event_type == "PaymentAttemptFailed"
                rows["payment_attempts"].append(
                    {
                        "position": e.position,
                        "order_id": str(oid),
                        "payment_id": d.get("payment_id"),
                        "attempt": d.get("attempt"),
                        "gateway": d.get("gateway") or (None if failed else d.get("method")),
                        "outcome": d.get("outcome") if failed else "captured",
                        "code": d.get("code"),
                        "amount": d.get("amount"),
                        "at": at,
                    }
                )
            if e.event_type == "OrderReserved":
                for a in d.get("allocations") or ():
                    rows["order_allocations"].append(
                        {
                            "order_id": str(oid),
                            "sku": a["sku"],
                            "warehouse": a["warehouse"],
                            "quantity": a["quantity"],
                            "at": at,
                            "position": e.position,
                        }
                    )
        elif e.event_type in PRODUCT_EVENTS and d.get("sku"):
            rows["product_facts"].append(
                {
                    "position": e.position,
                    "sku": d["sku"],
                    "name": d.get("name"),
                    "category": d.get("category"),
                    "price": d.get("price"),
                    "active": PRODUCT_EVENTS[e.event_type],
                    "event_type": e.event_type,
                    "at": at,
                }
            )
        elif e.event_type in CUSTOMER_EVENTS and d.get("customer_id"):
            rows["customer_facts"].append(
                {
                    "position": e.position,
                    "customer_id": str(d["customer_id"]),
                    "name": d.get("name"),
                    "email": d.get("email"),
                    "event_type": e.event_type,
                    "at": at,
                }
            )
        try:
            moves = STOCK.movements(e, at)
        except (KeyError, TypeError):  # an order event of an older shape without stock detail
            moves = []
        rows["stock_movements"] += [m | {"order_id": str(oid) if oid else None} for m in moves]
    return rows


# The writer


def sync(db: Database, tenant_id: object, data_dir: Path | str | None = None, batch: int = 250_000) -> int:
    """Bring the tenant's analytic store up to date with its event log; return how many events it took.

    One segment set and one manifest swap per batch. A second writer on the same tenant at the same time
    finds the advisory lock taken and returns what it did so far (0)."""
    tid = as_tenant_id(tenant_id)
    directory = tenant_dir(tid, data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lock_key = f"analytics:{tid}:{directory.resolve()}"  # one writer per store directory
    total = 0
    while True:
        with db.tenant(tid) as conn:
            if not conn.execute(TRY_LOCK, [lock_key]).fetchone()[0]:
                return total
            manifest = read_manifest(directory, tid)  # read under the lock: no other writer changes it
            if manifest.get("format", 1) < FORMAT_VERSION:
                manifest = _restart(manifest, tid)
            txid, position = int(manifest["checkpoint"]["txid"]), int(manifest["checkpoint"]["position"])
            # The server cannot upcast: with an upcaster registered, flatten upcast events in Python.
            flat = None if es.UPCASTERS else read_flat(db, tid, conn, txid, position, batch)
            count, end, tables = flat or read_python(conn, txid, position, batch)
            if count:
                _append_segment(directory, manifest, tables, count, end)
            _maintain(directory, manifest)
        total += count
        if count < batch:
            return total


Batch = tuple[int, dict[str, int], dict[str, pa.Table]]  # events, the cursor after them, rows per table
# recorded_at as text in UTC; compiling and parallel workers cost more than they save on these queries
FLAT_SETTINGS = (
    b"SET LOCAL timezone = 'UTC'; SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0"
)


def read_flat(db: Database, tid: uuid.UUID, conn, txid: int, position: int, limit: int) -> Batch | None:
    """The next batch after the cursor (the events es.read_after returns), flattened by the server, two
    tables at a time on tenant connections of their own (two more from the pool while `conn` holds the
    lock). None: the batch holds a shape this path does not parse (a time without offset): read it in
    Python."""
    row = conn.execute(BATCH_END, {"txid": str(txid), "position": position, "limit": limit}).fetchone()
    if row is None:
        return 0, {}, {}
    end_txid, end, count, lo, hi = row
    params = {"txid": str(txid), "position": position, "end_txid": end_txid, "end": end, "lo": lo, "hi": hi}
    params["prefixes"] = list(ORDER_PREFIXES)

    def fetch(table: str) -> pa.Table:
        buf = io.BytesIO()
        with db.tenant(tid) as c:
            c.execute(FLAT_SETTINGS)
            with c.cursor().copy(
                f"COPY ({BATCH}{SERVER_FLATTEN[table]}) TO STDOUT (FORMAT csv)", params
            ) as cp:
                while data := cp.read():
                    buf.write(data)
        return _parse_csv(buf.getvalue(), SCHEMAS[table])

    try:
        with ThreadPoolExecutor(2) as pool:
            tables = dict(zip(SERVER_FLATTEN, pool.map(fetch, SERVER_FLATTEN), strict=True))
    except pa.ArrowInvalid:
        return None
    return count, {"txid": int(end_txid), "position": end}, tables


def _parse_csv(data: bytes, schema: pa.Schema) -> pa.Table:
    if not data:
        return schema.empty_table()
    # times parsed as UTC instants (each carries its offset), then stored without zone
    aware = pa.schema([pa.field(f.name, ZONED) if f.type == TS else f for f in schema])
    rows = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=schema.names),
        # COPY writes NULL unquoted and an empty string quoted
        convert_options=pacsv.ConvertOptions(
            column_types=aware,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return rows.cast(schema)


def read_python(conn, txid: int, position: int, limit: int) -> Batch:
    """The next batch through es.read_after (upcast) and `flatten`."""
    events = es.read_after(conn, txid, position, limit)
    if not events:
        return 0, {}, {}
    tables = {t: pa.Table.from_pylist(rows, schema=SCHEMAS[t]) for t, rows in flatten(events).items()}
    return len(events), {"txid": events[-1].txid, "position": events[-1].position}, tables


def _append_segment(
    directory: Path, manifest: dict[str, Any], tables: dict[str, pa.Table], count: int, end: dict[str, int]
) -> None:
    seq = manifest["seq"] + 1
    for table, rows in tables.items():
        if rows.num_rows:
            name = f"{seq:08d}-{table}.parquet"
            _write_parquet(directory / name, rows)
            manifest["segments"][table].append(name)
    manifest["seq"] = seq
    manifest["checkpoint"] = end
    manifest["events"] += count
    _fsync_dir(directory)
    _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())


def _restart(old: dict[str, Any], tid: uuid.UUID) -> dict[str, Any]:
    """A new-format manifest that starts from the beginning of the log; the old segments are retired (and
    deleted after the grace period) once a manifest naming the new ones is written."""
    manifest = empty_manifest(tid)
    manifest["seq"] = old["seq"]  # new segment names never collide with old files still on disk
    now = time.time()
    old_files = [f for files in old["segments"].values() for f in files]
    manifest["retired"] = old.get("retired", []) + [{"file": f, "at": now} for f in old_files]
    return manifest


def _maintain(directory: Path, manifest: dict[str, Any]) -> None:
    """Compact tables with many segments; delete retired files once their grace period is over.

    A merged file is its segments' rows in order; `merged` names them, so a reader that holds them
    already need not read it (Reader)."""
    now = time.time()
    changed = False
    merged = manifest.setdefault("merged", {})
    for table, files in manifest["segments"].items():
        if len(files) <= COMPACT_AFTER:
            continue
        seq = manifest["seq"] + 1
        name = f"{seq:08d}-{table}.parquet"
        schema = SCHEMAS[table]
        rows = pa.concat_tables(
            [pq.read_table(directory / f).select(schema.names).cast(schema) for f in files]
        )
        _write_parquet(directory / name, rows)
        manifest["segments"][table] = [name]
        manifest["retired"] += [{"file": f, "at": now} for f in files]
        manifest["seq"] = seq
        merged[name] = files
        changed = True
    listed = {f for files in manifest["segments"].values() for f in files}
    for name in set(merged) - listed:
        del merged[name]
    expired = [r for r in manifest["retired"] if now - r["at"] > GRACE_SECONDS]
    if expired:
        manifest["retired"] = [r for r in manifest["retired"] if now - r["at"] <= GRACE_SECONDS]
        changed = True
    if changed:
        _fsync_dir(directory)
        _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    for r in expired:  # only after the manifest that no longer lists them is in place
        (directory / r["file"]).unlink(missing_ok=True)


# The reader


class Reader:
    """One tenant's analytic data in an in-memory DuckDB, for a process that keeps it (the app).

    The first refresh loads every segment file the manifest lists; a later one, when the manifest has
    changed, appends only the rows of the new files (a merged file holds the rows of files already loaded,
    so it is not read again) and folds `orders` again only for the orders those rows touch, all in one
    transaction: a query sees one manifest's state, never half of one. When the files no longer follow on
    from what was loaded (a rebuilt store) it loads everything into a new database.

    New segments are read by pyarrow and inserted from Arrow on the reader's own connection, so the
    database runs with external access off and the configuration locked once loaded: report and workbench
    queries (on cursors, one per thread) can read nothing else."""

    def __init__(self, tenant_id: object, data_dir: Path | str | None = None) -> None:
        self.tid = as_tenant_id(tenant_id)
        self.directory = tenant_dir(self.tid, data_dir)
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._previous: duckdb.DuckDBPyConnection | None = None  # open for cursors still reading it
        self._seq: int | None = None
        self._events = 0  # how many of the log's events the loaded state holds
        self._loaded: dict[str, list[str]] = {}  # per table: the manifest's files its rows came from

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the current state (refreshed first if the manifest changed)."""
        with self._lock:
            return self._refresh().cursor()

    def cursor_at(self) -> tuple[duckdb.DuckDBPyConnection, int]:
        """A cursor on the current state and how many events that state holds (the two taken together:
        a figure can say how up to date it is)."""
        with self._lock:
            return self._refresh().cursor(), self._events

    def refresh(self) -> duckdb.DuckDBPyConnection:
        """The reader's own connection, refreshed (connect() hands it out; threads take cursors)."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> duckdb.DuckDBPyConnection:
        for attempt in range(3):
            manifest = read_manifest(self.directory, self.tid)
            if self._db is not None and manifest["seq"] == self._seq:
                return self._db
            new = self._new_files(manifest) if self._db is not None and attempt == 0 else None
            try:
                if new is None:
                    self._previous, self._db = self._db, _load(self.directory, manifest["segments"])
                else:
                    _append(self._db, self.directory, new)
            except (duckdb.IOException, FileNotFoundError):  # deleted since the manifest was read: load again
                if attempt == 2:
                    raise
                continue
            self._seq, self._loaded = manifest["seq"], {t: list(f) for t, f in manifest["segments"].items()}
            self._events = int(manifest["events"])
            return self._db
        raise AssertionError("unreachable")

    def _new_files(self, manifest: dict[str, Any]) -> dict[str, list[str]] | None:
        """Per table, the files whose rows follow on from those loaded; None if they do not follow on."""
        merged = manifest.get("merged", {})
        new = {}
        for table, names in manifest["segments"].items():
            held = self._loaded.get(table, [])
            parts = [part for n in names for part in merged.get(n, [n])]
            if names[: len(held)] == held:
                new[table] = names[len(held) :]
            elif parts[: len(held)] == held:
                new[table] = parts[len(held) :]  # retired by the merge, still on disk for GRACE_SECONDS
            else:
                return None
        return new


def _load(directory: Path, segments: dict[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """A new database holding the files' rows, read by DuckDB itself before external access is off."""
    db = duckdb.connect(":memory:")
    # A compressed in-memory database, checkpointed after each load, holds the tables in a fraction of
    # the memory and is faster to scan; with the default one detached, every cursor uses it.
    db.execute("ATTACH ':memory:' AS store (COMPRESS)")
    db.execute("USE store")
    db.execute("DETACH memory")
    db.execute("SET allocator_background_threads = true")  # gives memory freed after a load back to the OS
    for table, schema in SCHEMAS.items():
        db.register("empty", schema.empty_table())
        db.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
        if files := [str(directory / f) for f in segments[table]]:
            read = "read_parquet(?, union_by_name = true)"
            db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {read}", [files])
            db.execute("CHECKPOINT")  # compressed now, before the next table is read
    db.unregister("empty")
    db.execute(f"CREATE TABLE orders AS {ORDERS.format(facts='order_facts')}")
    db.execute("CHECKPOINT")
    for stmt in VIEWS:
        db.execute(stmt)
    db.execute("CREATE TEMP TABLE touched (order_id VARCHAR)")  # the reader's own: cursors do not see it
    for setting in LOCKDOWN:
        db.execute(setting)
    return db


def _append(db: duckdb.DuckDBPyConnection, directory: Path, files: dict[str, list[str]]) -> None:
    """Insert the files' rows (read by pyarrow: external access is off) and fold `orders` again for the
    orders they touch, in one transaction."""
    # Open them all first: a file deleted since the manifest was read fails here, before any change (an
    # open file stays readable once deleted).
    segments = {t: [pq.ParquetFile(directory / f) for f in names] for t, names in files.items()}
    db.execute("BEGIN")
    try:
        for table, opened in segments.items():
            for f in opened:
                db.register("segment", f.read())
                db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM segment")
                if table == "order_facts":
                    db.execute("INSERT INTO touched SELECT DISTINCT order_id FROM segment")
                db.unregister("segment")
        db.execute("DELETE FROM orders WHERE order_id IN (SELECT order_id FROM touched)")
        touched = "order_facts SEMI JOIN touched USING (order_id)"
        db.execute(f"INSERT INTO orders {ORDERS.format(facts=touched)}")
        db.execute("DELETE FROM touched")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        for f in (f for opened in segments.values() for f in opened):
            f.close()
    db.execute("CHECKPOINT")  # compresses the new rows


def connect(tenant_id: object, data_dir: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB holding only this tenant's analytic data, locked down (see Reader)."""
    return Reader(tenant_id, data_dir).refresh()


def checkpoint(tenant_id: object, data_dir: Path | str | None = None) -> tuple[int, int]:
    """The (txid, position) the store is synced up to."""
    tid = as_tenant_id(tenant_id)
    cp = read_manifest(tenant_dir(tid, data_dir), tid)["checkpoint"]
    return int(cp["txid"]), int(cp["position"])


def status(tenant_id: object, data_dir: Path | str | None = None) -> dict[str, Any]:
    """What the app shows: the manifest's seq (it changes with every sync that took events), the events
    it holds and when it was last swapped in (None before the first sync)."""
    tid = as_tenant_id(tenant_id)
    directory = tenant_dir(tid, data_dir)
    manifest = read_manifest(directory, tid)
    try:
        synced_at = datetime.fromtimestamp((directory / MANIFEST).stat().st_mtime, UTC)
    except FileNotFoundError:
        synced_at = None
    return {"seq": int(manifest["seq"]), "events": int(manifest["events"]), "synced_at": synced_at}


# Reports


def revenue_by_day(con: duckdb.DuckDBPyConnection, since=None, until=None) -> pd.DataFrame:
    """Orders placed per UTC day and channel (rejected ones left out) and their revenue: payments taken
    less refunds, in minor units. since inclusive, until exclusive (dates)."""
    return con.execute(REVENUE_BY_DAY, {"since": since, "until": until}).df()
