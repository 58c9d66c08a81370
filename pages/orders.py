"""Orders: filters kept in the URL, a paginated table filtered in SQL, and one order's detail."""

import streamlit as st

from app import actions
from app import orders_view as view
from app.database import database
from app.format import local_time, money
from app.session import UNAVAILABLE, tenant_context
from core import catalog
from core.customers import list_customers
from core.errors import OmsError
from core.notifications import dispatch
from core.orders import handlers
from core.orders.model import CANCELLABLE, CHANNELS, SHIPPABLE
from core.orders.queries import STATUSES, list_orders, order_detail
from core.payments import service as payments

ctx = tenant_context()
db = database()
st.title("Orders")

# The URL is the source of truth on arrival; the widgets start from it and write it back.
url = view.from_params(st.query_params.to_dict())
for key, value in (
    ("orders_status", list(url.status)),
    ("orders_channel", list(url.channel)),
    ("orders_from", url.date_from),
    ("orders_to", url.date_to),
    ("orders_q", url.text),
    ("orders_customer", url.customer),
    ("orders_page", url.page),
    ("orders_open", url.order),
):
    st.session_state.setdefault(key, value)

cols = st.columns([2.5, 1.6, 1.2, 1.2, 2, 2])
cols[0].multiselect("Status", STATUSES, key="orders_status", format_func=lambda s: s.replace("_", " "))
cols[1].multiselect("Channel", CHANNELS, key="orders_channel")
cols[2].date_input("From", key="orders_from", format="YYYY-MM-DD")
cols[3].date_input("To", key="orders_to", format="YYYY-MM-DD")
cols[4].text_input("Search", key="orders_q", placeholder="order number or customer name")
try:
    buyers = {str(c["id"]): c["name"] for c in list_customers(db, ctx.tenant_id, ctx.actor, limit=1000)}
except OmsError:
    buyers = {}
if st.session_state.orders_customer not in (None, *buyers):
    st.session_state.orders_customer = None  # a customer id from another shop, or gone: no filter
cols[5].selectbox(
    "Customer",
    [None, *buyers],
    format_func=lambda c: "any" if c is None else buyers[c],
    key="orders_customer",
)

state = view.ViewState(
    status=tuple(st.session_state.orders_status),
    channel=tuple(st.session_state.orders_channel),
    date_from=st.session_state.orders_from,
    date_to=st.session_state.orders_to,
    text=st.session_state.orders_q,
    customer=st.session_state.orders_customer,
    page=st.session_state.orders_page,
    order=st.session_state.orders_open,
)
# A change of filters starts again at page 1.
signature = state.filters()
if st.session_state.get("orders_signature", signature) != signature:
    st.session_state.orders_page = 1
    state = view.ViewState(**{**state.__dict__, "page": 1})
st.session_state.orders_signature = signature
st.query_params.from_dict(state.to_params())

try:
    page = list_orders(
        db, ctx.tenant_id, ctx.actor, state.filters(), page=state.page, page_size=view.PAGE_SIZE
    )
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()


def _bulk_actions(rows: list[dict]) -> None:
    """Cancel or ship several orders of this page at once; each is its own command, checked by core."""
    cancellable = [r["number"] for r in rows if r["status"] in CANCELLABLE]
    shippable = [r["number"] for r in rows if r["status"] in SHIPPABLE]
    can_cancel, can_ship = ctx.actor.can("orders.cancel"), ctx.actor.can("orders.fulfil")
    if not ((can_cancel and cancellable) or (can_ship and shippable)):
        return
    with st.expander("Bulk actions on this page"):
        if flash := st.session_state.pop("orders_bulk_flash", None):
            (st.warning if flash[1] else st.success)(flash[0] + "".join(f"\n- {r}" for r in flash[1]))
        if can_cancel and cancellable:
            chosen = st.multiselect(
                "Orders to cancel", cancellable, format_func=lambda n: f"#{n}", key="bulk_cancel"
            )
            if chosen and st.button(f"Cancel {len(chosen)} order(s)…", key="bulk_cancel_ask"):
                actions.ask("orders_bulk_cancel", tuple(chosen))
            if chosen and actions.asked("orders_bulk_cancel") == tuple(chosen):
                st.warning(
                    f"Cancel {', '.join(f'#{n}' for n in chosen)}? Their stock is released and what was paid"
                    " is refunded. This cannot be undone."
                )
                c = st.columns(2)
                if c[0].button("Yes, cancel them", key="bulk_cancel_confirm", type="primary"):
                    batch = actions.draft_key("bulk_cancel")
                    done, refused = actions.run_each(
                        chosen,
                        lambda n: handlers.cancel_order(
                            db, ctx.tenant_id, ctx.actor, n, reason="bulk cancel", key=f"{batch}:{n}"
                        ),
                    )
                    _bulk_done("cancelled", done, refused, "orders_bulk_cancel")
                if c[1].button("Keep them", key="bulk_cancel_keep"):
                    actions.close("orders_bulk_cancel")
                    st.rerun()
        if can_ship and shippable:
            with st.form("bulk_ship"):
                carrier = st.text_input("Carrier", key="bulk_ship_carrier")
                listing = st.text_area(
                    "Tracking numbers, one line per order: order number, then its tracking number",
                    placeholder="\n".join(f"{n} TRACKING-{n}" for n in shippable[:2]),
                    key="bulk_ship_tracking",
                )
                if st.form_submit_button("Ship these orders"):
                    pairs, bad = view.tracking_lines(listing, shippable)
                    if bad or not pairs:
                        st.error(bad or "Give at least one line: an order number, then its tracking number.")
                    else:
                        batch = actions.draft_key("bulk_ship")
                        done, refused = actions.run_each(
                            list(pairs),
                            lambda n: handlers.ship_order(
                                db,
                                ctx.tenant_id,
                                ctx.actor,
                                n,
                                carrier=carrier,
                                tracking=pairs[n],
                                key=f"{batch}:{n}",
                            ),
                        )
                        _bulk_done("shipped", done, refused, None)


