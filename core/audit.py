"""Verifiable exports of a tenant's audit trail.

export() seals the tenant's hash chain, then streams one contiguous range of sealed events (by chain
seq) to a CSV, JSON Lines or Parquet file, with a manifest next to it. Each row carries every field
the chain hash covers (core.chain.canonical) and the hash itself, so verify_file() can recompute the
chain from the manifest's prev_hash without the database and name the first event that was edited,
removed, inserted or reordered. Every export is itself an event (AuditTrailExported).

A date range is translated into a seq range (first seq recorded at or after `since` .. last seq
recorded before `until`), so a filtered export is still one unbroken run of the chain. Seq order is
follower (commit) order, so a few events near the edges may fall just outside the dates asked for.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import chain
from core import eventstore as es
from core.commands import Actor, Context, execute, require
from core.db import Database, as_tenant_id
from core.errors import ValidationError

FORMATS = ("csv", "jsonl", "parquet")
FIELDS = (
    "tenant_id",
    "seq",
    "position",
    "stream_id",
    "version",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
    "hash",
)
INT_FIELDS = frozenset({"seq", "position", "version", "schema_version"})
MANIFEST_KIND = "oms-audit-export"
EVENT_TYPE = "AuditTrailExported"

HEAD_SEQ = "SELECT coalesce(max(seq), 0) FROM event_chain"
HASH_AT = "SELECT hash FROM event_chain WHERE seq = %s"
FIRST_SINCE = (
    "SELECT min(c.seq) FROM event_chain c JOIN events e ON e.tenant_id = c.tenant_id"
    " AND e.position = c.position WHERE e.recorded_at >= %s"
)
LAST_BEFORE = (
    "SELECT max(c.seq) FROM event_chain c JOIN events e ON e.tenant_id = c.tenant_id"
    " AND e.position = c.position WHERE e.recorded_at < %s"
)
EXPORT_RANGE = (
    "SELECT c.seq, c.position, c.hash, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version,"
    " e.data, e.metadata, e.recorded_at"
    " FROM event_chain c JOIN events e ON e.tenant_id = c.tenant_id AND e.position = c.position"
    " WHERE c.seq BETWEEN %s AND %s ORDER BY c.seq"
)

# The Audit page's view of the log: newest first, each filter optional.
BROWSE = (
    "SELECT position, recorded_at, event_type, stream_id, version, metadata->>'actor' AS actor, event_id,"
    " data, metadata FROM events"
    " WHERE (%(since)s::timestamptz IS NULL OR recorded_at >= %(since)s)"
    " AND (%(until)s::timestamptz IS NULL OR recorded_at < %(until)s)"
    " AND (cardinality(%(types)s::text[]) = 0 OR event_type = ANY(%(types)s))"
    " AND (%(actor)s::text IS NULL OR metadata->>'actor' ILIKE %(actor)s)"
    " AND (%(order)s::text IS NULL OR stream_id = 'order-' || %(order)s OR data->>'order_id' = %(order)s)"
    " AND (%(customer)s::text IS NULL OR stream_id = 'customer-' || %(customer)s"
    " OR data->>'customer_id' = %(customer)s)"
    " ORDER BY position DESC LIMIT %(limit)s"
)
EVENT_TYPES = "SELECT event_type FROM event_type_counts ORDER BY event_type"
MAX_BROWSE = 1000

Progress = Callable[[int, int], None]


def _like(text: str) -> str:
    """Text matched literally inside ILIKE: its wildcards escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def event_types(db: Database, tenant_id: object, actor: Actor) -> list[str]:
    """The event types the tenant's log holds (as counted by the worker's follower)."""
    require(actor, "audit.export")
    with db.tenant(tenant_id) as conn:
        return [r[0] for r in conn.execute(EVENT_TYPES)]


