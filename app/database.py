"""The app's one pool of oms_app connections, shared by every session of this Streamlit process."""

from __future__ import annotations

import streamlit as st

from core.db import Database

CONNECT_TIMEOUT_S = 5.0


@st.cache_resource(show_spinner=False)
def database() -> Database:
    """The pool, opened once. If the database does not answer within a few seconds this raises
    (psycopg's PoolTimeout) and nothing is cached, so the next page run tries again."""
    db = Database(application_name="oms-app")
    try:
        db.pool.wait(timeout=CONNECT_TIMEOUT_S)
    except BaseException:
        db.close()
        raise
    return db


@st.cache_resource(show_spinner=False, max_entries=16)
def _analytic_reader(tenant_id: str):
    """One tenant's analytic data, kept by this process and shared by its sessions: loaded once, then
    brought up to date with only the new segments whenever the worker has swapped in a new manifest."""
    from core.analytics import store

    return store.Reader(tenant_id)


def analytic_store(actor, tenant_id):
    """A cursor on the tenant's analytic data as of the latest sync, for someone core lets read reports
    (else the page shows core's refusal and stops); each run gets its own cursor, as DuckDB wants one per
    thread."""
    from core.analytics import reports
    from core.errors import OmsError

    try:
        reports.require_reader(actor)
    except OmsError as exc:
        st.error(str(exc))
        st.stop()
    return _analytic_reader(str(tenant_id)).cursor()
