"""Invariant 6 at run time: as the serving role oms_app, one tenant can neither see nor change another's
rows in any table, no tenant means no rows, and a pooled connection forgets its tenant.

The tables are discovered from the catalog, so a table added later is covered without editing this file;
if the seed below does not give it rows, test_seed_covers_every_tenant_table says so."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from conftest import catch_up, seal
from psycopg import sql
from psycopg.types.json import Jsonb

from core import catalog, customers, inventory, tenants
from core import eventstore as es
from core.analytics import schedules
from core.commands import CLI, Actor
from core.db import Database, app_url
from core.errors import ValidationError
from core.notifications import templates
from core.orders.handlers import cancel_order, pay_order, place_order, ship_order
from core.payments import service as payments
from core.projections import EventTypeCounts

TENANT_TABLES = """
    SELECT c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY c.relname
"""

REFUSED = (psycopg.errors.InsufficientPrivilege,)  # both "permission denied" and "row-level security"


def tenant_column(table: str) -> str:
    return "id" if table == "tenants" else "tenant_id"


def tables_with_tenant_data(owner) -> list[str]:
    return ["tenants", *[r[0] for r in owner.execute(TENANT_TABLES)]]


def insertable_columns(owner, table: str) -> list[str]:
    """Columns a plain INSERT may name: not generated, not GENERATED ALWAYS AS IDENTITY."""
    return [
        r[0]
        for r in owner.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped AND attgenerated = '' AND attidentity <> 'a' ORDER BY attnum",
            [table],
        )
    ]


def rows_of(owner, table: str, tenant_id: uuid.UUID) -> list[tuple]:
    query = sql.SQL("SELECT * FROM {} WHERE {} = %s ORDER BY 1, 2").format(
        sql.Identifier(table), sql.Identifier(tenant_column(table))
    )
    return owner.execute(query, [tenant_id]).fetchall()


def seed(db: Database, tenant: tenants.Tenant) -> None:
    """Rows in every tenant table, through the real API only."""
    tenants.add_user(db, tenant.id, f"user-{uuid.uuid4().hex[:6]}", "clerk", "correct horse battery")
    with db.tenant(tenant.id) as conn:
        es.append(
            conn,
            [
                es.StreamAppend(
                    f"order-{uuid.uuid4().hex[:8]}", "order", [es.NewEvent(event_type="OrderPlaced")]
                )
            ],
            es.Metadata("seed"),
        )
    catalog.add_warehouse(db, tenant.id, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tenant.id, CLI, sku="MUG", name="Mug", price=900)
    inventory.receive(db, tenant.id, CLI, sku="MUG", warehouse="MAIN", quantity=5)
    buyer = customers.add_customer(db, tenant.id, CLI, name="Ada")["id"]
    order = place_order(db, tenant.id, CLI, customer_id=buyer, lines=[("MUG", 1)])
    pay_order(db, tenant.id, CLI, order["number"])
    ship_order(db, tenant.id, CLI, order["number"], carrier="DHL", tracking="T1")
    # A charge the gateway declines: payments, attempts, circuits, secrets, and staff told in the app.
    payments.set_gateways(
        db, tenant.id, CLI, [{"name": "sim", "kind": "simulated", "decline_rate": 1.0}], tokens={"sim": "t0k"}
    )
    declined = place_order(db, tenant.id, CLI, customer_id=buyer, lines=[("MUG", 1)])
    payments.request_payment(db, tenant.id, CLI, declined["order_id"])
    payments.process_payments(db, "seed", 5.0, only=[tenant.id])
    # A charge that goes through and is cancelled: a refund to send back through the gateway.
    payments.set_gateways(db, tenant.id, CLI, [{"name": "sim", "kind": "simulated"}])
    refunded = place_order(db, tenant.id, CLI, customer_id=buyer, lines=[("MUG", 1)])
    payments.request_payment(db, tenant.id, CLI, refunded["order_id"])
    payments.process_payments(db, "seed", 5.0, only=[tenant.id])
    cancel_order(db, tenant.id, CLI, refunded["order_id"])
    templates.set_template(db, tenant.id, CLI, "order_paid", subject="Paid", text="Paid", html="<p>Paid</p>")
    # An analyst's (switched off) summary subscription and an alert rule.
    analyst = f"analyst-{uuid.uuid4().hex[:6]}"
    tenants.add_user(db, tenant.id, analyst, "analyst", "correct horse battery")
    schedules.subscribe(db, tenant.id, Actor(analyst, "analyst"), email="", frequency="off")
    schedules.save_alert(db, tenant.id, CLI, metric="orders", direction="below", threshold=1, window="today")
    catch_up(db, tenant.id, EventTypeCounts())
    seal(db, tenant.id)


@pytest.fixture
def seeded(db, tenant, other_tenant):
    seed(db, tenant)
    seed(db, other_tenant)
    return tenant, other_tenant


def test_seed_covers_every_tenant_table(owner, seeded):
    """The checks below run on every table the catalog lists; on a table where the seed put no rows they
    prove less. The event store's tables must be seeded; later tables are named in a warning."""
    a, b = seeded
    unseeded = [
        t for t in tables_with_tenant_data(owner) if not (rows_of(owner, t, a.id) and rows_of(owner, t, b.id))
    ]
    assert not unseeded, f"seed() puts no rows in these tenant tables; extend it: {unseeded}"


