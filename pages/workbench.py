"""SQL workbench (owners, managers, analysts): read-only SELECT queries over the shop's own analytic
tables, with the schema beside them, a row limit and a time limit; results as a table and a chart."""

import streamlit as st

from app import charts
from app.database import analytic_store
from app.exports import export_buttons
from app.session import tenant_context
from core.analytics import reports
from core.errors import OmsError

ROW_LIMIT, TIMEOUT_S = 5_000, 10.0
EXAMPLE = (
    "SELECT channel, count(*) AS orders, sum(paid_amount - refunded_amount) AS revenue\n"
    "FROM orders WHERE status <> 'rejected'\nGROUP BY channel ORDER BY revenue DESC"
)

ctx = tenant_context()
st.title("SQL workbench")

con = analytic_store(ctx.actor, ctx.tenant_id)

left, right = st.columns([3, 1.2])
with right:
    st.markdown("**Tables**")
    for table, cols in reports.schema(con).groupby("table", sort=True):
        with st.expander(table):
            st.dataframe(cols[["column", "type"]], hide_index=True, width="stretch")
    st.caption("Times are UTC; money is in minor units (cents).")

with left:
    st.caption(
        f"One SELECT at a time over this shop's data only; at most {ROW_LIMIT:,} rows, stopped after"
        f" {TIMEOUT_S:g} s. Nothing here can change data or read files."
    )
    st.session_state.setdefault("wb_query", EXAMPLE)
    with st.form("workbench"):
        sql = st.text_area("Query", height=180, key="wb_query")
        run = st.form_submit_button("Run", type="primary", key="wb_run")
    if run:
        try:
            rows, more = reports.run_sql(con, sql, limit=ROW_LIMIT, timeout=TIMEOUT_S)
        except OmsError as exc:
            st.error(str(exc))
        else:
            st.session_state.wb_result = (rows, more)
    if result := st.session_state.get("wb_result"):
        rows, more = result
        st.markdown(
            f"**{len(rows):,} row{'s' if len(rows) != 1 else ''}**"
            + (f" (the first {ROW_LIMIT:,}; add a LIMIT or narrow the query)" if more else "")
        )
        st.dataframe(rows, hide_index=True, width="stretch")
        export_buttons(rows, "query", "wb")
        numeric = list(rows.select_dtypes("number").columns)
        if len(rows.columns) >= 2 and numeric and not rows.empty:
            c = st.columns(3)
            x = c[0].selectbox("Chart: x", list(rows.columns), key="wb_x")
            y = c[1].selectbox("y", numeric, index=len(numeric) - 1, key="wb_y")
            kind = c[2].selectbox("as", ["bar", "line"], key="wb_kind")
            st.plotly_chart(charts.query_result(rows, x, y, kind), width="stretch", key="wb_chart")
