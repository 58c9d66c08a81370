"""Audit trail (owners and managers): the shop's event log filtered by time, type, actor, order and
customer; each event's data and metadata; and exports that verify without the database."""

import tempfile
from datetime import datetime, time, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, tenant_context
from core import audit
from core.customers import list_customers
from core.errors import OmsError

ctx = tenant_context()
db = database()
st.title("Audit trail")

if not ctx.actor.can("audit.export"):
    st.error(f"A {ctx.actor.role} may not read or export the audit trail.")
    st.stop()

try:
    types = audit.event_types(db, ctx.tenant_id, ctx.actor)
    people = list_customers(db, ctx.tenant_id, ctx.actor, limit=500)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

f = st.columns([1.2, 1.2, 3, 1.6, 1.2, 2])
day_from = f[0].date_input("From", value=None, key="audit_from", format="YYYY-MM-DD")
day_to = f[1].date_input("To", value=None, key="audit_to", format="YYYY-MM-DD")
chosen = f[2].multiselect("Event type", types, key="audit_types")
by = f[3].text_input("Who", key="audit_actor", placeholder="user name")
order = f[4].text_input("Order", key="audit_order", placeholder="#1001")
names = {c["id"]: f"{c['name']} ({c['email'] or 'no email'})" for c in people}
customer = f[5].selectbox(
    "Customer", [None, *names], format_func=lambda c: "any" if c is None else names[c], key="audit_customer"
)


def _start(day) -> datetime | None:
    """The first moment of a day in the shop's time zone (the To day is counted whole)."""
    return datetime.combine(day, time.min, tzinfo=ctx.zone) if day else None


try:
    events = audit.browse(
        db,
        ctx.tenant_id,
        ctx.actor,
        since=_start(day_from),
        until=_start(day_to + timedelta(days=1)) if day_to else None,
        types=chosen,
        by=by or None,
        order=order.strip() or None,
        customer=customer,
        limit=audit.MAX_BROWSE,
    )
except OmsError as exc:
    st.warning(str(exc))
    events = []

if not events:
    st.info("No event matches these filters. Widen the dates or clear a filter.")
else:
    table = pd.DataFrame(
        [
            {
                "Position": e["position"],
                "When": local_time(e["recorded_at"], ctx.zone),
                "Event": e["event_type"],
                "Stream": e["stream_id"],
                "Version": e["version"],
                "Who": e["actor"] or "",
            }
            for e in events
        ]
    )
    picked = st.dataframe(
        table,
        hide_index=True,
        use_container_width=True,
        on_select="rerun",
        selection_mode="single-row",
        key="audit_table",
    )
    st.caption(
        f"The latest {len(events)} matching events, newest first; times in {ctx.tenant.time_zone}."
        + (" Narrow the filters to see older ones." if len(events) == audit.MAX_BROWSE else "")
    )
    rows = picked.selection.rows if picked is not None and hasattr(picked, "selection") else []
    if rows:
        event = events[rows[0]]
        st.subheader(f"{event['event_type']} · position {event['position']}")
        c = st.columns(2)
        c[0].markdown("**Data**")
        c[0].json(event["data"])
        c[1].markdown("**Metadata**")
        c[1].json({**event["metadata"], "event_id": str(event["event_id"])})

st.subheader("Export")
st.caption(
    "The whole sealed chain of the chosen dates (types, people and orders do not narrow an export: it is"
    " one unbroken run of the chain), with a manifest. `oms audit verify FILE` checks it without the"
    " database. Every export is itself recorded in the log."
)
e = st.columns([1, 3])
fmt = e[0].selectbox("Format", audit.FORMATS, key="audit_format")
if e[1].button("Prepare export", key="audit_export"):
    with st.spinner("Exporting…"), tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"{ctx.tenant.slug}-audit.{fmt}"
        try:
            done = audit.export(
                db,
                ctx.tenant_id,
                ctx.actor,
                target,
                fmt,
                since=_start(day_from),
                until=_start(day_to + timedelta(days=1)) if day_to else None,
            )
        except OmsError as exc:
            st.error(str(exc))
        else:
            st.session_state.audit_files = {
                target.name: target.read_bytes(),
                Path(done["manifest"]).name: Path(done["manifest"]).read_bytes(),
            }
            st.session_state.audit_done = f"Exported {done['count']} events, head {done['head_hash'][:16]}…"
if files := st.session_state.get("audit_files"):
    st.success(st.session_state.get("audit_done", "Export ready."))
    d = st.columns(len(files))
    for n, (name, content) in enumerate(files.items()):
        d[n].download_button(f"Download {name}", content, file_name=name, key=f"audit_download_{n}")