def test_a_tenant_sees_only_its_own_rows_in_every_table(db, owner, seeded):
    a, b = seeded
    for table in tables_with_tenant_data(owner):
        col = sql.Identifier(tenant_column(table))
        with db.tenant(a.id) as conn:
            seen = conn.execute(
                sql.SQL("SELECT {col}, count(*) FROM {t} GROUP BY 1").format(col=col, t=sql.Identifier(table))
            ).fetchall()
            aimed = conn.execute(
                sql.SQL("SELECT count(*) FROM {t} WHERE {col} = %s").format(col=col, t=sql.Identifier(table)),
                [b.id],
            ).fetchone()[0]
        assert aimed == 0, f"tenant A read tenant B's rows in {table}"
        assert {tid for tid, _ in seen} <= {a.id}, f"{table}: tenant A saw {seen}"
        own = len(rows_of(owner, table, a.id))
        assert sum(n for _, n in seen) == own, f"{table}: tenant A does not see all of its {own} rows"


def test_a_tenant_cannot_update_or_delete_another_tenants_rows(db, owner, seeded):
    a, b = seeded
    before = {t: rows_of(owner, t, b.id) for t in tables_with_tenant_data(owner)}
    for table in before:
        col = sql.Identifier(tenant_column(table))
        t = sql.Identifier(table)
        statements = {
            "UPDATE": sql.SQL("UPDATE {t} SET {col} = {col} WHERE {col} = %s").format(t=t, col=col),
            "DELETE": sql.SQL("DELETE FROM {t} WHERE {col} = %s").format(t=t, col=col),
        }
        for verb, statement in statements.items():
            with db.tenant(a.id) as conn:
                try:
                    with conn.transaction():
                        affected = conn.execute(statement, [b.id]).rowcount
                except REFUSED:
                    affected = 0
            assert affected == 0, f"{verb} on {table} as tenant A changed tenant B's rows"
    after = {t: rows_of(owner, t, b.id) for t in before}
    assert after == before


def insert_statement(table: str, columns: list[str]) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )


def row_like(owner, table: str, tenant_id: uuid.UUID) -> tuple[list[str], list] | None:
    """A copy of one of the tenant's rows, ready to INSERT, with fresh uuids in its other uuid columns."""
    columns = insertable_columns(owner, table)
    model = owner.execute(
        sql.SQL("SELECT {} FROM {} WHERE {} = %s LIMIT 1").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(table),
            sql.Identifier(tenant_column(table)),
        ),
        [tenant_id],
    ).fetchone()
    if model is None:
        return None
    values = [
        uuid.uuid4()
        if isinstance(v, uuid.UUID) and c != tenant_column(table)
        else Jsonb(v)
        if isinstance(v, dict | list)
        else v
        for c, v in zip(columns, model, strict=True)
    ]
    return columns, values


