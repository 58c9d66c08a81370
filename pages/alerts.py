"""Summaries and alerts: anyone who reads reports can have a daily or weekly summary emailed; owners and
managers set threshold alerts on the KPIs and can have them emailed too (core/analytics/schedules.py)."""

import streamlit as st

from app import actions
from app.database import database
from app.format import local_time, minor_units, money
from app.session import UNAVAILABLE, tenant_context
from core.analytics import kpis, schedules
from core.errors import OmsError

ctx = tenant_context()
db = database()
cur = ctx.tenant.currency
st.title("Summaries and alerts")
actions.show_flash("alerts")
can_alert = ctx.actor.can("alerts.manage")

try:
    mine = schedules.subscription(db, ctx.tenant_id, ctx.actor)
    rules = schedules.alert_rules(db, ctx.tenant_id, ctx.actor)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

# Your summary email

st.subheader("Your summary email")
st.caption(
    f"The KPIs of the Reports page with their change, and the top products. A daily summary covers"
    f" yesterday, a weekly one last Monday to Sunday; they go out from {schedules.SEND_AT:%H:%M}"
    f" ({ctx.tenant.time_zone}). The first one comes at the worker's next run."
)
if not mine["email_ready"]:
    st.warning("The shop has no email channel yet: the owner sets it up in Settings > Notifications.")
with st.form("alerts_subscription"):
    email = st.text_input("Send to", value=mine["email"], key="alerts_email", placeholder="you@example.com")
    frequency = st.radio(
        "How often",
        schedules.FREQUENCIES,
        index=schedules.FREQUENCIES.index(mine["frequency"]),
        format_func=lambda f: {"off": "Never", "daily": "Every day", "weekly": "Every Monday"}[f],
        horizontal=True,
        key="alerts_frequency",
    )
    alerts = (
        st.checkbox("Email me the alerts too", value=mine["alerts"], key="alerts_by_email")
        if can_alert
        else False
    )
    if st.form_submit_button("Save", type="primary", key="alerts_subscribe"):
        actions.run(
            "alerts",
            "alerts_subscription",
            lambda key: schedules.subscribe(
                db, ctx.tenant_id, ctx.actor, email=email, frequency=frequency, alerts=alerts, key=key
            ),
            lambda r: (
                "Summary emails switched off."
                if r["frequency"] == "off" and not r["alerts"]
                else f"Saved: emails go to {r['email']}."
            ),
        )

# Alert rules

st.subheader("Alerts")
st.caption(
    "An alert tells the owners and managers, in the app and by email to those who asked, when a figure"
    " goes past its limit; it tells them once, and again only after the figure has been back within it."
)
fmt = lambda minor: money(minor, cur)  # noqa: E731
if not rules:
    st.info(
        "No alerts yet."
        + (" Add one below, for example a payment failure rate above 10%." if can_alert else "")
    )
for rule in rules:
    with st.container(border=True):
        c = st.columns([5, 3, 1.4])
        c[0].markdown(f"**{rule.describe(cur)}**")
        last = kpis.kpi_value(rule.metric, rule.last_value, fmt) if rule.last_value is not None else None
        if rule.breached_at:
            c[1].error(f"Past the limit since {local_time(rule.breached_at, ctx.zone)}: {last}")
        else:
            c[1].success("Within the limit" + (f" (last {last})" if last else ""))
        if can_alert and c[2].button("Remove…", key=f"alerts_remove_{rule.id}"):
            actions.ask("alerts_remove", str(rule.id))
        if actions.asked("alerts_remove") == str(rule.id):
            st.warning("Remove this alert? Nobody will be told about this figure any more.")
            b = st.columns(2)
            if b[0].button("Remove the alert", type="primary", key=f"alerts_remove_yes_{rule.id}"):
                actions.run(
                    "alerts",
                    f"alerts_remove_{rule.id}",
                    lambda key, rid=rule.id: schedules.remove_alert(
                        db, ctx.tenant_id, ctx.actor, rid, key=key
                    ),
                    lambda _r: "Alert removed.",
                    confirmation="alerts_remove",
                )
            if b[1].button("Keep it", key=f"alerts_remove_no_{rule.id}"):
                actions.close("alerts_remove")
                st.rerun()

if can_alert:
    with st.form("alerts_new"):
        st.markdown("**New alert**")
        c = st.columns([3, 1.5, 2, 1.8])
        metric = c[0].selectbox(
            "When", kpis.KPI_NAMES, format_func=kpis.KPI_LABELS.get, index=6, key="alerts_metric"
        )
        direction = c[1].selectbox("goes", schedules.DIRECTIONS, key="alerts_direction")
        limit = c[2].text_input(
            "Limit", key="alerts_limit", help=f"Rates in percent (10 for 10%), money in {cur}, else a count"
        )
        window = c[3].selectbox(
            "over",
            schedules.WINDOWS,
            index=1,
            format_func=lambda w: "today" if w == "today" else f"the last {w}",
            key="alerts_window",
        )
        if st.form_submit_button("Add alert", type="primary", key="alerts_add"):
            try:
                if metric.endswith("_rate"):
                    threshold = float(limit.strip().rstrip("%")) / 100
                elif metric in kpis.MONEY_KPIS:
                    threshold = minor_units(limit, cur, "limit")
                else:
                    threshold = int(limit.strip().replace(",", ""))
            except ValueError as exc:
                msg = (
                    str(exc)
                    if metric in kpis.MONEY_KPIS
                    else f"limit: '{limit.strip()[:30]}' is not a number"
                )
                st.error(msg[0].upper() + msg[1:])
            else:
                actions.run(
                    "alerts",
                    "alerts_new",
                    lambda key: schedules.save_alert(
                        db,
                        ctx.tenant_id,
                        ctx.actor,
                        metric=metric,
                        direction=direction,
                        threshold=threshold,
                        window=window,
                        key=key,
                    ),
                    lambda _r: "Alert added; it is checked every minute.",
                )
