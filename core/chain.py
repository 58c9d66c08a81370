"""The per-tenant hash chain over the event log.

Appends never wait for each other, so the chain is sealed by a follower moments after commit:
it reads events in follower order (which never skips a late commit), gives each the next sequence
number and hash = sha256(previous hash || canonical event). verify() recomputes a sealed range and
names the first event that was edited or removed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

import psycopg

from core import eventstore as es
from core.db import Database, as_tenant_id
from core.projections import Projection, follow

GENESIS = bytes(32)
LAST_LINK = "SELECT seq, hash FROM event_chain ORDER BY seq DESC LIMIT 1"
SEAL = "INSERT INTO event_chain (tenant_id, seq, position, hash) VALUES (oms_current_tenant(), %s, %s, %s)"
SEALED_RANGE = (
    "SELECT c.seq, c.position, c.hash, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version,"
    " e.data, e.metadata, e.recorded_at, e.txid::text"
    " FROM event_chain c LEFT JOIN events e ON e.tenant_id = c.tenant_id AND e.position = c.position"
    " WHERE c.seq BETWEEN %s AND %s ORDER BY c.seq"
)
HASH_BEFORE = "SELECT hash FROM event_chain WHERE seq = %s"
HEAD = "SELECT seq, hash FROM event_chain ORDER BY seq DESC LIMIT 1"


def fields(tenant_id: str, seq: int, event: es.RecordedEvent) -> dict:
    """Everything stored about an event that its hash covers (an audit export writes these too)."""
    return {
        "tenant_id": str(tenant_id),
        "seq": seq,
        "position": event.position,
        "stream_id": event.stream_id,
        "version": event.version,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at.astimezone(UTC).isoformat(),
    }


def canonical(tenant_id: str, seq: int, event: es.RecordedEvent) -> bytes:
    """The bytes an event's hash covers, in one fixed JSON form, so an exported copy can be verified
    without the database."""
    return json.dumps(
        fields(tenant_id, seq, event),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def link(previous: bytes, tenant_id: str, seq: int, event: es.RecordedEvent) -> bytes:
    return hashlib.sha256(previous + canonical(tenant_id, seq, event)).digest()


class ChainSealer(Projection):
    """The follower that seals events into the chain. Its 'read model' is the chain itself,
    which is append-only: it is never rebuilt."""

    name = "chain"
    tables = ("event_chain",)
    rebuildable = False
    as_stored = True  # hashes cover what is stored, not the upcast view

    def apply_all(self, conn: psycopg.Connection, events: Iterable[es.RecordedEvent]) -> None:
        tenant = conn.execute("SELECT oms_current_tenant()::text").fetchone()[0]
        last = conn.execute(LAST_LINK).fetchone()
        seq, previous = (last[0], bytes(last[1])) if last else (0, GENESIS)
        rows = []
        for event in events:
            seq += 1
            previous = link(previous, tenant, seq, event)
            rows.append((seq, event.position, previous))
        with conn.cursor() as cur:
            cur.executemany(SEAL, rows)

    def apply(self, conn: psycopg.Connection, event: es.RecordedEvent) -> None:
        self.apply_all(conn, [event])


SEALER = ChainSealer()


def seal(db: Database, tenant_id: object, batch: int = 5000) -> int:
    """Seal the tenant's next committed events; return how many were sealed."""
    total = 0
    while n := follow(db, tenant_id, SEALER, batch):
        total += n
    return total


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    first_bad_position: int | None = None
    first_bad_event_id: str | None = None
    reason: str | None = None


def head(db: Database, tenant_id: object) -> tuple[int, str]:
    with db.tenant(tenant_id) as conn:
        row = conn.execute(HEAD).fetchone()
    return (row[0], bytes(row[1]).hex()) if row else (0, GENESIS.hex())


def verify(db: Database, tenant_id: object, first: int = 1, last: int | None = None) -> Verification:
    """Recompute the chain over sealed sequence numbers first..last and report the first break."""
    tid = as_tenant_id(tenant_id)
    with db.tenant(tid) as conn:
        last_seq = last or (conn.execute(HEAD).fetchone() or (0,))[0]
        before = conn.execute(HASH_BEFORE, [first - 1]).fetchone() if first > 1 else None
        previous = bytes(before[0]) if before else GENESIS
        checked = 0
        with conn.cursor(name="verify_chain") as cur:
            cur.itersize = 5000
            cur.execute(SEALED_RANGE, [first, last_seq])
            for seq, position, stored, *event_row in cur:
                if event_row[0] is None:
                    return _broken(checked, last_seq, previous, seq, position, None, "removed")
                event = es.RecordedEvent.from_row((position, *event_row), as_stored=True)
                expected = link(previous, str(tid), seq, event)
                if expected != bytes(stored):
                    return _broken(checked, last_seq, previous, seq, position, str(event.event_id), "edited")
                previous = expected
                checked += 1
    return Verification(True, checked, last_seq, previous.hex())


def _broken(checked, head_seq, previous, seq, position, event_id, reason) -> Verification:
    return Verification(False, checked, head_seq, previous.hex(), seq, position, event_id, reason)
