"""What the System page asks about the installation: does the database answer, how many tenants it holds,
and how far each follower (asynchronous projections, the hash chain) is behind for a tenant."""

from __future__ import annotations

from typing import Any

from core import chain, projections
from core.commands import Actor, require
from core.db import Database

PING = "SELECT 1"
COUNT_TENANTS = "SELECT count(*) FROM oms_platform_tenants()"


def ping(db: Database) -> None:
    """Raise (psycopg's error, or PoolTimeout) unless the database answers as the serving role."""
    with db.connection() as conn:
        conn.execute(PING)


def count_tenants(db: Database) -> int:
    """How many tenants the installation holds; raises if the schema is not migrated yet."""
    with db.connection() as conn:
        row = conn.execute(COUNT_TENANTS).fetchone()
    return row[0] if row else 0


def projection_lag(db: Database, tenant_id: object, actor: Actor) -> list[dict[str, Any]]:
    """Every read model and follower of the tenant with how many events it has not applied yet and the
    age of the oldest of them. Inline ones are updated with each command and never lag."""
    require(actor, "system.view")
    followers = [*projections.registry().values(), chain.SEALER]
    out = []
    for p in followers:
        lag = projections.lag(db, tenant_id, p)
        out.append({"name": p.name, "kind": p.kind, "events": lag.events, "seconds": lag.seconds})
    return out
