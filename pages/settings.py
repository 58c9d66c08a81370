"""Settings (owner): how orders are taken (allocation strategy, reservation time, tax rate), the shop's
users and roles, and its warehouses with their priorities. Every change is checked again in core."""

import pandas as pd
import streamlit as st

from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, tenant_context
from core import catalog, tenants
from core.errors import OmsError

ctx = tenant_context()
db = database()
st.title("Settings")

if not ctx.actor.can("settings.manage"):
    st.error(f"Only the shop's owner changes its settings; a {ctx.actor.role} may not.")
    st.stop()

STRATEGIES = {
    "priority": "By warehouse priority (fill from the first warehouse, then the next)",
    "most_available": "From the warehouses with the most stock available",
}

if flash := st.session_state.pop("settings_flash", None):
    st.success(flash)


def _done(message: str) -> None:
    st.session_state.settings_flash = message
    st.rerun()


try:
    current = tenants.get_settings(db, ctx.tenant_id)
    users = tenants.list_staff(db, ctx.tenant_id, ctx.actor)
    warehouses = catalog.list_warehouses(db, ctx.tenant_id, ctx.actor)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

orders_tab, users_tab, warehouses_tab = st.tabs(["Orders", "Users and roles", "Warehouses"])

with orders_tab:
    st.caption(f"Currency {ctx.tenant.currency} · time zone {ctx.tenant.time_zone}")
    with st.form("settings_orders"):
        strategy = st.selectbox(
            "Allocation strategy",
            list(STRATEGIES),
            index=list(STRATEGIES).index(current["allocation_strategy"]),
            format_func=STRATEGIES.get,
            key="settings_strategy",
        )
        minutes = st.number_input(
            "Reservation time (minutes an unpaid order holds its stock)",
            value=int(current["reservation_minutes"]),
            step=5,
            key="settings_minutes",
        )
        tax = st.number_input(
            "Tax rate (%)",
            value=current["tax_rate_bp"] / 100,
            step=0.25,
            format="%.2f",
            key="settings_tax",
        )
        save = st.form_submit_button("Save order settings", type="primary", key="settings_save")
    if save:
        wanted = {
            "allocation_strategy": strategy,
            "reservation_minutes": int(minutes),
            "tax_rate_bp": round(tax * 100),
        }
        changes = {k: v for k, v in wanted.items() if v != current[k]}
        if not changes:
            st.info("Nothing changed: these are the settings already in force.")
        else:
            try:
                tenants.change_settings(db, ctx.tenant_id, ctx.actor, **changes)
            except OmsError as exc:
                st.error(f"Not saved: {exc}")
            except UNAVAILABLE:
                st.error("The database is not reachable; nothing was saved. Try again shortly.")
            else:
                _done("Order settings saved. New orders use them from now on.")

