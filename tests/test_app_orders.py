"""The Orders and New order pages through AppTest, signed in through the real form."""

from __future__ import annotations

import pytest
from app_helpers import app, seed_shop, sign_in, texts, titles

from app.format import money
from app.orders_view import ViewState, from_params
from core import customers
from core.commands import CLI
from core.orders import handlers
from core.orders.queries import list_orders, order_detail
from core.payments import service as payments


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def orders_page(shop, role: str, **params: str):
    """Signed in (landing on Overview), then on the Orders page, with URL query parameters if given."""
    at = sign_in(app(), shop.login(role))
    for name, value in params.items():
        at.query_params[name] = value
    return at.switch_page("pages/orders.py").run()


def orders_shown(at) -> list[str]:
    return list(at.dataframe[0].value["Order"])


def test_orders_lists_the_tenants_orders_newest_first_in_its_currency(shop, other_tenant, db):
    seed_shop(db, other_tenant)  # another shop's orders must not show
    at = orders_page(shop, "clerk")
    assert not at.exception
    numbers = [f"#{o['number']}" for o in reversed(shop.orders)]
    assert orders_shown(at) == numbers
    table = at.dataframe[0].value
    assert set(table["Total"]) == {money(o["total"], "USD") for o in shop.orders}
    assert table["Placed"].iloc[0] == "2025-03-03 09:30"  # the tenant's zone (UTC here)


def test_filtering_by_status_is_done_in_sql_and_kept_in_the_url(shop):
    at = orders_page(shop, "owner")
    at.multiselect(key="orders_status").select("paid").run()
    assert orders_shown(at) == [f"#{shop.orders[0]['number']}"]
    assert at.query_params.get("status") == "paid"


def test_a_shared_url_opens_the_same_view(shop):
    at = orders_page(shop, "owner", status="reserved", channel="pos")
    assert orders_shown(at) == [f"#{shop.orders[1]['number']}"]


def test_no_match_says_what_to_do(shop):
    at = orders_page(shop, "owner")
    at.text_input(key="orders_q").input("nobody by that name").run()
    assert not at.dataframe
    assert "No order matches these filters" in texts(at, "info")


def test_opening_an_order_shows_lines_allocation_and_timeline_then_pay_and_cancel(shop):
    at = orders_page(shop, "manager")
    third = shop.orders[2]
    at.number_input(key="orders_open").set_value(third["number"]).run()
    assert not at.exception
    assert f"Order #{third['number']} · reserved" in [s.value for s in at.subheader]
    frames = [d.value for d in at.dataframe]
    assert any(list(f.columns[:2]) == ["Line", "SKU"] and set(f["SKU"]) == {"RED", "BLUE"} for f in frames)
    assert any("Warehouse" in f.columns and "EAST" in set(f["Warehouse"]) for f in frames)
    assert any("What" in f.columns and "Order placed" in set(f["What"]) for f in frames)

    at.button(key="order_pay").click().run()
    assert f"Order #{third['number']} is now paid." in texts(at, "success")
    at.button(key="order_cancel").click().run()
    assert "This cannot be undone" in texts(at, "warning")
    at.button(key="order_cancel_keep").click().run()
    assert f"Order #{third['number']} · paid" in [s.value for s in at.subheader]
    at.button(key="order_cancel").click().run()
    at.button(key="order_cancel_confirm").click().run()
    assert f"Order #{third['number']} is now cancelled." in texts(at, "success")


def test_an_unknown_order_number_is_a_warning_not_a_traceback(shop):
    at = orders_page(shop, "owner")
    at.number_input(key="orders_open").set_value(999_999).run()
    assert not at.exception
    assert "no order #999999" in texts(at, "warning")


def add_line(at) -> None:
    next(b for b in at.button if b.label == "Add line").click().run()


def test_new_order_places_and_shows_where_it_was_reserved(db, shop):
    at = sign_in(app(), shop.login("clerk"))
    at.switch_page("pages/new_order.py").run()
    assert titles(at) == ["New order"]
    at.selectbox(key="new_order_sku").select("RED")
    at.number_input(key="new_order_qty").set_value(7)
    add_line(at)
    assert "Subtotal $87.50" in texts(at, "markdown")
    at.button(key="new_order_place").click().run()
    assert not at.exception
    success = texts(at, "success")
    assert "placed" in success and "reserved in full" in success
    reserved = at.dataframe[0].value
    assert {(r.Warehouse, r.Quantity) for r in reserved.itertuples()} == {("EAST", 2), ("WEST", 5)}
    page = list_orders(db, shop.tenant.id, at.session_state["oms_session"].actor)
    assert len(page.rows) == 4 and page.rows[0]["status"] == "reserved"


