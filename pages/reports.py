"""Reports (owners, managers, analysts): KPIs against the previous period, sales over time by channel,
product, category, warehouse or customer, the funnel, fulfilment, payments, stock and cohorts. DuckDB
answers from the tenant's analytic store, which the worker keeps a few seconds behind the orders. The
view lives in the URL; clicking a bar or a row lists the orders behind it; every table exports."""

from dataclasses import replace
from datetime import UTC, datetime

import streamlit as st

from app import charts
from app import reports_view as view
from app.database import analytic_store
from app.exports import export_buttons
from app.format import local_time, money
from app.session import tenant_context
from core.analytics import kpis, reports, store
from core.errors import OmsError
from core.orders.model import CHANNELS

ctx = tenant_context()
st.title("Reports")

con = analytic_store(ctx.actor, ctx.tenant_id)

tz, cur = ctx.tenant.time_zone, ctx.tenant.currency
params = st.query_params.to_dict()
state = view.from_params(params)
if params != st.session_state.get("rep_url"):  # a link or a shared view changed the URL: it wins
    for key in ("rep_preset", "rep_from", "rep_to", "rep_channels", "rep_grain", "rep_by"):
        st.session_state.pop(key, None)
today = datetime.now(ctx.zone).date()

f = st.columns([1.3, 1.2, 1.2, 2.4, 1, 1.2])
preset = f[0].selectbox("Period", kpis.PRESETS, index=kpis.PRESETS.index(state.preset), key="rep_preset")
if preset == "custom":
    default = state.period(today)
    start = f[1].date_input("From", value=state.start or default.start, key="rep_from", format="YYYY-MM-DD")
    last = f[2].date_input("To", value=state.last or today, key="rep_to", format="YYYY-MM-DD")
else:
    start = last = None
channels = f[3].multiselect(
    "Channel", CHANNELS, default=list(state.channels), key="rep_channels", placeholder="all channels"
)
grain = f[4].selectbox("Per", reports.GRAINS, index=reports.GRAINS.index(state.grain), key="rep_grain")
by = f[5].selectbox("Split by", reports.DIMENSIONS, index=reports.DIMENSIONS.index(state.by), key="rep_by")
chosen = view.ReportView(preset, start, last, tuple(channels), grain, by)
if replace(chosen, drill=state.drill, key=state.key) == state:
    chosen = state  # the filters are as the URL says: keep the drill-down it asked for
st.query_params.from_dict(chosen.to_params())
st.session_state.rep_url = chosen.to_params()
state = chosen

try:
    period = state.period(today)
    previous = period.previous()
    now = reports.kpis(con, tz, period, state.filters())
    before = reports.kpis(con, tz, previous, state.filters())
except OmsError as exc:
    st.error(str(exc))
    st.stop()


def fmt(amount) -> str:
    return money(amount, cur)


status = store.status(ctx.tenant_id)
synced = local_time(status["synced_at"], ctx.zone) if status["synced_at"] else "never"
st.caption(
    f"{period.label()} against {previous.label()} ({tz}), money in {cur}."
    f" Figures include events up to the last sync, {synced}; {status['events']:,} events."
)
if not status["events"]:
    st.info("The reports fill in once the worker has read the shop's events; it does every few seconds.")

cards = kpis.kpi_cards(now, kpis.compare(now, before), fmt)
for row in (cards[:4], cards[4:]):  # seven cards in one row leave no room for the figures
    for col, (name, label, value, delta) in zip(st.columns(4), row, strict=False):
        col.metric(label, value, delta, "inverse" if name in kpis.INVERSE else "normal", border=True)

tabs = st.tabs(["Sales", "Products", "Funnel", "Fulfilment", "Payments", "Stock", "Cohorts"])


def drill_down(filters, bucket=None, title: str = "Orders behind the selection") -> None:
    rows = reports.orders_behind(con, tz, period, filters, bucket=bucket, grain=state.grain)
    st.markdown(f"**{title}** · {len(rows):,} order{'s' if len(rows) != 1 else ''}")
    if rows.empty:
        st.info("No order matches this selection.")
        return
    shown = view.money_columns(rows, ["total", "paid", "refunded"], fmt)
    shown["number"] = shown["number"].map(lambda n: f"#{n}")
    shown["placed"] = shown["placed"].dt.strftime("%Y-%m-%d %H:%M")  # already the shop's local time
    st.dataframe(shown, hide_index=True, width="stretch")
    export_buttons(rows, "orders", "drill")


