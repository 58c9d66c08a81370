"""Fixtures on a real PostgreSQL: a fresh database per test session, migrated, reached as oms_app.

With DATABASE_URL set (CI: the machine's PostgreSQL) the session creates its own database on that
server; without it, an embedded PostgreSQL (pgserver) runs in a temporary directory.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core import tenants
from core.db import Database, app_url
from core.migrate import migrate
from core.notifications.smtp_sink import SmtpServer
from core.settings import get_settings


@pytest.fixture(scope="session")
def owner_url(tmp_path_factory: pytest.TempPathFactory):
    """An owner URL for a database that exists only for this test session."""
    data_dir = tmp_path_factory.mktemp("oms-data")
    os.environ["OMS_DATA_DIR"] = str(data_dir)
    original = os.environ.get("DATABASE_URL")
    server_url = original
    if not server_url:
        from core.embedded_pg import embedded_url

        server_url = embedded_url(data_dir)
    name = f"oms_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    migrate(url)
    yield url
    get_settings.cache_clear()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if original is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = original


@pytest.fixture(scope="session")
def db(owner_url: str):
    """The serving role's pool: every test's database access goes through oms_app and row security."""
    database = Database(app_url(), application_name="oms-test", max_size=20)
    yield database
    database.close()


@pytest.fixture
def owner(owner_url: str):
    """A connection as the owner, for what only the owner may do (catalog checks, tampering)."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        yield conn


def new_tenant(db: Database, label: str = "shop") -> tenants.Tenant:
    return tenants.create_tenant(db, f"{label} {uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def smtp():
    """A real SMTP server on loopback that keeps what it receives."""
    server = SmtpServer()
    yield server
    server.close()


@pytest.fixture
def tenant(db: Database) -> tenants.Tenant:
    return new_tenant(db, "shop a")


@pytest.fixture
def other_tenant(db: Database) -> tenants.Tenant:
    return new_tenant(db, "shop b")


def followable(db: Database, tenant_id, timeout: float = 30.0) -> None:
    """Wait until followers can see all of a tenant's committed events: they read only below the oldest
    transaction still running anywhere on the server, and other sessions may hold one open for a while."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with db.tenant(tenant_id) as conn:
            ready = conn.execute(
                "SELECT coalesce(max(txid) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM events"
            ).fetchone()[0]
        if ready or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def seal(db: Database, tenant_id, **kwargs) -> int:
    """chain.seal once every committed event is visible to followers."""
    from core import chain

    followable(db, tenant_id)
    return chain.seal(db, tenant_id, **kwargs)


def catch_up(db: Database, tenant_id, projection, **kwargs) -> int:
    """projections.catch_up once every committed event is visible to followers."""
    from core import projections

    followable(db, tenant_id)
    return projections.catch_up(db, tenant_id, projection, **kwargs)


# Every table a command writes, for "bad input writes nothing" and "a repeat writes nothing" checks.
WRITTEN_TABLES = (
    "events",
    "streams",
    "command_log",
    "tenant_settings",
    "products",
    "warehouses",
    "customers",
    "stock",
    "stock_movements",
    "orders",
    "order_lines",
    "order_allocations",
    "shipments",
    "payments",
    "payment_attempts",
    "refunds",
    "notifications",
    "notification_templates",
    "tenant_secrets",
    "report_subscriptions",
    "alert_rules",
)


def snapshot(owner, *tenant_ids) -> dict[str, tuple]:
    """Row count and a digest of every row of every table commands write, for these tenants (as owner)."""
    ids = [str(t) for t in tenant_ids]
    return {
        t: owner.execute(
            f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
            " WHERE tenant_id = ANY(%s::uuid[])",
            [ids],
        ).fetchone()
        for t in WRITTEN_TABLES
    }