def _bulk_done(verb: str, done: list[dict], refused: list[str], confirmation: str | None) -> None:
    for form in ("bulk_cancel", "bulk_ship"):
        st.session_state.pop(f"{form}_idem", None)
    if confirmation:
        actions.close(confirmation)
    st.session_state.orders_bulk_flash = (
        f"{len(done)} order(s) {verb}" + (f", {len(refused)} refused:" if refused else "."),
        refused,
    )
    st.rerun()


if not page.rows:
    if state.filtered():
        st.info("No order matches these filters. Change or clear them to see more orders.")
    elif state.page > 1:
        st.info("This page is past the last order. Go back to the first page.")
    else:
        st.info("No orders yet. Place the first one on the New order page.")
        if ctx.actor.can("orders.place"):
            st.page_link("pages/new_order.py", label="New order", icon=":material/add_shopping_cart:")
else:
    table = view.orders_table(page.rows, ctx.zone)
    picked = st.dataframe(
        table,
        hide_index=True,
        use_container_width=True,
        on_select="rerun",
        selection_mode="single-row",
        key="orders_table",
    )
    rows = picked.selection.rows if picked is not None and hasattr(picked, "selection") else []
    _bulk_actions(page.rows)
    if rows and page.rows[rows[0]]["number"] != st.session_state.get("orders_picked"):
        st.session_state.orders_picked = page.rows[rows[0]]["number"]
        st.session_state.orders_open = page.rows[rows[0]]["number"]
        st.rerun()

    def _go(delta: int) -> None:
        st.session_state.orders_page = max(1, st.session_state.orders_page + delta)

    nav = st.columns([1, 1, 6])
    nav[0].button("Previous", key="orders_prev", disabled=page.page <= 1, on_click=_go, args=(-1,))
    nav[1].button("Next", key="orders_next", disabled=not page.has_next, on_click=_go, args=(1,))
    nav[2].caption(
        f"Page {page.page} · {len(page.rows)} orders on this page · times in {ctx.tenant.time_zone}"
    )

st.divider()
st.number_input("Open order number", min_value=1, step=1, key="orders_open", placeholder="e.g. 1001")
number = st.session_state.orders_open
if number is None:
    st.caption("Pick a row in the table or type an order number to see its lines, stock and history.")
    st.stop()

try:
    detail = order_detail(db, ctx.tenant_id, ctx.actor, number)
except OmsError as exc:
    st.warning(str(exc))
    st.stop()

cur = detail["currency"]
st.subheader(f"Order #{detail['number']} · {detail['status'].replace('_', ' ')}")
m = st.columns(5)
m[0].metric("Total", money(detail["total"], cur))
m[1].metric("Paid", money(detail["paid_amount"], cur))
m[2].metric("Refunded", money(detail["refunded_amount"], cur))
m[3].metric("Customer", detail["customer_name"])
m[4].metric("Placed", local_time(detail["placed_at"], ctx.zone))
if detail["status"] == "reserved" and detail["reserved_until"]:
    st.caption(
        f"Stock is held until {local_time(detail['reserved_until'], ctx.zone)} unless the order is paid."
    )

if flash := st.session_state.pop("orders_flash", None):
    st.success(flash)

# Actions the state allows and the role may take; core checks both again.
allowed = view.actions_for(detail["status"], ctx.actor.can)


def _run(label: str, command, **kwargs) -> None:
    # The key names the order's version: a double click repeats the same command and is answered once.
    key = f"ui:{detail['id']}:{label}:v{detail['version']}"
    try:
        result = command(db, ctx.tenant_id, ctx.actor, detail["id"], key=key, **kwargs)
    except OmsError as exc:
        st.error(str(exc))
        return
    st.session_state.orders_flash = f"Order #{result['number']} is now {result['status'].replace('_', ' ')}."
    st.session_state.pop("orders_confirm_cancel", None)
    st.rerun()