def browse(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    types: list[str] | tuple[str, ...] = (),
    by: str | None = None,
    order: object = None,
    customer: object = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The tenant's events, newest first, filtered by time, type, actor, order and customer."""
    require(actor, "audit.export")
    start, end = _when(since, "since"), _when(until, "until")
    if start and end and end <= start:
        raise ValidationError("the date range ends before it starts")
    if not isinstance(types, list | tuple) or not all(isinstance(t, str) and len(t) <= 100 for t in types):
        raise ValidationError("event types must be a list of names")
    if by is not None and (not isinstance(by, str) or len(by) > 200):
        raise ValidationError("the actor filter must be text of at most 200 characters")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_BROWSE:
        raise ValidationError(f"limit must be between 1 and {MAX_BROWSE}")
    customer_id = None
    if customer not in (None, ""):
        try:
            customer_id = str(uuid.UUID(str(customer)))
        except ValueError:
            raise ValidationError(f"'{str(customer)[:60]}' is not a customer id") from None
    from core.orders.handlers import resolve_order_id

    with db.tenant(tenant_id) as conn:
        order_id = resolve_order_id(conn, order) if order not in (None, "") else None
        cur = conn.execute(
            BROWSE,
            {
                "since": start,
                "until": end,
                "types": list(types),
                "actor": f"%{_like(by.strip())}%" if by and by.strip() else None,
                "order": order_id,
                "customer": customer_id,
                "limit": limit,
            },
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]


def manifest_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.manifest.json")


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _when(value: object, name: str) -> datetime | None:
    """A bound of the date range: an aware datetime or ISO 8601 text (no zone means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValidationError(f"{name}: '{str(value)[:60]}' is not an ISO 8601 date or time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _check_path(path: str | os.PathLike) -> Path:
    try:
        target = Path(os.fspath(path))
    except TypeError:
        raise ValidationError("the output path must be a file name") from None
    if not target.name or target.is_dir():
        raise ValidationError(f"{target} is a directory; give a file name")
    parent = target.parent
    if not parent.is_dir():
        raise ValidationError(f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValidationError(f"directory {parent} is not writable")
    return target


# --- writers: each takes batches of row dicts and keeps nothing between them --------------------------


class _CsvWriter:
    def __init__(self, path: Path):
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.writer = csv.DictWriter(self.file, fieldnames=FIELDS)
        self.writer.writeheader()

    def write(self, rows: list[dict]) -> None:
        self.writer.writerows(rows)

    def close(self) -> None:
        self.file.close()


class _JsonlWriter:
    def __init__(self, path: Path):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, rows: list[dict]) -> None:
        self.file.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    def close(self) -> None:
        self.file.close()


def _arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [(f, pa.int64()) if f in INT_FIELDS else (f, pa.string()) for f in FIELDS],
        metadata={b"oms": b"audit-export"},
    )


class _ParquetWriter:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.schema = _arrow_schema()
        self.writer = pq.ParquetWriter(str(path), self.schema)

    def write(self, rows: list[dict]) -> None:
        import pyarrow as pa

        self.writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


WRITERS = {"csv": _CsvWriter, "jsonl": _JsonlWriter, "parquet": _ParquetWriter}


def export(
    db: Database,
    tenant_id: object,
    actor: Actor,
    path: str | os.PathLike,
    fmt: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    event_types: object = None,
    progress: Progress | None = None,
    batch: int = 10_000,
) -> dict:
    """Write the tenant's sealed events (one contiguous seq range) to `path` and a manifest beside it,
    record the export as an AuditTrailExported event, and return a summary."""
    require(actor, "audit.export")
    tid = as_tenant_id(tenant_id)
    fmt = str(fmt).strip().lower()
    if fmt not in FORMATS:
        raise ValidationError(f"unknown format '{fmt[:20]}': use csv, jsonl or parquet")
    if event_types:
        raise ValidationError(
            "filtering by event type is not supported: an export is one unbroken chain range"
        )
    start, end = _when(since, "since"), _when(until, "until")
    if start and end and end <= start:
        raise ValidationError("until must be later than since")
    if not isinstance(batch, int) or batch < 1:
        raise ValidationError("batch must be a whole number, 1 or more")
    target = _check_path(path)
    manifest_file = manifest_path(target)
    from core.tenants import get_tenant

    tenant = get_tenant(db, tid)

    chain.seal(db, tid)
    token = uuid.uuid4().hex[:8]
    tmp_data = target.with_name(f".{target.name}.{token}.partial")
    tmp_manifest = target.with_name(f".{manifest_file.name}.{token}.partial")
    try:
        manifest, intact = _write(db, tid, tmp_data, fmt, start, end, progress, batch)
        manifest = {
            "kind": MANIFEST_KIND,
            "version": 1,
            "tenant_id": str(tid),
            "tenant_slug": tenant.slug,
            "tenant_name": tenant.name,
            "file": target.name,
            "format": fmt,
            "since": start.isoformat() if start else None,
            "until": end.isoformat() if end else None,
            **manifest,
            "hash_rule": "sha256(prev_hash || canonical(tenant_id, seq, event)), see core/chain.py",
            "exported_at": datetime.now(UTC).isoformat(),
            "exported_by": actor.name,
            "exported_by_role": actor.role,
        }
        tmp_manifest.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp_data, target)
        os.replace(tmp_manifest, manifest_file)
    finally:
        tmp_data.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)

    data = {
        "exported_by": actor.name,
        "role": actor.role,
        "format": fmt,
        "file": target.name,
        "since": manifest["since"],
        "until": manifest["until"],
        "count": manifest["count"],
        "first_seq": manifest["first_seq"],
        "last_seq": manifest["last_seq"],
        "prev_hash": manifest["prev_hash"],
        "head_hash": manifest["head_hash"],
        "chain_intact": intact,
    }

    def handle(ctx: Context) -> dict:
        recorded = ctx.record(f"audit-{tid}", "audit", [(EVENT_TYPE, data)], None)
        return {**data, "event_id": str(recorded.events[0].event_id)}

    try:
        result = execute(db, tid, actor, "audit.export", None, handle, command="audit_export")
    except BaseException:
        # An export that is not on the record does not exist.
        target.unlink(missing_ok=True)
        manifest_file.unlink(missing_ok=True)
        raise
    return {**result, "path": str(target), "manifest": str(manifest_file)}


def _write(db, tid, tmp: Path, fmt, start, end, progress, batch) -> tuple[dict, bool]:
    """Stream the range into `tmp`; return the manifest's chain fields and whether the rows linked up."""
    tenant = str(tid)
    with db.tenant(tid) as conn:
        head_seq = conn.execute(HEAD_SEQ).fetchone()[0]
        first = conn.execute(FIRST_SINCE, [start]).fetchone()[0] if start else 1
        last = conn.execute(LAST_BEFORE, [end]).fetchone()[0] if end else head_seq
        empty = first is None or last is None or first > min(last, head_seq)
        if empty:
            first = last = None
            at = head_seq
        else:
            last = min(last, head_seq)
            at = first - 1
        row = conn.execute(HASH_AT, [at]).fetchone() if at > 0 else None
        prev_hash = bytes(row[0]) if row else chain.GENESIS
        total = 0 if empty else last - first + 1
        writer = WRITERS[fmt](tmp)
        count, head, previous, intact = 0, prev_hash, prev_hash, True
        try:
            if progress:
                progress(0, total)
            if not empty:
                with conn.cursor(name=f"audit_export_{uuid.uuid4().hex}") as cur:
                    cur.execute(EXPORT_RANGE, [first, last])
                    while rows := cur.fetchmany(batch):
                        out = []
                        for seq, position, stored, stream, version, eid, etype, sv, data, meta, at_ in rows:
                            stored = bytes(stored)
                            event = es.RecordedEvent(
                                position, stream, version, eid, etype, sv, data, meta, at_, 0
                            )
                            previous = chain.link(previous, tenant, seq, event)
                            intact = intact and previous == stored and seq == first + count
                            previous = stored
                            out.append(_row(tenant, seq, event, stored))
                            count += 1
                        head = previous
                        writer.write(out)
                        if progress:
                            progress(count, total)
        finally:
            writer.close()
    fields = {
        "count": count,
        "first_seq": first,
        "last_seq": last,
        "prev_hash": prev_hash.hex(),
        "head_hash": head.hex(),
    }
    return fields, intact and count == total


def _row(tenant: str, seq: int, event: es.RecordedEvent, stored: bytes) -> dict:
    row = chain.fields(tenant, seq, event)
    return {
        **row,
        "data": _json_text(event.data),
        "metadata": _json_text(event.metadata),
        "hash": stored.hex(),
    }


# --- verification, without the database -------------------------------------------------------------


@dataclass(frozen=True)
class FileVerification:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    reason: str | None = None
    count: int = 0
    head_hash: str | None = None  # the hash recomputed up to the last good event


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and str(int(value)) == value:
        return int(value)  # only the form the export writes: "05" or " 5" is an edit
    raise ValueError("not a whole number")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def _event(row: dict) -> tuple[str, int, es.RecordedEvent, str]:
    """(tenant, seq, event, hash) from an exported row; ValueError/KeyError/TypeError if malformed."""
    # Each field must be in the exact form the export writes, so that a byte changed in the file is an
    # edit even where it would parse to the same value (a 7th digit of a second, spaces in JSON).
    text = _str(row["recorded_at"])
    at = datetime.fromisoformat(text)
    if at.tzinfo is None or at.astimezone(UTC).isoformat() != text:
        raise ValueError("recorded_at is not in its exported form")
    data, metadata = json.loads(_str(row["data"])), json.loads(_str(row["metadata"]))
    if _json_text(data) != row["data"] or _json_text(metadata) != row["metadata"]:
        raise ValueError("data or metadata is not in its exported form")
    event = es.RecordedEvent(
        position=_int(row["position"]),
        stream_id=_str(row["stream_id"]),
        version=_int(row["version"]),
        event_id=_str(row["event_id"]),  # as written: canonical() takes its text
        event_type=_str(row["event_type"]),
        schema_version=_int(row["schema_version"]),
        data=data,
        metadata=metadata,
        recorded_at=at,
        txid=0,
    )
    return _str(row["tenant_id"]), _int(row["seq"]), event, _str(row["hash"])


def row_hash(previous: bytes, row: dict) -> bytes:
    """The chain hash an exported row should carry, given the hash before it (core.chain.link)."""
    tenant, seq, event, _ = _event(row)
    return chain.link(previous, tenant, seq, event)


def read_manifest(path: str | os.PathLike) -> dict:
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise ValidationError(f"no manifest {mpath} next to the export")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read manifest {mpath}: {exc}") from None
    required = ("tenant_id", "count", "first_seq", "last_seq", "prev_hash", "head_hash")
    if not isinstance(manifest, dict) or any(k not in manifest for k in required):
        raise ValidationError(f"{mpath} is not an audit export manifest")
    return manifest


def _rows(path: Path, fmt: str) -> Iterator[dict | None]:
    """The file's rows in order, as dicts; None for a row that cannot be read at all."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    yield None
                    continue
                yield row if isinstance(row, dict) else None
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return
            if tuple(header) != FIELDS:
                raise ValidationError(f"{path} does not have the columns of an audit export")
            for values in reader:
                yield dict(zip(FIELDS, values, strict=True)) if len(values) == len(FIELDS) else None
    else:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(str(path))
            batches = pf.iter_batches(batch_size=10_000)
            for b in batches:
                yield from b.to_pylist()
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ValidationError(f"cannot read {path} as parquet: {exc}") from None


def _seq_of(row: dict | None) -> int | None:
    try:
        return _int(row["seq"]) if row is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def verify_file(path: str | os.PathLike, fmt: str | None = None) -> FileVerification:
    """Recompute the chain over an exported file from its manifest and name the first bad event:
    'edited' (a row whose hash does not match), 'removed' (a seq missing), 'inserted' (a repeated or
    extra seq), 'reordered' (a seq out of its place); then check count and head against the manifest.

    Offline verification proves the file matches its manifest. That the manifest is genuine is shown
    by its head hash: compare it with the AuditTrailExported event or chain head in the database."""
    target = Path(os.fspath(path))
    if not target.is_file():
        raise ValidationError(f"no export file {target}")
    manifest = read_manifest(target)
    fmt = (fmt or manifest.get("format") or target.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValidationError(f"unknown format '{fmt[:20]}': use csv, jsonl or parquet")
    try:
        expected_count = _int(manifest["count"])
        first = _int(manifest["first_seq"]) if manifest["first_seq"] is not None else None
        last = _int(manifest["last_seq"]) if manifest["last_seq"] is not None else None
        previous = bytes.fromhex(manifest["prev_hash"])
        tenant = str(manifest["tenant_id"])
    except (TypeError, ValueError):
        raise ValidationError("the manifest's chain fields are malformed") from None

    # First pass: how often each seq of the manifest's range occurs (bounded: one byte per event).
    span = 0 if first is None or last is None else max(last - first + 1, 0)
    occurs = bytearray(span)
    for row in _rows(target, fmt):
        s = _seq_of(row)
        if s is not None and first is not None and first <= s <= last and occurs[s - first] < 255:
            occurs[s - first] += 1

    def times(s: int) -> int:
        return occurs[s - first] if first is not None and first <= s <= (last or 0) else 0

    def bad(seq, event_id, reason) -> FileVerification:
        return FileVerification(False, checked, seq, event_id, reason, expected_count, previous.hex())

    checked = 0
    expected = first if first is not None else 1
    for row in _rows(target, fmt):
        seq = _seq_of(row)
        event_id = row.get("event_id") if isinstance(row, dict) else None
        event_id = str(event_id) if event_id is not None else None
        if seq is None:
            return bad(expected, event_id, "edited")  # an unreadable row where `expected` belongs
        if first is None or seq < first or seq > last:
            return bad(seq, event_id, "inserted")  # outside the manifest's range: an extra row
        if seq < expected:
            return bad(seq, event_id, "inserted")  # a seq seen already: a repeated row
        try:
            row_tenant, _, event, stored = _event(row)
            computed = chain.link(previous, row_tenant, seq, event)
            links = row_tenant == tenant and computed.hex() == stored
        except (KeyError, TypeError, ValueError):
            computed, links = None, False
        if seq > expected:
            if times(seq) > 1:
                return bad(seq, event_id, "inserted")  # a copy placed ahead of its original
            if times(expected) == 0:
                return bad(expected, None, "removed")
            return bad(seq, event_id, "reordered")  # `expected` is in the file, but later
        if not links:
            return bad(seq, event_id, "inserted" if times(seq) > 1 else "edited")
        previous = computed
        expected += 1
        checked += 1
    if last is not None and expected <= last:
        return bad(expected, None, "removed")  # the file ends early
    if checked != expected_count:
        return bad(None, None, f"count mismatch: the manifest says {expected_count}, the file has {checked}")
    if previous.hex() != manifest["head_hash"]:
        return bad(last, None, "head mismatch: the file's chain does not end at the manifest's head hash")
    return FileVerification(True, checked, count=expected_count, head_hash=previous.hex())
