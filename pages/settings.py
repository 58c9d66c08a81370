"""Settings (owner): how orders are taken (allocation strategy, reservation time, tax rate), the shop's
users and roles, its warehouses with their priorities, the payment gateways and retry policy, and the
notification channels and templates. Every change is checked again in core."""

from zoneinfo import available_timezones

import pandas as pd
import streamlit as st

from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, refresh_tenant, tenant_context
from core import catalog, tenants
from core.errors import OmsError
from core.money import COMMON_CURRENCIES
from core.notifications import channels, templates
from core.payments import service as payments

ctx = tenant_context()
db = database()
st.title("Settings")

if not ctx.actor.can("settings.manage"):
    st.error(f"Only the shop's owner changes its settings; a {ctx.actor.role} may not.")
    st.stop()

ZONES = sorted(available_timezones())
STRATEGIES = {
    "priority": "By warehouse priority (fill from the first warehouse, then the next)",
    "most_available": "From the warehouses with the most stock available",
}

if flash := st.session_state.pop("settings_flash", None):
    st.success(flash)


def _done(message: str) -> None:
    st.session_state.settings_flash = message
    st.rerun()


def _save(call, message: str) -> None:
    """Run a core command; its sentence on bad input (nothing saved), else the message after a rerun."""
    try:
        call()
    except OmsError as exc:
        st.error(f"Not saved: {exc}")
    except UNAVAILABLE:
        st.error("The database is not reachable; nothing was saved. Try again shortly.")
    else:
        _done(message)


try:
    current = tenants.get_settings(db, ctx.tenant_id)
    users = tenants.list_staff(db, ctx.tenant_id, ctx.actor)
    warehouses = catalog.list_warehouses(db, ctx.tenant_id, ctx.actor)
    gateway_setup = payments.gateway_settings(db, ctx.tenant_id, ctx.actor)
    channel_setup = channels.channel_settings(db, ctx.tenant_id, ctx.actor)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

orders_tab, users_tab, warehouses_tab, payments_tab, notify_tab = st.tabs(
    ["Orders", "Users and roles", "Warehouses", "Payments", "Notifications"]
)

with orders_tab:
    with st.form("settings_profile"):
        st.markdown("**Currency and time zone**")
        c = st.columns(2)
        currencies = sorted({*COMMON_CURRENCIES, ctx.tenant.currency})
        new_currency = c[0].selectbox(
            "Currency (new orders; placed ones keep theirs)",
            currencies,
            index=currencies.index(ctx.tenant.currency),
            key="settings_currency",
        )
        new_zone = c[1].selectbox(
            "Time zone (every date and time shown)",
            ZONES,
            index=ZONES.index(ctx.tenant.time_zone) if ctx.tenant.time_zone in ZONES else 0,
            key="settings_zone",
        )
        save_profile = st.form_submit_button("Save currency and time zone", key="settings_profile_save")
    if save_profile:
        try:
            tenants.change_profile(db, ctx.tenant_id, ctx.actor, currency=new_currency, time_zone=new_zone)
        except OmsError as exc:
            st.error(f"Not saved: {exc}")
        except UNAVAILABLE:
            st.error("The database is not reachable; nothing was saved. Try again shortly.")
        else:
            refresh_tenant()
            _done(f"The shop now uses {new_currency} and the {new_zone} time zone.")
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

with payments_tab:
    gateways = gateway_setup["gateways"]
    if gateways:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Order tried": n,
                        "Gateway": g["name"],
                        "Kind": g["kind"],
                        "Address": g.get("url", "(simulated)"),
                        "Token set": "yes" if g["token_set"] else "no",
                    }
                    for n, g in enumerate(gateways, 1)
                ]
            ),
            hide_index=True,
            width="stretch",
            key="settings_gateways",
        )
    else:
        st.info("No gateway yet: charges cannot go through until one is added below.")
    with st.form("settings_gateway"):
        st.markdown("**Add or replace a gateway** (new ones are tried last)")
        c = st.columns(4)
        gw_name = c[0].text_input("Name", key="settings_gw_name", placeholder="e.g. main")
        gw_kind = c[1].selectbox("Kind", ["http", "simulated"], key="settings_gw_kind")
        gw_url = c[2].text_input(
            "URL (http)", key="settings_gw_url", placeholder="https://pay.example.com/v1"
        )
        gw_token = c[3].text_input("Token (blank keeps it)", type="password", key="settings_gw_token")
        save_gw = st.form_submit_button("Save gateway", key="settings_gw_save")
    if save_gw:
        entry = {"name": gw_name.strip(), "kind": gw_kind} | (
            {"url": gw_url.strip()} if gw_kind == "http" else {}
        )
        _save(
            lambda: payments.save_gateway(db, ctx.tenant_id, ctx.actor, entry, token=gw_token or None),
            f"Gateway {entry['name']} saved.",
        )
    if gateways:
        c = st.columns([2, 1])
        gone = c[0].selectbox("Remove a gateway", [g["name"] for g in gateways], key="settings_gw_remove")
        if c[1].button("Remove gateway", key="settings_gw_remove_btn"):
            _save(
                lambda: payments.remove_gateway(db, ctx.tenant_id, ctx.actor, gone),
                f"Gateway {gone} removed; charges in progress there are retried on the others.",
            )
    with st.form("settings_retry"):
        st.markdown("**Retry policy**")
        c = st.columns(4)
        limit = c[0].number_input("Attempts per charge", value=gateway_setup["payment_attempt_limit"], step=1)
        backoff = c[1].number_input(
            "First retry after (s)", value=gateway_setup["payment_backoff_seconds"], step=5
        )
        trip = c[2].number_input(
            "Failures that open a circuit", value=gateway_setup["circuit_failures"], step=1
        )
        reset = c[3].number_input(
            "Circuit rests for (s)", value=gateway_setup["circuit_reset_seconds"], step=10
        )
        save_retry = st.form_submit_button("Save retry policy", key="settings_retry_save")
    if save_retry:
        _save(
            lambda: tenants.change_settings(
                db,
                ctx.tenant_id,
                ctx.actor,
                payment_attempt_limit=int(limit),
                payment_backoff_seconds=int(backoff),
                circuit_failures=int(trip),
                circuit_reset_seconds=int(reset),
            ),
            "Retry policy saved.",
        )

