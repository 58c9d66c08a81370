"""Connections. The owner URL runs migrations; everything that serves users connects as oms_app
through a pool, and every unit of tenant work is one transaction with the tenant set locally."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from core.errors import ValidationError
from core.settings import Settings, get_settings

APP_ROLE = "oms_app"
SET_TENANT = "SELECT set_config('app.tenant_id', %s, true)"


def owner_url(settings: Settings | None = None) -> str:
    """DATABASE_URL, or the embedded PostgreSQL under the data directory (started if needed)."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    from core.embedded_pg import embedded_url

    return embedded_url(settings.data_dir)


def app_url(settings: Settings | None = None) -> str:
    """The serving role's URL: OMS_APP_DATABASE_URL, or the owner's URL with oms_app and its password."""
    settings = settings or get_settings()
    if settings.app_database_url:
        return settings.app_database_url
    params = conninfo_to_dict(owner_url(settings))
    params.update(user=APP_ROLE, password=settings.secret("oms_app_password"))
    return make_conninfo(**params)


def as_tenant_id(value: object) -> uuid.UUID:
    """A tenant id from a UUID or its text; anything else is a clear validation error."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationError(f"'{str(value)[:60]}' is not a valid tenant id") from None


class Database:
    """A pool of oms_app connections. application_name starts with 'oms' so operators can tell us apart.

    Connections are in autocommit mode: a single statement is its own transaction, and tenant work
    opens one explicitly with tenant(), whose BEGIN and tenant setting travel in one round trip.
    """

    def __init__(self, url: str | None = None, *, application_name: str = "oms", max_size: int = 10):
        self.url = url or app_url()
        self.pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=max_size,
            kwargs={"application_name": application_name, "autocommit": True},
            open=True,
        )

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection with no tenant: platform functions, health checks, one-statement work."""
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def tenant(self, tenant_id: object, *, pipeline: bool = False) -> Iterator[psycopg.Connection]:
        """One transaction scoped to a tenant. Commits on success, rolls back on error; the tenant
        setting is transaction-local (set_config(..., true)), so the pooled connection keeps nothing.

        pipeline=True sends statements without waiting until a result is needed, so a command's
        writes and its COMMIT travel together (psycopg pipeline mode).
        """
        tid = as_tenant_id(tenant_id)  # a parsed UUID: safe to inline in the statement below
        with self.pool.connection() as conn:
            try:
                if pipeline:
                    with conn.pipeline():
                        conn.execute(b"BEGIN")
                        conn.execute(SET_TENANT, [str(tid)])
                        yield conn
                        conn.execute(b"COMMIT")
                else:
                    conn.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{tid}', true)".encode())
                    yield conn
                    conn.execute(b"COMMIT")
            except BaseException as exc:
                server_error = isinstance(exc, psycopg.Error) or isinstance(exc.__context__, psycopg.Error)
                if pipeline and server_error:
                    # A server error inside a pipeline (also one translated into a typed error) can leave
                    # psycopg's prepared-statement cache out of step with the server: use a fresh one.
                    conn.close()
                elif not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute(b"ROLLBACK")
                raise
