"""Catalog checks for invariant 6: the serving role cannot bypass row security, and every table that holds
tenant data is protected by it. Read from the system catalogs as the owner, so a new table or index that
breaks a rule fails here without anyone having to remember to add a test."""

from __future__ import annotations

import pytest

from core.db import APP_ROLE, Database, app_url

pytestmark = pytest.mark.usefixtures("owner_url")

TENANT_TABLES = """
    SELECT c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY c.relname
"""


def tenant_tables(owner) -> list[str]:
    return [r[0] for r in owner.execute(TENANT_TABLES)]


def test_there_are_tenant_tables_to_check(owner):
    # Guards every test below against passing on an empty list.
    assert {"users", "user_credentials", "streams", "events", "checkpoints", "event_chain"} <= set(
        tenant_tables(owner)
    )


def test_app_role_is_no_superuser_and_cannot_bypass_row_security(owner):
    row = owner.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication, rolcanlogin"
        " FROM pg_roles WHERE rolname = %s",
        [APP_ROLE],
    ).fetchone()
    assert row is not None, "the serving role oms_app does not exist"
    superuser, bypassrls, createrole, createdb, replication, login = row
    assert login
    assert not superuser
    assert not bypassrls
    assert not createrole  # could grant itself other roles
    assert not replication


def test_app_role_is_member_of_no_role(owner):
    # A member of the owner role (or of any role with BYPASSRLS) inherits what it may do.
    members = owner.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        [APP_ROLE],
    ).fetchall()
    assert members == []


def test_app_role_owns_nothing(owner):
    params = [APP_ROLE]
    role = "(SELECT oid FROM pg_roles WHERE rolname = %s)"
    owned = {
        "relations": owner.execute(
            f"SELECT relname, relkind FROM pg_class WHERE relowner = {role}", params
        ).fetchall(),
        "functions": owner.execute(f"SELECT proname FROM pg_proc WHERE proowner = {role}", params).fetchall(),
        "schemas": owner.execute(
            f"SELECT nspname FROM pg_namespace WHERE nspowner = {role}", params
        ).fetchall(),
        "types": owner.execute(f"SELECT typname FROM pg_type WHERE typowner = {role}", params).fetchall(),
        "databases": owner.execute(
            f"SELECT datname FROM pg_database WHERE datdba = {role}", params
        ).fetchall(),
        # Every kind of object, in this database and the shared catalogs: ownership is recorded here.
        "any object": owner.execute(
            "SELECT classid::regclass::text, objid FROM pg_shdepend"
            f" WHERE refobjid = {role} AND deptype = 'o'"
            " AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
            params,
        ).fetchall(),
    }
    assert {kind: rows for kind, rows in owned.items() if rows} == {}


def test_app_role_cannot_create_objects_it_would_own(owner):
    # Whatever oms_app creates it owns, and an owner bypasses its table's row security.
    creatable = owner.execute(
        "SELECT nspname FROM pg_namespace"
        " WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'"
        " AND has_schema_privilege(%s, oid, 'CREATE')",
        [APP_ROLE],
    ).fetchall()
    assert creatable == [], "schemas where oms_app may create objects"
    assert not owner.execute(
        "SELECT has_database_privilege(%s, current_database(), 'CREATE')", [APP_ROLE]
    ).fetchone()[0]


def test_every_tenant_table_has_row_security_enabled_forced_and_a_policy(owner):
    rows = owner.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)"
        " FROM pg_class c WHERE c.oid = ANY(%s::regclass[])",
        [tenant_tables(owner) + ["tenants"]],
    ).fetchall()
    found = {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}
    assert set(found) == set(tenant_tables(owner)) | {"tenants"}
    bad = {name: v for name, v in found.items() if not (v[0] and v[1] and v[2] >= 1)}
    assert bad == {}, "(enabled, forced, policies) of each table that is not fully protected"


def test_policies_filter_by_the_transaction_tenant_without_an_or(owner):
    """No tenant set means no rows: each policy compares with the per-transaction tenant setting, and
    cross-tenant work goes through SECURITY DEFINER functions, never an OR in a policy."""
    policies = owner.execute(
        "SELECT c.relname, p.polname, p.polpermissive, pg_get_expr(p.polqual, p.polrelid),"
        " pg_get_expr(p.polwithcheck, p.polrelid)"
        " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
    ).fetchall()
    assert policies
    for table, name, _permissive, using, check in policies:
        for expr in (using, check):
            if expr is None:
                continue
            assert "oms_current_tenant()" in expr or "app.tenant_id" in expr, (table, name, expr)
            assert " OR " not in expr.upper(), (table, name, expr)
        assert using is not None, (table, name)


INDEXES = """
    SELECT t.relname, ic.relname, i.indexrelid, i.indisunique, i.indisprimary, i.indnkeyatts,
           (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]),
           (SELECT a.attidentity FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0])
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE t.oid = ANY(%s::regclass[])
    ORDER BY t.relname, ic.relname
"""