with notify_tab:
    set_up = channel_setup["channels"]
    email = set_up.get("email") or {}
    with st.form("settings_email"):
        st.markdown("**Email (SMTP)**" + (" · set up" if email else " · not set up"))
        c = st.columns(4)
        host = c[0].text_input("Host", value=email.get("host", ""), key="settings_smtp_host")
        port = c[1].number_input("Port", value=int(email.get("port", 587)), step=1, key="settings_smtp_port")
        sender = c[2].text_input("Sender address", value=email.get("sender", ""), key="settings_smtp_sender")
        staff = c[3].text_input(
            "Staff address (low stock)", value=email.get("staff_address", ""), key="settings_smtp_staff"
        )
        c = st.columns(3)
        user = c[0].text_input("Username", value=email.get("username", ""), key="settings_smtp_user")
        secret = c[1].text_input("Password (blank keeps it)", type="password", key="settings_smtp_password")
        tls = c[2].checkbox("STARTTLS", value=email.get("starttls", True), key="settings_smtp_tls")
        save_email = st.form_submit_button("Save email", key="settings_email_save")
    if save_email:
        fields = {"host": host.strip(), "port": int(port), "sender": sender.strip(), "starttls": tls}
        fields |= {"username": user.strip(), "staff_address": staff.strip()}
        _save(
            lambda: channels.set_channel(
                db, ctx.tenant_id, ctx.actor, "email", fields, secret=secret or None
            ),
            "Email channel saved.",
        )
    for hook in ("sms", "push"):
        current_hook = set_up.get(hook) or {}
        with st.form(f"settings_{hook}"):
            st.markdown(
                f"**{hook.upper() if hook == 'sms' else 'Push'} provider**"
                + (" · set up" if current_hook else " · not set up")
            )
            c = st.columns(2)
            url = c[0].text_input(
                "Webhook URL", value=current_hook.get("url", ""), key=f"settings_{hook}_url"
            )
            token = c[1].text_input("Token (blank keeps it)", type="password", key=f"settings_{hook}_token")
            save_hook = st.form_submit_button(f"Save {hook}", key=f"settings_{hook}_save")
        if save_hook:
            _save(
                lambda hook=hook, url=url, token=token: channels.set_channel(
                    db, ctx.tenant_id, ctx.actor, hook, {"url": url.strip()}, secret=token or None
                ),
                f"The {hook} channel is saved.",
            )
    with st.form("settings_template"):
        st.markdown("**Message template** (Jinja2; the HTML part is escaped; preview on Notifications)")
        topic = st.selectbox("Topic", templates.TOPICS, key="settings_tpl_topic")
        subject = st.text_input(
            "Subject", key="settings_tpl_subject", placeholder="Order #{{ order_number }} ..."
        )
        text = st.text_area("Plain text", key="settings_tpl_text")
        html = st.text_area("HTML", key="settings_tpl_html")
        c = st.columns(2)
        save_tpl = c[0].form_submit_button("Save template", key="settings_tpl_save")
        reset_tpl = c[1].form_submit_button("Back to the built-in one", key="settings_tpl_reset")
    if save_tpl:
        _save(
            lambda: templates.set_template(
                db, ctx.tenant_id, ctx.actor, topic, subject=subject, text=text, html=html
            ),
            f"The {topic} template is saved.",
        )
    if reset_tpl:
        _save(
            lambda: templates.set_template(db, ctx.tenant_id, ctx.actor, topic),
            f"The {topic} template is the built-in one again.",
        )
