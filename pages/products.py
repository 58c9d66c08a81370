"""Products: the catalog with search; add, edit (price typed in the tenant's currency), deactivate and
reactivate with a confirmation."""

import streamlit as st

from app import actions
from app import catalog_view as view
from app.database import database
from app.format import major_units, minor_units, money
from app.session import UNAVAILABLE, tenant_context
from core import catalog
from core.errors import OmsError

ctx = tenant_context()
db = database()
cur = ctx.tenant.currency
st.title("Products")

if not ctx.actor.can("catalog.view"):
    st.error(f"A {ctx.actor.role} may not view the catalog.")
    st.stop()
can_manage = ctx.actor.can("catalog.manage")
actions.show_flash("products")

f = st.columns([4, 1.5])
search = f[0].text_input("Search", key="products_q", placeholder="SKU or name")
with_inactive = f[1].checkbox("Show inactive", value=True, key="products_inactive")
try:
    rows = catalog.list_products(
        db, ctx.tenant_id, ctx.actor, search=search, include_inactive=with_inactive, limit=1000
    )
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

if rows:
    st.dataframe(view.products_table(rows, cur), hide_index=True, width="stretch")
    st.caption(f"{len(rows)} products{' (the first 1,000)' if len(rows) == 1000 else ''} · prices in {cur}")
elif search.strip() or not with_inactive:
    st.info("No product matches. Change the search or show inactive products.")
else:
    st.info("No products yet." + (" Add the first one below." if can_manage else ""))

if not can_manage:
    st.caption(f"A {ctx.actor.role} sees the catalog but does not change it.")
    st.stop()


def _price(text: str) -> int | None:
    """The typed price in minor units, or None after showing why it is not a price."""
    try:
        return minor_units(text, cur)
    except ValueError as exc:
        st.error(str(exc))
        return None


st.subheader("Add a product")
with st.form("products_add"):
    c = st.columns([2, 3, 2, 2])
    sku = c[0].text_input("SKU", key="add_product_sku", placeholder="e.g. MUG-RED")
    name = c[1].text_input("Name", key="add_product_name")
    category = c[2].text_input("Category (optional)", key="add_product_category")
    price_text = c[3].text_input(f"Price ({cur})", key="add_product_price", placeholder="e.g. 12.50")
    if (
        st.form_submit_button("Add product", type="primary", key="add_product_submit")
        and (price := _price(price_text)) is not None
    ):
        actions.run(
            "products",
            "products_add",
            lambda key: catalog.add_product(
                db, ctx.tenant_id, ctx.actor, key=key, sku=sku, name=name, category=category, price=price
            ),
            lambda r: f"Added {r['sku']} · {r['name']} at {money(r['price'], cur)}.",
        )

if not rows:
    st.stop()
st.subheader("Edit a product")
by_sku = {p["sku"]: p for p in rows}
sku = st.selectbox(
    "Product",
    list(by_sku),
    key="products_edit_sku",
    format_func=lambda s: f"{s} · {by_sku[s]['name']}" + ("" if by_sku[s]["active"] else " (inactive)"),
)
p = by_sku[sku]
with st.form("products_edit"):
    c = st.columns([3, 2, 2])
    name = c[0].text_input("Name", value=p["name"], key=f"edit_product_name_{sku}")
    category = c[1].text_input("Category", value=p["category"], key=f"edit_product_category_{sku}")
    price_text = c[2].text_input(
        f"Price ({cur})", value=major_units(p["price"], cur), key=f"edit_product_price_{sku}"
    )
    if (
        st.form_submit_button("Save changes", type="primary", key="edit_product_submit")
        and (price := _price(price_text)) is not None
    ):
        actions.run(
            "products",
            f"products_edit_{sku}",
            lambda key: catalog.update_product(
                db, ctx.tenant_id, ctx.actor, sku, key=key, name=name, category=category, price=price
            ),
            lambda r: f"Saved {r['sku']} · {r['name']} at {money(r['price'], cur)}.",
        )

actions.toggle_active(
    "products",
    sku,
    sku,
    p["active"],
    f"Deactivate {sku} · {p['name']}? It can no longer be ordered, received or transferred."
    " Its stock, history and existing orders are kept, and you can reactivate it later."
    if p["active"]
    else f"Reactivate {sku} · {p['name']}? It can be ordered and received again.",
    lambda key: catalog.set_product_active(db, ctx.tenant_id, ctx.actor, sku, not p["active"], key=key),
    lambda r: f"{r['sku']} is now {'active' if r['active'] else 'inactive'}.",
    confirm_label="Yes, {verb} " + sku,
    keep_label="No, keep it as it is",
)
