"""Inventory: stock per SKU and warehouse (low stock highlighted), a chart by warehouse, the stock
movements staff make (receive, adjust, transfer, reorder points) and each SKU's movement history."""

import streamlit as st

from app import actions, charts
from app import catalog_view as view
from app.database import database
from app.session import UNAVAILABLE, tenant_context
from core import catalog, inventory
from core.errors import OmsError

ctx = tenant_context()
db = database()
st.title("Inventory")

if not ctx.actor.can("stock.view"):
    st.error(f"A {ctx.actor.role} may not view stock.")
    st.stop()

try:
    warehouses = catalog.list_warehouses(db, ctx.tenant_id, ctx.actor)
    products = catalog.list_products(db, ctx.tenant_id, ctx.actor, limit=1000)
    levels = inventory.stock_levels(db, ctx.tenant_id, ctx.actor)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

if not warehouses or not products:
    missing = " and ".join(
        w for w, none in (("warehouses", not warehouses), ("products", not products)) if none
    )
    st.info(
        f"There are no {missing} yet. Add warehouses and products first: warehouses in Settings"
        " (owner) or with `oms warehouse add`, products on the Products page or with `oms product add`."
        " Then receive stock here."
    )
    st.stop()

actions.show_flash("inventory")
names = {p["sku"]: p["name"] for p in products}
wh_names = {w["code"]: w["name"] for w in warehouses}
can_move = ctx.actor.can("stock.move")

# Stock levels ------------------------------------------------------------------------------------
f = st.columns([3, 3, 1.5])
search = f[0].text_input("Search", key="inventory_q", placeholder="SKU or product name").strip().lower()
picked = f[1].multiselect(
    "Warehouses", list(wh_names), key="inventory_wh", format_func=lambda c: f"{c} · {wh_names[c]}"
)
low_only = f[2].checkbox("Low stock only", key="inventory_low")
shown = [
    r
    for r in levels
    if (not search or search in r["sku"].lower() or search in names.get(r["sku"], "").lower())
    and (not picked or r["warehouse"] in picked)
    and (not low_only or r["low"])
]

m = st.columns(4)
m[0].metric("SKUs in stock", len({r["sku"] for r in levels if r["on_hand"] > 0}))
m[1].metric("Units on hand", f"{sum(r['on_hand'] for r in levels):,}")
m[2].metric("Units reserved", f"{sum(r['reserved'] for r in levels):,}")
m[3].metric("Low-stock rows", sum(1 for r in levels if r["low"]))

if not levels:
    st.info(
        "No stock recorded yet. Receive the first delivery below."
        if can_move
        else "No stock recorded yet. Staff who move stock receive deliveries on this page."
    )
elif not shown:
    st.info("No stock row matches these filters. Change or clear them to see more.")
else:
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(
            view.highlight_low(view.stock_table(shown, names)),
            hide_index=True,
            width="stretch",
            key="inventory_table",
        )
        st.caption("Low: available (on hand minus reserved) is at or below the reorder point.")
    with right:
        st.plotly_chart(charts.stock_by_warehouse(shown), width="stretch", key="inventory_chart")

# Moving stock ------------------------------------------------------------------------------------
active_skus = [p["sku"] for p in products if p["active"]]
all_skus = [p["sku"] for p in products]
active_whs = [w["code"] for w in warehouses if w["active"]]
all_whs = [w["code"] for w in warehouses]


def _sku(s: str) -> str:
    return f"{s} · {names.get(s, '')}"


def _wh(c: str) -> str:
    return f"{c} · {wh_names.get(c, '')}"


def _level(r: dict) -> str:
    return f"{r['on_hand']} on hand, {r['available']} available in {r['warehouse']}"


def _receive_form() -> None:
    with st.form("inventory_receive"):
        st.caption("A delivery arriving at a warehouse (active products and warehouses).")
        c = st.columns([3, 2, 1])
        sku = c[0].selectbox("Product", active_skus, key="receive_sku", format_func=_sku)
        wh = c[1].selectbox("Warehouse", active_whs, key="receive_wh", format_func=_wh)
        qty = c[2].number_input("Quantity", value=1, step=1, key="receive_qty")
        if st.form_submit_button("Receive", type="primary", key="receive_submit"):
            actions.run(
                "inventory",
                "inventory_receive",
                lambda key: inventory.receive(
                    db, ctx.tenant_id, ctx.actor, key=key, sku=sku, warehouse=wh, quantity=int(qty)
                ),
                lambda r: f"Received {int(qty)} × {sku}: {_level(r)}.",
            )


