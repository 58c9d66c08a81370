"""The per-tenant analytic store: immutable Parquet segments plus an atomically swapped manifest.

Layout, one directory per tenant (never shared, so a tenant's connection cannot reach another's data):

    <data_dir>/analytics/<tenant_id>/
        manifest.json                     the pointer: segment files per table + the follower checkpoint
        00000001-order_facts.parquet      immutable segments, one set per sync batch (seq-numbered)
        00000001-order_lines.parquet
        ...

Writer (the worker's `analytics` job, `sync`): under a transaction-scoped advisory lock (one writer per
tenant and store directory, so any number of workers can run the job), read the next batch with
`eventstore.read_after` from the checkpoint kept in the manifest, flatten it into append-only fact tables,
write each as a new Parquet file (temp name, then os.replace), then write the new manifest (temp file,
fsync, os.replace). The manifest names both the segments and the checkpoint,
so data and checkpoint change together: a crash before the swap leaves the old manifest (the orphan
segment is overwritten by the next attempt, which reuses its sequence number); a crash after it loses
nothing. When segments pile up they are compacted into one file per table; the replaced files stay on
disk for GRACE_SECONDS (listed as `retired` in the manifest) so a reader that read the old manifest can
still load them, then a later sync deletes them.

Readers (the app, `connect`): read the manifest once, load the listed files into an in-memory DuckDB
(tables, not views over files, because views over files stop working once external access is off),
add the derived views, then `enable_external_access = false`, no extension autoloading, and
`lock_configuration = true`. No DuckDB database file exists, so DuckDB's one-writer file lock never
comes into play, and a reader always sees exactly one manifest's state (never half a batch).

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
Views: orders (current state per order, derived with arg_max over the stream version), order_events,
products (sku, name, category, price, active: latest value of each column per SKU), customers
(customer_id, name, email, created_at, active).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
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

TS = pa.timestamp("us")  # UTC, without zone: DuckDB reads it as TIMESTAMP and ::date is the UTC day
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

VIEWS = (
    "CREATE VIEW orders AS SELECT order_id,"
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
    " coalesce(sum(amount) FILTER (WHERE event_type = 'OrderPaid'), 0) AS paid_amount,"
    " coalesce(sum(amount) FILTER (WHERE event_type = 'RefundIssued'), 0) AS refunded_amount"
    " FROM order_facts GROUP BY order_id HAVING count(*) FILTER (WHERE event_type = 'OrderPlaced') > 0",
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


def sync(db: Database, tenant_id: object, data_dir: Path | str | None = None, batch: int = 50_000) -> int:
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
            cp = manifest["checkpoint"]
            events = es.read_after(conn, int(cp["txid"]), int(cp["position"]), batch)
            if events:
                _append_segment(directory, manifest, events)
            _maintain(directory, manifest)
        total += len(events)
        if len(events) < batch:
            return total


def _append_segment(directory: Path, manifest: dict[str, Any], events: list[es.RecordedEvent]) -> None:
    seq = manifest["seq"] + 1
    for table, rows in flatten(events).items():
        if rows:
            name = f"{seq:08d}-{table}.parquet"
            _write_parquet(directory / name, pa.Table.from_pylist(rows, schema=SCHEMAS[table]))
            manifest["segments"][table].append(name)
    manifest["seq"] = seq
    manifest["checkpoint"] = {"txid": events[-1].txid, "position": events[-1].position}
    manifest["events"] += len(events)
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
    """Compact tables with many segments; delete retired files once their grace period is over."""
    now = time.time()
    changed = False
    for table, files in manifest["segments"].items():
        if len(files) <= COMPACT_AFTER:
            continue
        seq = manifest["seq"] + 1
        name = f"{seq:08d}-{table}.parquet"
        schema = SCHEMAS[table]
        merged = pa.concat_tables(
            [pq.read_table(directory / f).select(schema.names).cast(schema) for f in files]
        )
        _write_parquet(directory / name, merged)
        manifest["segments"][table] = [name]
        manifest["retired"] += [{"file": f, "at": now} for f in files]
        manifest["seq"] = seq
        changed = True
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


def connect(tenant_id: object, data_dir: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB holding only this tenant's analytic data, with external access off and
    the configuration locked: report and workbench queries can read nothing else."""
    tid = as_tenant_id(tenant_id)
    directory = tenant_dir(tid, data_dir)
    for attempt in range(3):
        manifest = read_manifest(directory, tid)
        con = duckdb.connect(":memory:")
        try:
            _load(con, directory, manifest)
            break
        except (duckdb.IOException, FileNotFoundError):
            con.close()  # a file retired and deleted since the manifest was read (a very slow reader)
            if attempt == 2:
                raise
    for stmt in VIEWS:
        con.execute(stmt)
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _load(con: duckdb.DuckDBPyConnection, directory: Path, manifest: dict[str, Any]) -> None:
    for table, schema in SCHEMAS.items():
        empty = schema.empty_table()  # noqa: F841 - read by DuckDB's replacement scan below
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
        files = [str(directory / f) for f in manifest["segments"][table]]
        if files:
            con.execute(
                f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?, union_by_name = true)", [files]
            )


def checkpoint(tenant_id: object, data_dir: Path | str | None = None) -> tuple[int, int]:
    """The (txid, position) the store is synced up to."""
    tid = as_tenant_id(tenant_id)
    cp = read_manifest(tenant_dir(tid, data_dir), tid)["checkpoint"]
    return int(cp["txid"]), int(cp["position"])


def status(tenant_id: object, data_dir: Path | str | None = None) -> dict[str, Any]:
    """What the app shows and caches by: the manifest's seq (it changes with every sync that took
    events), the events it holds and when it was last swapped in (None before the first sync)."""
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
