"""What the System page shows about the running installation. Its SQL lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from app.database import database


@dataclass(frozen=True)
class SystemStatus:
    database_reachable: bool
    tenants: int | None = None
    problem: str | None = None


def system_status() -> SystemStatus:
    """Whether the database answers as oms_app, and how many tenants it holds."""
    try:
        with database().connection() as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as exc:
        return SystemStatus(database_reachable=False, problem=_one_line(exc))
    try:
        with database().connection() as conn:
            row = conn.execute("SELECT count(*) FROM oms_platform_tenants()").fetchone()
    except psycopg.Error as exc:
        return SystemStatus(database_reachable=True, problem=_one_line(exc))
    return SystemStatus(database_reachable=True, tenants=row[0] if row else 0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