def test_new_order_out_of_stock_names_the_short_line(shop):
    at = sign_in(app(), shop.login("owner"))
    at.switch_page("pages/new_order.py").run()
    at.selectbox(key="new_order_sku").select("BLUE")
    at.number_input(key="new_order_qty").set_value(50)
    add_line(at)
    at.button(key="new_order_place").click().run()
    assert "BLUE (wanted 50, available 7)" in texts(at, "error")


def test_view_state_round_trips_through_the_url_and_ignores_junk():
    state = from_params(
        {"status": "paid,bogus", "channel": "pos", "from": "2025-01-01", "page": "3", "q": "ada"}
    )
    assert state.status == ("paid",) and state.channel == ("pos",) and state.page == 3
    assert from_params(state.to_params()) == state
    assert from_params({"from": "not a date", "page": "-2", "order": "x"}) == ViewState()


def test_a_reserved_order_is_charged_through_the_gateways_and_a_failed_one_retried(db, shop):
    payments.set_gateways(
        db, shop.tenant.id, CLI, [{"name": "sim", "kind": "simulated", "decline_rate": 1.0}]
    )
    at = orders_page(shop, "clerk")
    third = shop.orders[2]
    at.number_input(key="orders_open").set_value(third["number"]).run()
    at.button(key="order_charge").click().run()
    assert f"Order #{third['number']} is now payment pending." in texts(at, "success")
    assert not any(b.key == "order_cancel" for b in at.button)  # a pending charge cannot be cancelled

    payments.process_payments(db, "test", 5.0, only=[shop.tenant.id])  # the worker: declined
    at.number_input(key="orders_open").set_value(third["number"]).run()
    assert f"Order #{third['number']} · payment failed" in [s.value for s in at.subheader]
    frames = [d.value for d in at.dataframe]
    assert any("Outcome" in f.columns and list(f["Outcome"]) == ["declined"] for f in frames)
    assert any("Topic" in f.columns and "payment failed" in set(f["Topic"]) for f in frames)
    at.button(key="order_retry_payment").click().run()
    assert f"Order #{third['number']} is now payment pending." in texts(at, "success")


def submit_return(at) -> None:
    next(b for b in at.button if b.label == "Take back and refund").click().run()


def test_a_delivered_order_takes_back_returned_units_and_refunds_them(db, owner, shop):
    first = shop.orders[0]  # the paid one: one RED
    handlers.ship_order(db, shop.tenant.id, CLI, first["order_id"], carrier="UPS", tracking="1Z")
    handlers.deliver_order(db, shop.tenant.id, CLI, first["order_id"])

    def on_hand() -> int:
        return owner.execute(
            "SELECT sum(on_hand) FROM stock WHERE tenant_id = %s", [shop.tenant.id]
        ).fetchone()[0]

    before = on_hand()
    at = orders_page(shop, "clerk")
    at.number_input(key="orders_open").set_value(first["number"]).run()
    assert not at.exception

    submit_return(at)  # nothing chosen: a message, nothing written
    assert "at least one line" in texts(at, "error")
    at.number_input(key="return_qty_1").set_value(1)
    submit_return(at)
    assert "Tick the box" in texts(at, "error")  # the confirmation is required
    assert on_hand() == before

    at.number_input(key="return_qty_1").set_value(1)
    at.checkbox(key="return_sure").check()
    submit_return(at)
    assert not at.exception
    assert f"Order #{first['number']} is now refunded." in texts(at, "success")
    status, refunded, paid = owner.execute(
        "SELECT status, refunded_amount, paid_amount FROM orders WHERE id = %s", [first["order_id"]]
    ).fetchone()
    assert (status, refunded) == ("refunded", paid)
    assert on_hand() == before + 1