with tabs[0]:
    series = reports.over_time(con, tz, period, state.grain, state.by, state.filters())
    series["period"] = series["period"].map(lambda d: d.strftime("%Y-%m-%d"))  # a day, not a midnight
    if series.empty:
        st.info("No orders in this period. Choose a longer period or clear the channel filter.")
    else:
        event = st.plotly_chart(
            charts.over_time(series, cur, state.by),
            on_select="rerun",
            selection_mode="points",
            key="rep_sales_chart",
            width="stretch",
        )
        points = (event or {}).get("selection", {}).get("points", [])
        if points:
            p = points[0]
            picked = replace(state, drill=view.bucket(p.get("x")), key=(p.get("customdata") or [None])[0])
            if picked != state:
                st.query_params.from_dict(picked.to_params())
                st.rerun()
        table = series.rename(columns={"key": state.by})
        st.dataframe(view.money_columns(table, ["revenue"], fmt), hide_index=True, width="stretch")
        export_buttons(table, f"sales-by-{state.by}", "sales")
        if state.drill or state.key:
            what = " · ".join(str(x) for x in (state.drill, state.key) if x)
            drill_down(state.drill_filters(), state.drill, f"Orders behind {what}")
            if st.button("Clear the selection", key="rep_clear"):
                st.query_params.from_dict(replace(state, drill=None, key=None).to_params())
                st.rerun()

with tabs[1]:
    top = reports.top_products(con, tz, period, state.filters(), limit=20)
    if top.empty:
        st.info("No paid order in this period yet.")
    else:
        st.plotly_chart(charts.top_products(top.head(10), cur), width="stretch", key="rep_top_chart")
        picked = st.dataframe(
            view.money_columns(top, ["revenue"], fmt),
            hide_index=True,
            width="stretch",
            on_select="rerun",
            selection_mode="single-row",
            key="rep_top_table",
        )
        export_buttons(top, "top-products", "top")
        rows = picked.selection.rows if picked else []
        if rows:
            sku = top.iloc[rows[0]]["sku"]
            drill_down(reports.Filters(channels=state.channels, skus=(sku,)), title=f"Orders with {sku}")

with tabs[2]:
    funnel = reports.funnel(con, tz, period, state.filters())
    if not funnel["orders"].iloc[0]:
        st.info("No orders in this period.")
    else:
        st.plotly_chart(charts.funnel(funnel), width="stretch", key="rep_funnel")
        shown = funnel.assign(
            conversion=funnel["conversion"].map(kpis.percent),
            median_hours=funnel["median_hours"].map(lambda h: "" if h is None or h != h else f"{h:.1f} h"),
        )
        st.dataframe(shown, hide_index=True, width="stretch")
        export_buttons(funnel, "funnel", "funnel")

with tabs[3]:
    times = reports.fulfilment_times(con, tz, period, state.filters())
    if times.empty:
        st.info("No order placed in this period has shipped yet.")
    else:
        m = st.columns(3)
        m[0].metric("Shipped orders", f"{len(times):,}")
        m[1].metric("Median hours to ship", f"{times['hours_to_ship'].median():.1f}")
        m[2].metric("90th percentile", f"{times['hours_to_ship'].quantile(0.9):.1f}")
        st.plotly_chart(charts.fulfilment(times), width="stretch", key="rep_fulfilment")
        export_buttons(times, "fulfilment", "fulfilment")

with tabs[4]:
    failures = reports.payment_failures(con, tz, period, state.filters())
    if failures.empty:
        st.info("No gateway attempt in this period (payments recorded by hand do not go through a gateway).")
    else:
        st.plotly_chart(charts.gateway_failures(failures), width="stretch", key="rep_gateways")
        st.dataframe(
            failures.assign(failure_rate=failures["failure_rate"].map(kpis.percent)),
            hide_index=True,
            width="stretch",
        )
        export_buttons(failures, "payment-failures", "payments")

with tabs[5]:
    cover = reports.stock_cover(con, datetime.now(UTC))
    if cover.empty:
        st.info("No stock movement yet. Receive stock on the Inventory page.")
    else:
        low = int(cover["low"].sum())
        st.caption(
            f"{low} SKU-warehouse pair{'s' if low != 1 else ''} low: out of stock, or gone within"
            f" {reports.LOW_COVER_DAYS} days at the pace of the last 30 days."
        )
        if cover["days_of_cover"].notna().any():
            st.plotly_chart(
                charts.days_of_cover(cover, reports.LOW_COVER_DAYS), width="stretch", key="rep_cover"
            )
        st.dataframe(
            cover.style.apply(
                lambda r: ["background-color: #fdecea" if r["low"] else "" for _ in r], axis=1
            ).format({"units_per_day": "{:.2f}", "days_of_cover": "{:.1f}"}, na_rep="–"),
            hide_index=True,
            width="stretch",
        )
        export_buttons(cover, "stock-cover", "stock")

with tabs[6]:
    cohorts = reports.cohorts(con, tz, period)
    if cohorts.empty:
        st.info("No customer placed a first order in this period.")
    else:
        st.caption(
            "Customers by the month of their first order, and the share who ordered again k months later."
        )
        st.plotly_chart(charts.cohorts(cohorts), width="stretch", key="rep_cohorts")
        export_buttons(cohorts, "cohorts", "cohorts")
