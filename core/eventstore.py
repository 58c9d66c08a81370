"""The event store: append-only streams in PostgreSQL, one round trip per append.

Every SQL statement the store runs is a named constant here. Appends go through the server-side
function oms_append (migrations/0001), which checks stream versions, makes retries idempotent and
inserts the events. Followers read with oms_read_after, which never skips a late-committing event.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import ConcurrencyError, NotFound, OmsError, ValidationError

MAX_EVENT_BYTES = 1_048_576
STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")

APPEND = (
    "SELECT stream_id, version, position, event_id, recorded_at, txid::text, duplicate"
    " FROM oms_append(%s::jsonb, %s::uuid)"
)
COLUMNS = (
    "position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at,"
    " txid::text"
)
READ_STREAM = f"SELECT {COLUMNS} FROM events WHERE stream_id = %s AND version > %s ORDER BY version"
READ_ALL = f"SELECT {COLUMNS} FROM events ORDER BY txid, position"
READ_AFTER = f"SELECT {COLUMNS} FROM oms_read_after(%s::xid8, %s, %s)"
READ_LAST = (
    f"SELECT {COLUMNS} FROM events WHERE txid < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY txid DESC, position DESC LIMIT %s"
)
STREAM_VERSION = "SELECT version FROM streams WHERE stream_id = %s"


class NewEvent(BaseModel):
    """An event about to be appended. event_id is fixed before the append so a retry is recognised."""

    model_config = ConfigDict(frozen=True)

    event_type: str = Field(pattern=r"^[A-Z][A-Za-z0-9]{0,99}$")
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = Field(default=1, ge=1, le=1000)

    @field_validator("data")
    @classmethod
    def _json_and_size(cls, data: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(data, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"event data must be JSON: {exc}") from None
        if len(encoded.encode()) > MAX_EVENT_BYTES:
            raise ValueError(f"event data is larger than {MAX_EVENT_BYTES // 1024} KB")
        return data


@dataclass(frozen=True)
class StreamAppend:
    """Events for one stream. expected_version: 0 = the stream must be new, None = append at the end."""

    stream_id: str
    stream_type: str
    events: Sequence[NewEvent]
    expected_version: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.stream_id, str) or not STREAM_ID.fullmatch(self.stream_id):
            raise ValidationError(f"'{str(self.stream_id)[:60]}' is not a valid stream id")
        if not re.fullmatch(r"[a-z][a-z_]{0,62}", str(self.stream_type)):
            raise ValidationError(f"'{str(self.stream_type)[:60]}' is not a valid stream type")
        if not self.events:
            raise ValidationError("an append needs at least one event")
        if self.expected_version is not None and (
            not isinstance(self.expected_version, int) or self.expected_version < 0
        ):
            raise ValidationError("expected version must be a whole number, 0 or more")


@dataclass(frozen=True)
class Metadata:
    """Who caused an event and in answer to what."""

    actor: str
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, str]:
        out = {"actor": self.actor[:200]}
        if self.correlation_id:
            out["correlation_id"] = str(self.correlation_id)
        if self.causation_id:
            out["causation_id"] = str(self.causation_id)
        return out


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    txid: int

    @classmethod
    def from_row(cls, row: tuple, *, as_stored: bool = False) -> RecordedEvent:
        """An event from a row of COLUMNS, upcast to the current schema unless asked as stored."""
        pos, stream, version, eid, etype, sv, data, meta, at, txid = row
        if not as_stored:
            etype, sv, data = upcast(etype, sv, data)
        return cls(pos, stream, version, eid, etype, sv, data, meta, at, int(txid))


@dataclass(frozen=True)
class AppendResult:
    events: list[RecordedEvent] = field(default_factory=list)
    duplicate: bool = False  # True: a retry; the first append's result, nothing written now

    def version_of(self, stream_id: str) -> int:
        return max(e.version for e in self.events if e.stream_id == stream_id)


# Upcasting: old event shapes are brought to the current schema on read, never rewritten in place.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register fn(data) -> data that turns `event_type` at `from_version` into `from_version + 1`."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    while (event_type, schema_version) in UPCASTERS:
        data = UPCASTERS[(event_type, schema_version)](data)
        schema_version += 1
    return event_type, schema_version, data


def encode_batch(appends: Iterable[StreamAppend], metadata: Metadata) -> str:
    meta = metadata.as_json()
    seen: set[uuid.UUID] = set()
    batch = []
    for a in appends:
        events = []
        for e in a.events:
            if e.event_id in seen:
                raise ValidationError(f"event id {e.event_id} appears twice in one append")
            seen.add(e.event_id)
            events.append(
                {
                    "event_id": str(e.event_id),
                    "event_type": e.event_type,
                    "schema_version": e.schema_version,
                    "data": e.data,
                    "metadata": meta,
                }
            )
        batch.append(
            {
                "stream_id": a.stream_id,
                "stream_type": a.stream_type,
                "expected_version": a.expected_version,
                "events": events,
            }
        )
    if not batch:
        raise ValidationError("an append needs at least one stream")
    return json.dumps(batch, ensure_ascii=False, allow_nan=False)


def append(
    conn: psycopg.Connection,
    appends: Sequence[StreamAppend],
    metadata: Metadata,
    *,
    tenant_id: uuid.UUID | None = None,
) -> AppendResult:
    """Append to one or more streams, in one round trip.

    Inside a tenant transaction (core.db.Database.tenant) leave tenant_id out: all of a transaction's
    appends go in this one call, before its other writes, and the inline read models and outbox rows
    the events cause follow in the same transaction. On a connection outside a transaction, pass
    tenant_id: the append is then a whole tenant-scoped transaction of its own.
    """
    payload = encode_batch(appends, metadata)
    try:
        rows = conn.execute(APPEND, [payload, tenant_id]).fetchall()
    except psycopg.Error as exc:
        raise translate(exc) from None
    sent = {e.event_id: e for a in appends for e in a.events}
    meta = metadata.as_json()
    events = []
    for stream, version, position, event_id, at, txid, _ in rows:
        e = sent.get(event_id)
        etype, sv, data = (e.event_type, e.schema_version, e.data) if e else ("", 1, {})
        events.append(
            RecordedEvent(position, stream, version, event_id, etype, sv, data, meta, at, int(txid))
        )
    return AppendResult(events=events, duplicate=bool(rows) and rows[0][-1])


def translate(exc: psycopg.Error) -> Exception:
    """Database errors the caller can act on, as typed errors with a clear sentence."""
    state = exc.sqlstate
    diag = exc.diag
    if state == "OMS01":
        detail = json.loads(diag.message_detail or "{}")
        return ConcurrencyError(detail.get("stream", "?"), detail.get("expected"), detail.get("actual", 0))
    if state == "OMS00":
        return ValidationError("no tenant is set for this transaction")
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        return NotFound("unknown tenant")
    if isinstance(exc, pg_errors.UniqueViolation) and "event_id" in (diag.constraint_name or ""):
        return ValidationError("an event id in this append is already used by another event")
    if isinstance(exc, pg_errors.InvalidTextRepresentation | pg_errors.UntranslatableCharacter):
        return ValidationError(f"invalid value: {diag.message_primary}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return OmsError("not allowed: this role cannot change that data")
    return exc


def read_stream(conn: psycopg.Connection, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
    return [RecordedEvent.from_row(r) for r in conn.execute(READ_STREAM, [stream_id, after_version])]


def stream_version(conn: psycopg.Connection, stream_id: str) -> int:
    row = conn.execute(STREAM_VERSION, [stream_id]).fetchone()
    return row[0] if row else 0


def read_all(
    conn: psycopg.Connection, *, as_stored: bool = False, batch: int = 5000
) -> Iterator[RecordedEvent]:
    """Every event of the transaction's tenant in follower order, streamed through a server-side cursor."""
    with conn.cursor(name=f"read_all_{uuid.uuid4().hex}") as cur:
        cur.itersize = batch
        cur.execute(READ_ALL)
        for row in cur:
            yield RecordedEvent.from_row(row, as_stored=as_stored)


def read_after(
    conn: psycopg.Connection, txid: int, position: int, limit: int = 1000, *, as_stored: bool = False
) -> list[RecordedEvent]:
    """The tenant's events after the cursor (txid, position), in follower order, skipping none."""
    rows = conn.execute(READ_AFTER, [str(txid), position, limit])
    return [RecordedEvent.from_row(r, as_stored=as_stored) for r in rows]


def read_last(conn: psycopg.Connection, limit: int) -> list[RecordedEvent]:
    """The tenant's latest `limit` events that a follower can already see, oldest first."""
    return [RecordedEvent.from_row(r) for r in reversed(conn.execute(READ_LAST, [limit]).fetchall())]