with users_tab:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Username": u.username,
                    "Login": f"{u.username}@{ctx.tenant.slug}",
                    "Name": u.display_name,
                    "Role": u.role,
                    "Active": u.active,
                    "Added": local_time(u.created_at, ctx.zone),
                }
                for u in users
            ],
            columns=["Username", "Login", "Name", "Role", "Active", "Added"],
        ),
        hide_index=True,
        width="stretch",
        key="settings_users",
    )
    st.caption(
        "Roles: owner (everything, including users and settings) · manager (orders, stock, reports) ·"
        " clerk (orders and stock) · analyst (reports, read-only)."
    )
    with st.form("settings_add_user", clear_on_submit=False):
        st.markdown("**Add a user**")
        c = st.columns(2)
        username = c[0].text_input("Username", key="settings_user_name", placeholder="e.g. anna")
        display = c[1].text_input("Full name", key="settings_user_display")
        role = c[0].selectbox("Role", tenants.ROLES, index=2, key="settings_user_role")
        password = c[1].text_input(
            f"First password (at least {tenants.MIN_PASSWORD} characters)",
            type="password",
            key="settings_user_password",
        )
        add = st.form_submit_button("Add user", key="settings_add_user")
    if add:
        try:
            user = tenants.add_staff(
                db,
                ctx.tenant_id,
                ctx.actor,
                username=username,
                role=role,
                password=password,
                display_name=display,
            )
        except OmsError as exc:
            st.error(f"Not added: {exc}")
        except UNAVAILABLE:
            st.error("The database is not reachable; nobody was added. Try again shortly.")
        else:
            _done(f"Added {user.role} {user.username}: they sign in as {user.username}@{ctx.tenant.slug}.")

    if users:
        with st.form("settings_change_user"):
            st.markdown("**Change a user**")
            c = st.columns(3)
            who = c[0].selectbox("User", [u.username for u in users], key="settings_change_who")
            new_role = c[1].selectbox("Role", ["(keep)", *tenants.ROLES], key="settings_change_role")
            status = c[2].selectbox(
                "Account", ["(keep)", "active", "deactivated"], key="settings_change_active"
            )
            change = st.form_submit_button("Save change", key="settings_change_user")
        if change:
            try:
                changed = tenants.change_staff(
                    db,
                    ctx.tenant_id,
                    ctx.actor,
                    who,
                    role=None if new_role == "(keep)" else new_role,
                    active=None if status == "(keep)" else status == "active",
                )
            except OmsError as exc:
                st.error(f"Not changed: {exc}")
            except UNAVAILABLE:
                st.error("The database is not reachable; nothing changed. Try again shortly.")
            else:
                state = "active" if changed["active"] else "deactivated (cannot sign in)"
                _done(f"{changed['username']} is now {changed['role']}, {state}.")

with warehouses_tab:
    if warehouses:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Priority": w["priority"],
                        "Code": w["code"],
                        "Name": w["name"],
                        "Region": w["region"],
                        "Active": w["active"],
                    }
                    for w in warehouses
                ]
            ),
            hide_index=True,
            width="stretch",
            key="settings_warehouses",
        )
        st.caption("Stock is reserved from the lowest priority number first (with the priority strategy).")
        with st.form("settings_priority"):
            st.markdown("**Change a warehouse's priority**")
            c = st.columns(2)
            by_code = {w["code"]: w for w in warehouses}
            code = c[0].selectbox(
                "Warehouse",
                list(by_code),
                key="settings_wh_pick",
                format_func=lambda x: f"{x} · {by_code[x]['name']}",
            )
            priority = c[1].number_input("New priority", value=1, step=1, key="settings_wh_priority")
            move = st.form_submit_button("Set priority", key="settings_set_priority")
        if move:
            try:
                catalog.update_warehouse(db, ctx.tenant_id, ctx.actor, code, priority=int(priority))
            except OmsError as exc:
                st.error(f"Not changed: {exc}")
            except UNAVAILABLE:
                st.error("The database is not reachable; nothing changed. Try again shortly.")
            else:
                _done(f"Warehouse {code} now has priority {int(priority)}.")
    else:
        st.info("No warehouse yet. Add the first one below; stock is received into a warehouse.")
    with st.form("settings_add_warehouse", clear_on_submit=False):
        st.markdown("**Add a warehouse**")
        c = st.columns(4)
        wh_code = c[0].text_input("Code", key="settings_wh_code", placeholder="e.g. EAST")
        wh_name = c[1].text_input("Name", key="settings_wh_name")
        wh_region = c[2].text_input("Region", key="settings_wh_region")
        wh_priority = c[3].number_input("Priority", value=100, step=1, key="settings_wh_new_priority")
        st.caption(
            "Code: capital letters, digits, '-' or '_', up to 32 characters. Lower priority is used first."
        )
        new_wh = st.form_submit_button("Add warehouse", key="settings_add_warehouse_btn")
    if new_wh:
        try:
            added = catalog.add_warehouse(
                db,
                ctx.tenant_id,
                ctx.actor,
                code=wh_code,
                name=wh_name,
                region=wh_region,
                priority=int(wh_priority),
            )
        except OmsError as exc:
            st.error(f"Not added: {exc}")
        except UNAVAILABLE:
            st.error("The database is not reachable; nothing was added. Try again shortly.")
        else:
            _done(f"Warehouse {added['code']} added with priority {added['priority']}.")