def test_every_unique_key_on_a_tenant_table_leads_with_tenant_id(owner):
    """Unique checks bypass row security: a key without tenant_id first tells tenant A that tenant B has
    a value. The one exception is a primary key on a single server-generated identity column."""
    rows = owner.execute(INDEXES, [tenant_tables(owner)]).fetchall()
    unique = [r for r in rows if r[3]]
    assert any(r[0] == "events" for r in unique)
    bad = []
    for table, index, _oid, _unique, primary, nkeys, first, identity in unique:
        if first == "tenant_id":
            continue
        if primary and nkeys == 1 and identity in ("a", "d"):
            continue
        bad.append((table, index, first))
    assert bad == [], "unique indexes that do not lead with tenant_id"
    # The exception is used exactly where expected: events.position.
    exceptions = [(r[0], r[6]) for r in unique if r[6] != "tenant_id"]
    assert exceptions == [("events", "position")]


def test_unique_constraints_lead_with_tenant_id(owner):
    # The same rule read from pg_constraint (UNIQUE, PRIMARY KEY, EXCLUDE), in case one has no index row.
    rows = owner.execute(
        "SELECT c.conrelid::regclass::text, c.conname, c.contype,"
        " a.attname, a.attidentity, cardinality(c.conkey)"
        " FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype IN ('u', 'p', 'x') AND c.conrelid = ANY(%s::regclass[])",
        [tenant_tables(owner)],
    ).fetchall()
    assert rows
    bad = [
        (table, name)
        for table, name, kind, first, identity, n in rows
        if first != "tenant_id" and not (kind == "p" and n == 1 and identity in ("a", "d"))
    ]
    assert bad == []


def test_every_other_index_on_a_tenant_table_leads_with_tenant_id(owner):
    rows = owner.execute(INDEXES, [tenant_tables(owner)]).fetchall()
    non_unique = [r for r in rows if not r[3]]
    assert any(r[1] == "events_follow" for r in non_unique)
    bad = [
        (table, index, first)
        for table, index, _o, _u, _p, _n, first, _i in non_unique
        if first != "tenant_id"
    ]
    assert bad == [], "indexes on tenant tables that do not lead with tenant_id"


@pytest.mark.parametrize("table", ["events", "event_chain"])
@pytest.mark.parametrize("privilege", ["UPDATE", "DELETE", "TRUNCATE"])
def test_app_role_cannot_change_the_log(owner, table, privilege):
    assert not owner.execute(
        "SELECT has_table_privilege(%s, %s, %s)", [APP_ROLE, table, privilege]
    ).fetchone()[0]
    if privilege == "UPDATE":  # a column-level grant would allow it too
        assert not owner.execute(
            "SELECT has_any_column_privilege(%s, %s, 'UPDATE')", [APP_ROLE, table]
        ).fetchone()[0]


def test_app_role_can_still_append_and_read_the_log(owner):
    # The other side of the rule above: the tests that show immutability would pass on a role with nothing.
    for table in ("events", "event_chain"):
        for privilege in ("SELECT", "INSERT"):
            assert owner.execute(
                "SELECT has_table_privilege(%s, %s, %s)", [APP_ROLE, table, privilege]
            ).fetchone()[0], (table, privilege)


def test_app_role_reaches_platform_admins_only_through_functions(owner):
    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert not owner.execute(
            "SELECT has_table_privilege(%s, 'platform_admins', %s)", [APP_ROLE, privilege]
        ).fetchone()[0], privilege


def test_views_use_security_invoker_and_no_materialized_view_is_readable(owner):
    views = owner.execute(
        "SELECT c.relname, c.relkind, coalesce(c.reloptions, '{}') FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')"
    ).fetchall()
    for name, kind, options in views:
        if kind == "v":
            opts = dict(o.split("=", 1) for o in options)
            assert opts.get("security_invoker", "false").lower() in ("true", "on", "yes", "1"), name
        else:  # materialized views have no row security at all
            assert not owner.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT')", [APP_ROLE, name]
            ).fetchone()[0], name


def test_security_definer_functions_pin_their_search_path(owner):
    rows = owner.execute(
        "SELECT p.proname, coalesce(p.proconfig, '{}') FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.prosecdef"
    ).fetchall()
    assert rows, "the platform functions are SECURITY DEFINER"
    bad = [name for name, config in rows if not any(c.startswith("search_path=") for c in config)]
    assert bad == []


def test_app_connections_name_themselves_oms(db, owner):
    with db.connection() as conn:
        assert conn.execute("SHOW application_name").fetchone()[0].startswith("oms")
        assert conn.execute("SELECT current_user").fetchone()[0] == APP_ROLE
    default = Database(app_url(), max_size=1)  # the name a serving process gets without asking
    try:
        with default.tenant("00000000-0000-0000-0000-000000000000") as conn:
            assert conn.execute("SHOW application_name").fetchone()[0].startswith("oms")
        names = owner.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE usename = %s AND datname = current_database()",
            [APP_ROLE],
        ).fetchall()
        assert names, "no oms_app connection was seen"
        assert all(n[0].startswith("oms") for n in names), names
    finally:
        default.close()
