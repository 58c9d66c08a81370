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
