"""Read models folded from the event log.

A projection is a fold: apply(conn, event) updates its tables for one event. Inline projections
are applied by the command that appends, in the same transaction. Asynchronous ones are applied by a
checkpointed follower (run by the worker) that writes its rows and its checkpoint in one transaction.
Either kind can be rebuilt from position 0, and the rebuilt tables equal the live ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import psycopg
from psycopg import sql

from core import eventstore as es
from core.db import Database, as_tenant_id

GET_CHECKPOINT = "SELECT last_txid::text, last_position FROM checkpoints WHERE follower = %s"
SET_CHECKPOINT = (
    "INSERT INTO checkpoints (tenant_id, follower, last_txid, last_position, updated_at)"
    " VALUES (oms_current_tenant(), %s, %s::xid8, %s, now())"
    " ON CONFLICT (tenant_id, follower) DO UPDATE"
    " SET last_txid = excluded.last_txid, last_position = excluded.last_position, updated_at = now()"
)
DROP_CHECKPOINT = "DELETE FROM checkpoints WHERE follower = %s"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"
LAG = (
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float FROM events"
    " WHERE (txid, position) > (%s::text::xid8, %s)"
)


class Projection:
    """Subclass with a name, the tables it owns and apply(). `kind` is 'inline' or 'async'."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    kind: ClassVar[str] = "async"
    rebuildable: ClassVar[bool] = True
    as_stored: ClassVar[bool] = False  # True: receive events as stored, not upcast

    def apply(self, conn: psycopg.Connection, event: es.RecordedEvent) -> None:
        raise NotImplementedError

    def apply_all(self, conn: psycopg.Connection, events: Iterable[es.RecordedEvent]) -> None:
        for event in events:
            self.apply(conn, event)


@dataclass(frozen=True)
class Lag:
    events: int
    seconds: float


def checkpoint(conn: psycopg.Connection, follower: str) -> tuple[int, int]:
    row = conn.execute(GET_CHECKPOINT, [follower]).fetchone()
    return (int(row[0]), row[1]) if row else (0, 0)


def follow(db: Database, tenant_id: object, projection: Projection, batch: int = 1000) -> int:
    """Apply the next batch of a tenant's events to an asynchronous projection; return how many.
    Rows and checkpoint commit together; a second worker on the same tenant and projection skips."""
    tid = as_tenant_id(tenant_id)
    with db.tenant(tid) as conn:
        if not conn.execute(TRY_LOCK, [f"follow:{tid}:{projection.name}"]).fetchone()[0]:
            return 0
        txid, position = checkpoint(conn, projection.name)
        events = es.read_after(conn, txid, position, batch, as_stored=projection.as_stored)
        if events:
            projection.apply_all(conn, events)
            conn.execute(SET_CHECKPOINT, [projection.name, str(events[-1].txid), events[-1].position])
        return len(events)


def catch_up(db: Database, tenant_id: object, projection: Projection, batch: int = 1000) -> int:
    total = 0
    while n := follow(db, tenant_id, projection, batch):
        total += n
    return total


def lag(db: Database, tenant_id: object, projection: Projection) -> Lag:
    """How far a follower is behind: events not yet applied and the age of the oldest of them."""
    if projection.kind == "inline":
        return Lag(0, 0.0)
    with db.tenant(tenant_id) as conn:
        txid, position = checkpoint(conn, projection.name)
        count, seconds = conn.execute(LAG, [str(txid), position]).fetchone()
    return Lag(count, seconds)


def rebuild(db: Database, tenant_id: object, projection: Projection) -> int:
    """Empty a projection's tables for the tenant and fold the whole log into them again.

    Inline: one transaction that locks the tables against concurrent writers, so no command's inline
    update interleaves with the fold. Asynchronous: reset the checkpoint, then catch up batch by batch.
    """
    if not projection.rebuildable:
        raise ValueError(f"{projection.name} cannot be rebuilt")
    tid = as_tenant_id(tenant_id)
    with db.tenant(tid) as conn:
        if projection.kind == "inline":
            tables = sql.SQL(", ").join(sql.Identifier(t) for t in projection.tables)
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tables))
        for table in reversed(projection.tables):  # owned tables listed parent first
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        if projection.kind == "inline":
            count = 0
            for event in es.read_all(conn):
                projection.apply(conn, event)
                count += 1
            return count
        conn.execute(DROP_CHECKPOINT, [projection.name])
    return catch_up(db, tid, projection)


class EventTypeCounts(Projection):
    """How many events of each type a tenant has, and when the last one was recorded."""

    name = "event_type_counts"
    tables = ("event_type_counts",)
    UPSERT = (
        "INSERT INTO event_type_counts (tenant_id, event_type, events, last_recorded)"
        " VALUES (oms_current_tenant(), %s, %s, %s) ON CONFLICT (tenant_id, event_type) DO UPDATE"
        " SET events = event_type_counts.events + excluded.events,"
        " last_recorded = greatest(event_type_counts.last_recorded, excluded.last_recorded)"
    )

    def apply_all(self, conn: psycopg.Connection, events: Iterable[es.RecordedEvent]) -> None:
        totals: dict[str, list] = {}
        for e in events:
            count, last = totals.get(e.event_type, (0, e.recorded_at))
            totals[e.event_type] = [count + 1, max(last, e.recorded_at)]
        with conn.cursor() as cur:
            cur.executemany(self.UPSERT, [(t, c, last) for t, (c, last) in sorted(totals.items())])

    def apply(self, conn: psycopg.Connection, event: es.RecordedEvent) -> None:
        self.apply_all(conn, [event])


def registry() -> dict[str, Projection]:
    """Every projection by name: the ones `oms projections rebuild` and the worker know."""
    from core.analytics.schedules import SCHEDULES
    from core.catalog import CATALOG
    from core.customers import CUSTOMERS
    from core.inventory import STOCK
    from core.notifications.templates import TEMPLATES
    from core.orders.projection import ORDERS
    from core.payments.projection import PAYMENTS
    from core.tenants import USERS

    return {
        p.name: p
        for p in (USERS, CATALOG, CUSTOMERS, STOCK, ORDERS, PAYMENTS, TEMPLATES, SCHEDULES, EventTypeCounts())
    }


def fold(conn: psycopg.Connection, result: es.AppendResult, *inline: Projection) -> None:
    """Apply a command's freshly appended events to its inline read models, in its transaction.
    A duplicate append (a retry) was folded the first time and is not folded again."""
    if result.duplicate:
        return
    for projection in inline:
        projection.apply_all(conn, result.events)
