"""System: is the database there, are the workers running their jobs, and how far behind the log each
of the shop's read models is."""

from datetime import UTC, datetime

import streamlit as st

from app import system
from app.database import database
from app.session import UNAVAILABLE, require_session, tenant_context
from core import health
from core.errors import OmsError
from core.workers import heartbeats

require_session()
st.title("System")

status = system.system_status()
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
    st.stop()

ctx = tenant_context()
db = database()
st.caption(f"{status.tenants} shops on this installation · times in {ctx.tenant.time_zone}")

st.subheader("Workers")
try:
    beats = heartbeats(db)
    lags = health.projection_lag(db, ctx.tenant_id, ctx.actor)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database stopped answering; reload the page in a moment.")
    st.stop()

if not beats:
    st.warning(
        "No worker has reported in the last day, so projections, the hash chain and reservation expiry are"
        " not running. Start one with `oms worker` (`./run` starts one for you)."
    )
else:
    now = datetime.now(UTC)
    table = system.heartbeat_table(beats, ctx.zone, now)
    running = sum(1 for b in beats if system.worker_state(b, now) == "running")
    st.caption(f"{running} of {len(beats)} workers seen in the last day are running.")
    st.dataframe(table, hide_index=True, width="stretch", key="system_heartbeats")
    if (table["Error"] != "").any():
        st.error("A job failed on its last run: see the Error column. The worker retries it on its next run.")

st.subheader("Projection lag")
st.dataframe(system.lag_table(lags), hide_index=True, width="stretch", key="system_lag")
behind = [x for x in lags if x["events"]]
if behind:
    st.caption(
        "Events not yet applied by the worker: "
        + ", ".join(f"{x['name']} {x['events']}" for x in behind)
        + ". A lag that keeps growing means no worker is following."
    )
else:
    st.caption("Every read model is up to date with the event log.")
