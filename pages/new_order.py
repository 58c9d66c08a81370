"""New order: pick the customer, add lines from the catalog, see the total, place it."""

import uuid

import pandas as pd
import streamlit as st

from app import actions
from app.database import database
from app.format import money
from app.session import UNAVAILABLE, tenant_context
from core import catalog, customers
from core.errors import OmsError
from core.orders.handlers import place_order
from core.orders.model import CHANNELS, OutOfStock

ctx = tenant_context()
db = database()
cur = ctx.tenant.currency
st.title("New order")

if not ctx.actor.can("orders.place"):
    st.error(f"A {ctx.actor.role} may not place orders.")
    st.stop()

lines: dict[str, int] = st.session_state.setdefault("new_order_lines", {})
st.session_state.setdefault("new_order_key", str(uuid.uuid4()))


def _draft_changed() -> None:
    """A new draft gets a new idempotency key; the same draft placed twice is placed once."""
    st.session_state.new_order_key = str(uuid.uuid4())


if placed := st.session_state.pop("new_order_placed", None):
    st.success(
        f"Order #{placed['number']} placed: {money(placed['total'], placed['currency'])}, reserved in full."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {"SKU": a["sku"], "Warehouse": a["warehouse"], "Quantity": a["quantity"]}
                for a in placed["allocations"]
            ]
        ),
        hide_index=True,
    )

actions.show_flash("new_order")
if ctx.actor.can("customers.manage"):
    # Before the search box: a new customer is then found by name on the rerun that follows.
    with st.expander("New customer"), st.form("new_order_new_customer"):
        c = st.columns(3)
        name = c[0].text_input("Name", key="new_customer_name")
        email = c[1].text_input("Email", key="new_customer_email")
        phone = c[2].text_input("Phone", key="new_customer_phone")
        if st.form_submit_button("Add customer"):

            def _added(result: dict) -> str:
                st.session_state.new_order_customer_search = name.strip()
                return f"Added {name.strip()}; they are picked below."

            actions.run(
                "new_order",
                "new_order_new_customer",
                lambda key: customers.add_customer(
                    db, ctx.tenant_id, ctx.actor, name=name, email=email, phone=phone, key=key
                ),
                _added,
            )

try:
    search = st.text_input(
        "Find customer", key="new_order_customer_search", placeholder="name, email or phone"
    )
    people = customers.list_customers(db, ctx.tenant_id, ctx.actor, search=search, limit=50)
    products = catalog.list_products(db, ctx.tenant_id, ctx.actor, include_inactive=False, limit=1000)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

active = [c for c in people if c["active"]]
if not active:
    st.info(
        "No customer matches." if search else "No customers yet. Add the first one under New customer above."
    )
    st.stop()
customer = st.selectbox(
    "Customer",
    active,
    key="new_order_customer",
    format_func=lambda c: f"{c['name']} · {c['email'] or c['phone'] or 'no contact'}",
)
if not products:
    st.info("The catalog has no active product yet. Add products with `oms product add`, then come back.")
    st.stop()

by_sku = {p["sku"]: p for p in products}
with st.form("new_order_add_line", clear_on_submit=True, border=True):
    c = st.columns([4, 1, 1])
    sku = c[0].selectbox(
        "Product",
        list(by_sku),
        key="new_order_sku",
        format_func=lambda s: f"{s} · {by_sku[s]['name']} · {money(by_sku[s]['price'], cur)}",
    )
    qty = c[1].number_input("Quantity", min_value=1, max_value=10_000, value=1, step=1, key="new_order_qty")
    if c[2].form_submit_button("Add line"):
        lines[sku] = lines.get(sku, 0) + int(qty)
        _draft_changed()

if not lines:
    st.info("Add at least one line: pick a product and a quantity, then press Add line.")
    st.stop()

rows = []
for s, q in lines.items():
    p = by_sku.get(s)
    price = p["price"] if p else 0
    rows.append(
        {
            "SKU": s,
            "Product": p["name"] if p else "(no longer sold)",
            "Quantity": q,
            "Unit price": money(price, cur),
            "Line total": money(price * q, cur),
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
subtotal = sum(by_sku[s]["price"] * q for s, q in lines.items() if s in by_sku)
st.markdown(f"**Subtotal {money(subtotal, cur)}** (tax and shipping are added when the order is placed)")

c = st.columns([2, 1, 1, 3])
channel = c[0].selectbox("Channel", CHANNELS, key="new_order_channel")
remove = c[1].selectbox("Remove line", ["—", *lines], key="new_order_remove")
if c[2].button("Remove", key="new_order_remove_btn", disabled=remove == "—"):
    lines.pop(remove, None)
    _draft_changed()
    st.rerun()

if st.button("Place order", type="primary", key="new_order_place"):
    try:
        result = place_order(
            db,
            ctx.tenant_id,
            ctx.actor,
            customer_id=customer["id"],
            lines=list(lines.items()),
            channel=channel,
            key=st.session_state.new_order_key,
        )
    except OutOfStock as exc:
        st.error(f"Not placed: {exc}. Lower those quantities or remove those lines, then place again.")
        _draft_changed()
    except OmsError as exc:
        st.error(str(exc))
    else:
        st.session_state.new_order_placed = result
        st.session_state.new_order_lines = {}
        _draft_changed()
        st.rerun()
