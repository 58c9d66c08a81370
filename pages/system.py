"""System: is the database there, and what does it hold."""

import streamlit as st

from app.system import system_status

st.title("System")

status = system_status()
if not status.database_reachable:
    st.error(
        "The database is not reachable, so OMS cannot show anything yet. "
        "Check that PostgreSQL is running and that DATABASE_URL points at it, then reload this page."
    )
    st.caption(f"Details: {status.problem}")
    st.stop()

st.success("Database reachable")
if status.tenants is None:
    st.warning("The database answers but its schema is not ready. Run `oms db migrate`, then reload.")
    st.caption(f"Details: {status.problem}")
else:
    st.metric("Tenants", status.tenants)
