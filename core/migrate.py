"""Migrations: ordered SQL files in core/migrations, each applied once by the owner and recorded."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from core.db import APP_ROLE, owner_url
from core.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 7_310_001  # pg_advisory_lock key: one migrator at a time


def ensure_app_role(conn: psycopg.Connection, password: str) -> None:
    """oms_app logs in, is no superuser, cannot bypass row security and owns nothing."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            "{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
        ).format(sql.SQL(verb), sql.Identifier(APP_ROLE), sql.Literal(password))
    )


def migrate(url: str | None = None, settings: Settings | None = None) -> list[str]:
    """Apply every migration not applied yet; return the names applied now."""
    settings = settings or get_settings()
    applied_now: list[str] = []
    with psycopg.connect(url or owner_url(settings), autocommit=True, application_name="oms-migrate") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            if not settings.app_database_url:
                ensure_app_role(conn, settings.secret("oms_app_password"))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for path in sorted(MIGRATIONS.glob("*.sql")):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", [path.name])
                applied_now.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    return applied_now
