"""What the System page shows about the running installation, as plain data. The queries are core's
(core/health.py, core/workers.py); this turns them into what the page lays out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg

from app.database import database
from app.format import local_time
from core import health

# A worker beats after every job run (the projections job runs every half second): one silent for longer
# than this is probably gone.
SILENT_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class SystemStatus:
    database_reachable: bool
    tenants: int | None = None
    problem: str | None = None


def system_status() -> SystemStatus:
    """Whether the database answers as oms_app, and how many tenants it holds."""
    try:
        health.ping(database())
    except (psycopg.Error, OSError) as exc:
        return SystemStatus(database_reachable=False, problem=_one_line(exc))
    try:
        count = health.count_tenants(database())
    except psycopg.Error as exc:
        return SystemStatus(database_reachable=True, problem=_one_line(exc))
    return SystemStatus(database_reachable=True, tenants=count)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def worker_state(beat: dict[str, Any], now: datetime) -> str:
    if beat["stopped_at"] is not None:
        return "stopped"
    if now - beat["seen_at"] > SILENT_AFTER:
        return "silent"
    return "running"


def heartbeat_table(beats: list[dict[str, Any]], zone: ZoneInfo, now: datetime | None = None) -> pd.DataFrame:
    """One row per worker and job: when the worker was last seen, and the job's last run, duration,
    how much it processed and its error (empty when it succeeded)."""
    now = now or datetime.now(UTC)
    rows = []
    for b in beats:
        head = {
            "Worker": b["worker_id"],
            "State": worker_state(b, now),
            "Last seen": local_time(b["seen_at"], zone),
        }
        jobs = b["jobs"] or {}
        if not jobs:
            rows.append(
                {**head, "Job": "", "Last run": "", "Duration (s)": None, "Processed": None, "Error": ""}
            )
        for name, job in sorted(jobs.items()):
            rows.append(
                {
                    **head,
                    "Job": name,
                    "Last run": local_time(job.get("last_run"), zone),
                    "Duration (s)": job.get("seconds"),
                    "Processed": job.get("processed"),
                    "Error": job.get("error") or "",
                }
            )
    columns = ["Worker", "State", "Last seen", "Job", "Last run", "Duration (s)", "Processed", "Error"]
    return pd.DataFrame(rows, columns=columns)


def lag_table(lags: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Projection": x["name"],
                "Kind": x["kind"],
                "Events behind": x["events"],
                "Oldest unapplied (s)": round(x["seconds"], 1),
            }
            for x in lags
        ],
        columns=["Projection", "Kind", "Events behind", "Oldest unapplied (s)"],
    )
