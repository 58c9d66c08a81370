"""Overview: today's orders and revenue against the same time yesterday, and what is waiting on the
shop (payments, shipments, low stock). Refreshed live by a fragment."""

from datetime import timedelta

import streamlit as st

from app import overview as view
from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, tenant_context
from core.analytics import schedules
from core.errors import OmsError
from core.orders.queries import overview

ctx = tenant_context()
db = database()
st.title("Overview")


@st.fragment(run_every=timedelta(seconds=view.REFRESH_SECONDS))
def kpi_cards() -> None:
    try:
        data = overview(db, ctx.tenant_id, ctx.actor)
    except OmsError as exc:
        st.error(str(exc))
        return
    except UNAVAILABLE:
        st.error("The database is not reachable; the figures will refresh when it answers again.")
        return
    cards = view.kpis(data)
    for col, kpi in zip(st.columns(len(cards)), cards, strict=True):
        flat = bool(kpi.delta and kpi.delta.startswith("±0"))  # no change: no green arrow
        col.metric(kpi.label, kpi.value, kpi.delta, "off" if flat else "normal", help=kpi.help, border=True)
    st.caption(
        f"As of {local_time(data['now'], ctx.zone)} ({ctx.tenant.time_zone}), money in {data['currency']}."
        f" Refreshes every {view.REFRESH_SECONDS} seconds."
    )
    if data["low_stock"]:
        st.subheader("Low stock")
        st.dataframe(view.low_stock_table(data), hide_index=True, width="stretch")
    links = st.columns(2)
    if data["pending_payments"]:
        links[0].page_link(
            "pages/orders.py",
            label=view.count(data["pending_payments"], "order") + " awaiting payment",
            icon=":material/hourglass_top:",
            query_params={"status": "reserved"},
        )
    if data["to_ship"]:
        links[1].page_link(
            "pages/orders.py",
            label=view.count(data["to_ship"], "order") + " to ship",
            icon=":material/local_shipping:",
            query_params={"status": "paid,partially_shipped"},
        )
    if ctx.actor.can("reports.view"):
        breached = [r for r in schedules.alert_rules(db, ctx.tenant_id, ctx.actor) if r.breached_at]
        for rule in breached:
            st.warning(f"Alert: {rule.describe(ctx.tenant.currency)}", icon=":material/notifications_active:")
        if breached:
            st.page_link(
                "pages/alerts.py", label="Summaries and alerts", icon=":material/notifications_active:"
            )
    if not data["orders_today"] and not data["orders_yesterday"]:
        st.info("No orders today or yesterday yet. Place one on the New order page.")


kpi_cards()
