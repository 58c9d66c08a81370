"""Customers: list with search; add, edit (contact and notification preferences), deactivate and
reactivate with a confirmation."""

import streamlit as st

from app import actions
from app import catalog_view as view
from app.database import database
from app.session import UNAVAILABLE, tenant_context
from core import customers
from core.errors import OmsError

ctx = tenant_context()
db = database()
st.title("Customers")

if not ctx.actor.can("customers.view"):
    st.error(f"A {ctx.actor.role} may not view customers.")
    st.stop()
can_manage = ctx.actor.can("customers.manage")
actions.show_flash("customers")

search = st.text_input("Search", key="customers_q", placeholder="name, email or phone")
try:
    rows = customers.list_customers(db, ctx.tenant_id, ctx.actor, search=search, limit=200)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

if rows:
    st.dataframe(view.customers_table(rows), hide_index=True, width="stretch")
    if len(rows) == 200:
        st.caption("Showing the first 200 customers by name; search to narrow the list.")
elif search.strip():
    st.info("No customer matches. Search by part of a name, an email or a phone number.")
else:
    st.info("No customers yet." + (" Add the first one below." if can_manage else ""))

if not can_manage:
    st.stop()


def _fields(prefix: str, c: dict) -> dict:
    """The customer form's inputs (prefilled from c), as keyword arguments for core."""
    cols = st.columns([3, 3, 2])
    out = {
        "name": cols[0].text_input("Name", value=c["name"], key=f"{prefix}_name"),
        "email": cols[1].text_input("Email", value=c["email"], key=f"{prefix}_email"),
        "phone": cols[2].text_input(
            "Phone", value=c["phone"], key=f"{prefix}_phone", placeholder="+1 555 0100"
        ),
    }
    st.caption("Notify this customer about their orders by")
    n = st.columns(3)
    for col, (field, label) in zip(n, view.CHANNELS, strict=True):
        out[field] = col.checkbox(label, value=c[field], key=f"{prefix}_{field}")
    return out


st.subheader("Add a customer")
blank = {
    "name": "",
    "email": "",
    "phone": "",
    "notify_email": True,
    "notify_sms": False,
    "notify_push": False,
}
with st.form("customers_add"):
    new = _fields("add_customer", blank)
    if st.form_submit_button("Add customer", type="primary", key="add_customer_submit"):
        actions.run(
            "customers",
            "customers_add",
            lambda key: customers.add_customer(db, ctx.tenant_id, ctx.actor, key=key, **new),
            lambda r: f"Added {r['name']}.",
        )

if not rows:
    st.stop()
st.subheader("Edit a customer")
by_id = {str(c["id"]): c for c in rows}
cid = st.selectbox(
    "Customer",
    list(by_id),
    key="customers_edit_id",
    format_func=lambda i: (
        f"{by_id[i]['name']} · {by_id[i]['email'] or by_id[i]['phone'] or 'no contact'}"
        + ("" if by_id[i]["active"] else " (inactive)")
    ),
)
person = by_id[cid]
with st.form("customers_edit"):
    changes = _fields(f"edit_customer_{cid}", person)
    if st.form_submit_button("Save changes", type="primary", key="edit_customer_submit"):
        actions.run(
            "customers",
            f"customers_edit_{cid}",
            lambda key: customers.update_customer(db, ctx.tenant_id, ctx.actor, cid, key=key, **changes),
            lambda r: f"Saved {r['name']}.",
        )

actions.toggle_active(
    "customers",
    str(cid),
    person["name"],
    person["active"],
    f"Deactivate {person['name']}? New orders can no longer be placed for them. Their orders"
    " and history are kept, and you can reactivate them later."
    if person["active"]
    else f"Reactivate {person['name']}? New orders can be placed for them again.",
    lambda key: customers.set_customer_active(
        db, ctx.tenant_id, ctx.actor, cid, not person["active"], key=key
    ),
    lambda r: f"{person['name']} is now {'active' if r['active'] else 'inactive'}.",
    confirm_label="Yes, {verb}",
    keep_label="No, keep as it is",
)
