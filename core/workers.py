"""The background work the worker runs, and the heartbeats it leaves for the System page.

Each job is a function of the database that does one bounded batch for every tenant; the work
state lives in PostgreSQL (checkpoints, order rows), so any number of workers can run side by side.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core import chain, projections
from core.batch import BatchReport
from core.commands import SYSTEM
from core.db import Database
from core.notifications.dispatch import process_notifications
from core.orders.handlers import expire_reservations
from core.payments.refunds import process_refunds
from core.payments.service import process_payments
from core.settings import get_settings
from core.tenants import list_tenants

BEAT = (
    "INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, seen_at, stopped_at, jobs)"
    " VALUES (%s, %s, %s, %s, now(), %s, %s) ON CONFLICT (worker_id) DO UPDATE"
    " SET seen_at = now(), stopped_at = excluded.stopped_at, jobs = excluded.jobs"
)
RECENT = (
    "SELECT worker_id, hostname, pid, started_at, seen_at, stopped_at, jobs FROM worker_heartbeats"
    " WHERE seen_at > now() - interval '1 day' ORDER BY seen_at DESC"
)


def follow_projections(db: Database, batch: int = 2000) -> int:
    """Advance every asynchronous follower (projections, then the hash chain) for every tenant."""
    followers = [p for p in projections.registry().values() if p.kind == "async"] + [chain.SEALER]
    done = 0
    for tenant in list_tenants(db):
        for follower in followers:
            done += projections.follow(db, tenant.id, follower, batch)
    return done


def sync_analytics(db: Database) -> int:
    """Bring every tenant's analytic store up to date (a quick no-op when nothing is new). Another worker
    syncing the same tenant holds its advisory lock: this one skips that tenant and tries next time."""
    from core.analytics import store  # imports duckdb and pyarrow: only in processes that sync

    # A time budget per run, starting where the last run stopped: a tenant catching up on a long history
    # neither starves the worker's other jobs (they share its CPU) nor keeps the others waiting.
    tenants = list_tenants(db)
    start, deadline, done = _analytics_cursor[0], time.monotonic() + ANALYTICS_BUDGET_S, 0
    for n in range(len(tenants)):
        done += store.sync(db, tenants[(start + n) % len(tenants)].id)
        if time.monotonic() > deadline:
            _analytics_cursor[0] = (start + n + 1) % len(tenants)
            break
    return done


ANALYTICS_BUDGET_S = 0.25
_analytics_cursor = [0]  # which tenant the next run starts with (in memory: any order is correct)


def expire_all(db: Database) -> BatchReport:
    """Release every reservation that ran out unpaid, in every tenant. One tenant's failure is reported
    and the others are still served: it must not hold every other shop's stock hostage."""
    report = BatchReport()
    for t in list_tenants(db):
        try:
            report.processed += len(expire_reservations(db, t.id, SYSTEM))
        except Exception as exc:  # noqa: BLE001 - shown in the heartbeat, tried again next tick
            report.problem(f"{t.slug}: {type(exc).__name__}: {exc}"[:200])
    return report


def charge_payments(db: Database, worker: str) -> BatchReport:
    """One attempt on every due payment (claimed: each is processed by one worker)."""
    return process_payments(db, worker, get_settings().worker_lease_seconds)


def send_refunds(db: Database, worker: str) -> BatchReport:
    """One attempt on every due refund (claimed: each is processed by one worker)."""
    return process_refunds(db, worker, get_settings().worker_lease_seconds)


def send_notifications(db: Database, worker: str) -> BatchReport:
    """One batch of due notifications per tenant (claimed: each is sent by one worker)."""
    return process_notifications(db, worker, get_settings().worker_lease_seconds)


def send_scheduled_reports(db: Database) -> BatchReport:
    """Due summaries queued and alert rules checked, in every tenant (see core/analytics/schedules)."""
    from core.analytics import schedules

    return schedules.run_due(db)


JOBS: dict[str, tuple[Callable[[Database, str], int | BatchReport], float]] = {
    # name: (work(db, worker id), seconds between runs)
    "projections": (lambda db, _worker: follow_projections(db), 0.5),
    "reservation_expiry": (lambda db, _worker: expire_all(db), 15.0),
    "payments": (charge_payments, 1.0),
    "refunds": (send_refunds, 2.0),
    "notifications": (send_notifications, 0.5),
    "analytics": (lambda db, _worker: sync_analytics(db), 1.0),
    "scheduled_reports": (lambda db, _worker: send_scheduled_reports(db), 60.0),
}


class Heartbeat:
    """One worker's identity and the last outcome of each of its jobs."""

    def __init__(self, db: Database):
        self.db = db
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = datetime.now(UTC)
        self.jobs: dict[str, dict[str, Any]] = {}

    def record(self, job: str, started: datetime, seconds: float, processed: int | None, error: str | None):
        self.jobs[job] = {
            "last_run": started.isoformat(),
            "seconds": round(seconds, 4),
            "processed": processed,
            "error": error,
        }

    def beat(self, stopped: bool = False) -> None:
        with self.db.connection() as conn:
            conn.execute(
                BEAT,
                [
                    self.worker_id,
                    socket.gethostname(),
                    os.getpid(),
                    self.started_at,
                    datetime.now(UTC) if stopped else None,
                    json.dumps(self.jobs),
                ],
            )


def heartbeats(db: Database) -> list[dict[str, Any]]:
    """Workers seen in the last day, newest first."""
    with db.connection() as conn:
        cur = conn.execute(RECENT)
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]