def test_bulk_cancel_asks_first_then_cancels_each_chosen_order(db, owner, shop):
    reserved = [shop.orders[1]["number"], shop.orders[2]["number"]]
    at = orders_page(shop, "manager")
    at.multiselect(key="bulk_cancel").select(reserved[0]).select(reserved[1]).run()
    at.button(key="bulk_cancel_ask").click().run()
    assert "This cannot be undone" in texts(at, "warning")
    at.button(key="bulk_cancel_keep").click().run()  # kept: nothing changed
    assert {r["status"] for r in list_orders(db, shop.tenant.id, CLI).rows if r["number"] in reserved} == {
        "reserved"
    }

    at.button(key="bulk_cancel_ask").click().run()
    at.button(key="bulk_cancel_confirm").click().run()
    assert not at.exception
    assert "2 order(s) cancelled." in texts(at, "success")
    statuses = {r["number"]: r["status"] for r in list_orders(db, shop.tenant.id, CLI).rows}
    assert [statuses[n] for n in reserved] == ["cancelled", "cancelled"]
    held = owner.execute("SELECT sum(reserved) FROM stock WHERE tenant_id = %s", [shop.tenant.id]).fetchone()[
        0
    ]
    assert held == 1  # only the paid order's unit is still held


def test_bulk_ship_takes_a_tracking_number_per_order_and_refuses_a_bad_line(db, shop):
    paid = shop.orders[0]["number"]
    at = orders_page(shop, "clerk")
    at.text_input(key="bulk_ship_carrier").input("UPS")
    at.text_area(key="bulk_ship_tracking").input(f"{shop.orders[1]['number']} 1Z-WRONG")  # not paid
    next(b for b in at.button if b.label == "Ship these orders").click().run()
    assert "is not an order on this page that can be shipped" in texts(at, "error")
    assert order_detail(db, shop.tenant.id, CLI, paid)["status"] == "paid"

    at.text_area(key="bulk_ship_tracking").input(f"#{paid} 1Z-BULK-1")
    next(b for b in at.button if b.label == "Ship these orders").click().run()
    assert not at.exception
    assert "1 order(s) shipped." in texts(at, "success")
    detail = order_detail(db, shop.tenant.id, CLI, paid)
    assert detail["status"] == "shipped"
    assert [(s["carrier"], s["tracking"]) for s in detail["shipments"]] == [("UPS", "1Z-BULK-1")]


def test_new_order_adds_a_customer_on_the_spot_and_picks_them(db, shop):
    at = sign_in(app(), shop.login("clerk"))
    at.switch_page("pages/new_order.py").run()
    at.text_input(key="new_customer_name").input("Grace Hopper")
    at.text_input(key="new_customer_email").input("not an email")
    next(b for b in at.button if b.label == "Add customer").click().run()
    assert "email" in texts(at, "error").lower()  # core's message; nobody added
    assert not [c for c in customers.list_customers(db, shop.tenant.id, CLI) if c["name"] == "Grace Hopper"]

    at.text_input(key="new_customer_email").input("grace@example.com")
    next(b for b in at.button if b.label == "Add customer").click().run()
    assert not at.exception
    assert "Added Grace Hopper" in texts(at, "success")
    assert at.selectbox(key="new_order_customer").value["name"] == "Grace Hopper"
    at.selectbox(key="new_order_sku").select("BLUE")
    add_line(at)
    at.button(key="new_order_place").click().run()
    page = list_orders(db, shop.tenant.id, CLI)
    assert page.rows[0]["customer_name"] == "Grace Hopper"


def test_the_customer_filter_is_in_the_url_and_another_shops_customer_is_ignored(db, shop, other_tenant):
    grace = customers.add_customer(db, shop.tenant.id, CLI, name="Grace Hopper")["id"]
    hers = handlers.place_order(db, shop.tenant.id, CLI, customer_id=grace, lines=[("BLUE", 1)])
    at = orders_page(shop, "clerk")
    at.selectbox(key="orders_customer").select(grace).run()
    assert orders_shown(at) == [f"#{hers['number']}"]
    assert at.query_params.get("customer") == grace

    shared = orders_page(shop, "clerk", customer=grace)
    assert orders_shown(shared) == [f"#{hers['number']}"]

    stranger = seed_shop(db, other_tenant).customer
    foreign = orders_page(shop, "clerk", customer=stranger)
    assert not foreign.exception
    assert len(orders_shown(foreign)) == len(shop.orders) + 1  # no filter: this shop's orders only