def insert_attempts(owner, table: str, tenant_id: uuid.UUID) -> list[tuple[str, sql.Composed, list]]:
    """Inserts that would succeed without row security: a copy of a real row where there is one, and
    always a row naming only the tenant (row security is checked before NOT NULL and CHECK constraints,
    so a missing policy shows as a constraint error, not a refusal)."""
    attempts = [("tenant only", insert_statement(table, [tenant_column(table)]), [tenant_id])]
    copy = row_like(owner, table, tenant_id)
    if copy:
        attempts.append(("copy of a row", insert_statement(table, copy[0]), copy[1]))
    return attempts


def test_a_tenant_cannot_insert_rows_for_another_tenant(db, owner, seeded):
    a, b = seeded
    for table in tables_with_tenant_data(owner):
        count_before = len(rows_of(owner, table, b.id))
        for what, insert, values in insert_attempts(owner, table, b.id):
            with pytest.raises(REFUSED), db.tenant(a.id) as conn:
                conn.execute(insert, values)
                pytest.fail(f"tenant A inserted tenant B's row into {table} ({what})")
        assert len(rows_of(owner, table, b.id)) == count_before, table


def test_without_a_tenant_every_table_reads_empty_and_refuses_writes(db, owner, seeded):
    a, _ = seeded
    for table in tables_with_tenant_data(owner):
        t = sql.Identifier(table)
        col = sql.Identifier(tenant_column(table))
        with db.connection() as conn:
            assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] in (None, "")
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(t)).fetchone()[0] == 0, table
            for verb, statement in {
                "UPDATE": sql.SQL("UPDATE {t} SET {col} = {col}").format(t=t, col=col),
                "DELETE": sql.SQL("DELETE FROM {t}").format(t=t),
            }.items():
                try:
                    affected = conn.execute(statement).rowcount
                except REFUSED:
                    affected = 0
                assert affected == 0, f"{verb} on {table} with no tenant changed {affected} rows"
        for what, insert, values in insert_attempts(owner, table, a.id):
            with db.connection() as conn, pytest.raises(REFUSED):
                conn.execute(insert, values)
                pytest.fail(f"inserted into {table} with no tenant set ({what})")


def test_append_without_a_tenant_is_refused(db, owner):
    before = owner.execute("SELECT count(*) FROM events").fetchone()[0]
    with db.connection() as conn, pytest.raises(ValidationError, match="no tenant"):
        es.append(
            conn,
            [es.StreamAppend("order-x", "order", [es.NewEvent(event_type="OrderPlaced")])],
            es.Metadata("t"),
        )
    assert owner.execute("SELECT count(*) FROM events").fetchone()[0] == before


@pytest.mark.parametrize("ending", ["commit", "error"])
def test_a_pooled_connection_carries_no_tenant_after_a_tenant_transaction(owner, seeded, ending):
    a, _ = seeded
    single = Database(app_url(), application_name="oms-test-pool", max_size=1)
    try:
        with single.connection() as conn:
            first_pid = conn.info.backend_pid
        try:
            with single.tenant(a.id) as conn:
                assert conn.info.backend_pid == first_pid
                assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] == str(
                    a.id
                )
                assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0
                if ending == "error":
                    conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        with single.connection() as conn:
            assert conn.info.backend_pid == first_pid, "the pool did not hand back the same connection"
            assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] in (None, "")
            for table in tables_with_tenant_data(owner):
                count = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()[0]
                assert count == 0, f"{table} shows {count} rows on a reused connection with no tenant"
    finally:
        single.close()


@pytest.mark.parametrize("table", ["events", "event_chain"])
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {} SET tenant_id = tenant_id", "DELETE FROM {}", "TRUNCATE {}"],
)
def test_the_app_role_cannot_change_its_own_log(db, owner, seeded, table, statement):
    a, _ = seeded
    before = rows_of(owner, table, a.id)
    assert before
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
        db.tenant(a.id) as conn,
    ):
        conn.execute(sql.SQL(statement).format(sql.Identifier(table)))
    assert rows_of(owner, table, a.id) == before