def _adjust_form() -> None:
    with st.form("inventory_adjust"):
        st.caption("Correct on-hand units after a count, breakage or loss; the reason stays in the history.")
        c = st.columns([3, 2, 1])
        sku = c[0].selectbox("Product", all_skus, key="adjust_sku", format_func=_sku)
        wh = c[1].selectbox("Warehouse", all_whs, key="adjust_wh", format_func=_wh)
        change = c[2].number_input("Change (+/−)", value=0, step=1, key="adjust_change")
        reason = st.text_input("Reason (required)", key="adjust_reason", placeholder="e.g. stock count")
        if st.form_submit_button("Adjust", type="primary", key="adjust_submit"):
            actions.run(
                "inventory",
                "inventory_adjust",
                lambda key: inventory.adjust(
                    db,
                    ctx.tenant_id,
                    ctx.actor,
                    key=key,
                    sku=sku,
                    warehouse=wh,
                    change=int(change),
                    reason=reason,
                ),
                lambda r: f"Adjusted {sku} by {int(change):+d}: {_level(r)}.",
            )


def _transfer_form() -> None:
    with st.form("inventory_transfer"):
        st.caption("Move available units from one warehouse to another.")
        c = st.columns([3, 2, 2, 1])
        sku = c[0].selectbox("Product", active_skus, key="transfer_sku", format_func=_sku)
        source = c[1].selectbox("From", active_whs, key="transfer_from", format_func=_wh)
        destination = c[2].selectbox("To", active_whs, key="transfer_to", format_func=_wh, index=1)
        qty = c[3].number_input("Quantity", value=1, step=1, key="transfer_qty")
        if st.form_submit_button("Transfer", type="primary", key="transfer_submit"):
            actions.run(
                "inventory",
                "inventory_transfer",
                lambda key: inventory.transfer(
                    db,
                    ctx.tenant_id,
                    ctx.actor,
                    key=key,
                    sku=sku,
                    source=source,
                    destination=destination,
                    quantity=int(qty),
                ),
                lambda r: f"Transferred {int(qty)} × {sku}: {_level(r['from'])}; {_level(r['to'])}.",
            )


def _reorder_form() -> None:
    with st.form("inventory_reorder"):
        st.caption("Stock is flagged low when available units fall to this number or below.")
        c = st.columns([3, 2, 1])
        sku = c[0].selectbox("Product", all_skus, key="reorder_sku", format_func=_sku)
        wh = c[1].selectbox("Warehouse", all_whs, key="reorder_wh", format_func=_wh)
        point = c[2].number_input("Reorder point", value=0, step=1, key="reorder_point")
        if st.form_submit_button("Set reorder point", type="primary", key="reorder_submit"):
            actions.run(
                "inventory",
                "inventory_reorder",
                lambda key: inventory.set_reorder_point(
                    db, ctx.tenant_id, ctx.actor, key=key, sku=sku, warehouse=wh, reorder_point=int(point)
                ),
                lambda r: f"Reorder point of {sku} in {wh} is now {r['reorder_point']}.",
            )


if can_move:
    st.subheader("Move stock")
    tabs = st.tabs(["Receive", "Adjust", "Transfer", "Reorder point"])
    with tabs[0]:
        if active_skus and active_whs:
            _receive_form()
        else:
            st.info("Receiving needs an active product and an active warehouse.")
    with tabs[1]:
        _adjust_form()
    with tabs[2]:
        if active_skus and len(active_whs) > 1:
            _transfer_form()
        else:
            st.info("A transfer needs an active product and two active warehouses.")
    with tabs[3]:
        _reorder_form()
else:
    st.caption(f"A {ctx.actor.role} sees stock but does not move it.")

# History -----------------------------------------------------------------------------------------
st.subheader("Movement history")
sku = st.selectbox("Product", all_skus, key="inventory_history_sku", format_func=_sku)
try:
    moves = inventory.movements(db, ctx.tenant_id, ctx.actor, sku, limit=200)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
if not moves:
    st.info(f"{sku} has no stock movements yet.")
else:
    st.dataframe(view.movements_table(moves, ctx.zone), hide_index=True, width="stretch")
    st.caption(f"The latest {len(moves)} movements, newest first; times in {ctx.tenant.time_zone}.")