if allowed:
    a = st.columns(4)
    if "pay" in allowed and a[0].button(f"Record payment of {money(detail['total'], cur)}", key="order_pay"):
        _run("pay", handlers.pay_order)
    if "charge" in allowed and a[1].button("Charge through the gateways", key="order_charge"):
        _run("charge", payments.request_payment)
    if "retry_payment" in allowed and a[0].button("Retry payment", key="order_retry_payment"):
        _run("retry", payments.retry_payment)
    if "deliver" in allowed and a[0].button("Mark delivered", key="order_deliver"):
        _run("deliver", handlers.deliver_order)
    if "cancel" in allowed and a[2].button("Cancel order…", key="order_cancel"):
        st.session_state.orders_confirm_cancel = detail["id"]
    if "ship" in allowed:
        with st.form("order_ship"):
            s = st.columns(2)
            carrier = s[0].text_input("Carrier", key="ship_carrier")
            tracking = s[1].text_input("Tracking number", key="ship_tracking")
            if st.form_submit_button("Ship"):
                _run("ship", handlers.ship_order, carrier=carrier, tracking=tracking)
    if "return" in allowed:
        returnable = [x for x in detail["lines"] if x["quantity"] > x["returned_quantity"]]
        warehouses = [w["code"] for w in catalog.list_warehouses(db, ctx.tenant_id, ctx.actor) if w["active"]]
        with st.form("order_return"):
            st.markdown("**Return items** — the units go back into stock and are refunded")
            wanted = {
                x["line_no"]: st.number_input(
                    f"{x['sku']} · {x['name']} (up to {x['quantity'] - x['returned_quantity']})",
                    min_value=0,
                    max_value=x["quantity"] - x["returned_quantity"],
                    step=1,
                    key=f"return_qty_{x['line_no']}",
                )
                for x in returnable
            }
            into = st.selectbox("Restock into", warehouses, key="return_warehouse")
            sure = st.checkbox("The items are back: refund them to the customer", key="return_sure")
            if st.form_submit_button("Take back and refund"):
                items = {line: int(q) for line, q in wanted.items() if q}
                if not items:
                    st.error("Choose how many units of at least one line come back.")
                elif not sure:
                    st.error("Tick the box to confirm the items are back before refunding them.")
                else:
                    _run("return", handlers.return_items, items=items, warehouse=into)
    if st.session_state.get("orders_confirm_cancel") == detail["id"]:
        with st.container(border=True):
            st.warning(
                f"Cancel order #{detail['number']}? Its reserved stock is released"
                + (" and what was paid is refunded." if detail["paid_amount"] else ".")
                + " This cannot be undone."
            )
            reason = st.text_input("Reason (optional)", key="cancel_reason")
            c = st.columns(2)
            if c[0].button(
                f"Yes, cancel order #{detail['number']}", key="order_cancel_confirm", type="primary"
            ):
                _run("cancel", handlers.cancel_order, reason=reason)
            if c[1].button("Keep the order", key="order_cancel_keep"):
                st.session_state.pop("orders_confirm_cancel", None)
                st.rerun()

tabs = st.tabs(["Lines", "Stock allocation", "Shipments", "Payments", "Notifications", "Timeline"])
with tabs[0]:
    st.dataframe(view.lines_table(detail), hide_index=True, use_container_width=True)
    st.caption(
        f"Subtotal {money(detail['subtotal'], cur)} · shipping {money(detail['shipping_fee'], cur)}"
        f" · tax {money(detail['tax'], cur)} · total {money(detail['total'], cur)}"
    )
with tabs[1]:
    if detail["allocations"]:
        st.dataframe(view.allocations_table(detail), hide_index=True, use_container_width=True)
    else:
        st.info("No stock is allocated to this order (it was rejected, or its stock was released).")
with tabs[2]:
    if detail["shipments"]:
        st.dataframe(view.shipments_table(detail, ctx.zone), hide_index=True, use_container_width=True)
    else:
        st.info("Nothing shipped yet. A paid order can be shipped with its carrier and tracking number.")
with tabs[3]:
    tries = payments.list_attempts(db, ctx.tenant_id, ctx.actor, order=detail["id"])
    if tries:
        st.dataframe(view.attempts_table(tries, ctx.zone), hide_index=True, use_container_width=True)
    else:
        st.info(
            "No charge through the gateways yet. A reserved order can be charged, or its payment recorded."
        )
with tabs[4]:
    sent = dispatch.list_notifications(db, ctx.tenant_id, ctx.actor, order=detail["id"])
    if sent:
        st.dataframe(view.notifications_table(sent, ctx.zone), hide_index=True, use_container_width=True)
    else:
        st.info("No notifications for this order: the customer's channels may be off or not set up.")
with tabs[5]:
    st.dataframe(view.timeline_table(detail, ctx.zone), hide_index=True, use_container_width=True)
