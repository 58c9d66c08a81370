"""The Inventory page through AppTest, signed in through the real form, on a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from app_helpers import PASSWORD, app, seed_shop, sign_in, texts, titles

from app import charts
from app.catalog_view import stock_table
from core import catalog, inventory, tenants
from core.commands import CLI, Actor
from core.errors import PermissionDenied

PAGE = "pages/inventory.py"


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def open_inventory(shop, role: str):
    at = sign_in(app(), shop.login(role))
    at.switch_page(PAGE).run()
    assert not at.exception
    assert titles(at) == ["Inventory"]
    return at


def level(db, shop, sku: str, warehouse: str) -> dict:
    rows = inventory.stock_levels(db, shop.tenant.id, CLI, sku=sku, warehouse=warehouse)
    return rows[0] if rows else {"on_hand": 0, "available": 0, "reserved": 0, "reorder_point": 0}


def moves(db, shop, sku: str) -> int:
    return len(inventory.movements(db, shop.tenant.id, CLI, sku))


def stock_frame(at):
    return next(d.value for d in at.dataframe if "Reorder point" in d.value.columns)


@pytest.mark.parametrize("role", ["owner", "manager", "clerk"])
def test_staff_who_move_stock_see_levels_chart_forms_and_history(shop, role):
    at = open_inventory(shop, role)
    table = stock_frame(at)
    assert {(r.SKU, r.Warehouse) for r in table.itertuples()} == {
        ("RED", "EAST"),
        ("RED", "WEST"),
        ("BLUE", "EAST"),
    }
    assert len(at.get("plotly_chart")) == 1
    for key in ("receive_submit", "adjust_submit", "transfer_submit", "reorder_submit"):
        assert at.button(key=key)
    history = at.dataframe[-1].value
    assert "What" in history.columns and "Reserved for an order" in set(history["What"])


def test_an_analyst_sees_stock_but_no_forms_and_core_refuses_their_movement(db, shop):
    at = open_inventory(shop, "analyst")
    assert len(stock_frame(at)) == 3
    assert not [b for b in at.button if b.key and b.key.endswith("_submit")]
    assert "does not move it" in texts(at, "caption")
    analyst = at.session_state["oms_session"].actor
    before = level(db, shop, "RED", "EAST")
    with pytest.raises(PermissionDenied, match="analyst may not move stock"):
        inventory.receive(db, shop.tenant.id, analyst, sku="RED", warehouse="EAST", quantity=1)
    with pytest.raises(PermissionDenied, match="analyst may not move stock"):
        inventory.set_reorder_point(db, shop.tenant.id, analyst, sku="RED", warehouse="EAST", reorder_point=9)
    assert level(db, shop, "RED", "EAST") == before


def test_a_platform_admin_has_no_inventory_page_and_core_refuses_them(db, shop):
    name = f"admin-{uuid.uuid4().hex[:6]}"
    tenants.add_platform_admin(db, name, "platform password")
    at = sign_in(app(), name, "platform password")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)
    with pytest.raises(PermissionDenied):
        inventory.stock_levels(db, shop.tenant.id, Actor(name, tenants.PLATFORM_ADMIN))


def test_low_stock_is_flagged_and_filterable(db, shop):
    inventory.set_reorder_point(db, shop.tenant.id, CLI, sku="BLUE", warehouse="EAST", reorder_point=7)
    at = open_inventory(shop, "clerk")
    table = stock_frame(at)
    flagged = {(r.SKU, r.Warehouse) for r in table.itertuples() if r.Stock == "Low"}
    assert flagged == {("BLUE", "EAST")}  # 10 received, 3 reserved: 7 available <= 7
    at.checkbox(key="inventory_low").check().run()
    assert list(stock_frame(at)["SKU"]) == ["BLUE"]


def test_receive_adds_stock_and_says_so(db, shop):
    before = level(db, shop, "RED", "WEST")
    at = open_inventory(shop, "clerk")
    at.selectbox(key="receive_sku").select("RED")
    at.selectbox(key="receive_wh").select("WEST")
    at.number_input(key="receive_qty").set_value(4)
    at.button(key="receive_submit").click().run()
    assert not at.exception
    assert "Received 4 × RED" in texts(at, "success")
    assert level(db, shop, "RED", "WEST")["on_hand"] == before["on_hand"] + 4


def test_receive_of_zero_shows_cores_message_and_writes_nothing(db, shop):
    count = moves(db, shop, "RED")
    at = open_inventory(shop, "clerk")
    at.number_input(key="receive_qty").set_value(0)
    at.button(key="receive_submit").click().run()
    assert "quantity: Input should be greater than or equal to 1" in texts(at, "error")
    assert moves(db, shop, "RED") == count


def test_adjust_needs_a_reason_then_changes_on_hand(db, shop):
    before = level(db, shop, "BLUE", "EAST")
    count = moves(db, shop, "BLUE")
    at = open_inventory(shop, "manager")
    at.selectbox(key="adjust_sku").select("BLUE")
    at.selectbox(key="adjust_wh").select("EAST")
    at.number_input(key="adjust_change").set_value(-2)
    at.button(key="adjust_submit").click().run()
    assert "reason is required" in texts(at, "error")
    assert moves(db, shop, "BLUE") == count and level(db, shop, "BLUE", "EAST") == before

    at.text_input(key="adjust_reason").input("two broken in the count")
    at.button(key="adjust_submit").click().run()
    assert "Adjusted BLUE by -2" in texts(at, "success")
    assert level(db, shop, "BLUE", "EAST")["on_hand"] == before["on_hand"] - 2
    history = at.dataframe[-1].value
    assert history.iloc[0]["Note"] == "two broken in the count" and history.iloc[0]["On hand"] == "-2"


def test_transfer_moves_units_and_refuses_more_than_available(db, shop):
    east, west = level(db, shop, "RED", "EAST"), level(db, shop, "RED", "WEST")
    at = open_inventory(shop, "owner")
    at.selectbox(key="transfer_sku").select("RED")
    at.selectbox(key="transfer_from").select("WEST")
    at.selectbox(key="transfer_to").select("EAST")
    at.number_input(key="transfer_qty").set_value(99)
    at.button(key="transfer_submit").click().run()
    assert f"RED has {west['available']} available in WEST: cannot transfer 99" in texts(at, "error")
    assert level(db, shop, "RED", "WEST") == west

    at.number_input(key="transfer_qty").set_value(2)
    at.button(key="transfer_submit").click().run()
    assert "Transferred 2 × RED" in texts(at, "success")
    assert level(db, shop, "RED", "WEST")["on_hand"] == west["on_hand"] - 2
    assert level(db, shop, "RED", "EAST")["on_hand"] == east["on_hand"] + 2


def test_transfer_to_the_same_warehouse_is_refused(db, shop):
    count = moves(db, shop, "RED")
    at = open_inventory(shop, "clerk")
    at.selectbox(key="transfer_from").select("EAST")
    at.selectbox(key="transfer_to").select("EAST")
    at.button(key="transfer_submit").click().run()
    assert "a transfer needs two different warehouses" in texts(at, "error")
    assert moves(db, shop, "RED") == count


def test_with_one_active_warehouse_a_transfer_is_explained_not_offered(db, shop):
    catalog.set_warehouse_active(db, shop.tenant.id, CLI, "WEST", False)
    at = open_inventory(shop, "clerk")
    assert "A transfer needs an active product and two active warehouses." in texts(at, "info")
    keys = {b.key for b in at.button}
    assert "transfer_submit" not in keys and "receive_submit" in keys


def test_set_reorder_point(db, shop):
    at = open_inventory(shop, "clerk")
    at.selectbox(key="reorder_sku").select("RED")
    at.selectbox(key="reorder_wh").select("WEST")
    at.number_input(key="reorder_point").set_value(-1)
    at.button(key="reorder_submit").click().run()
    assert "reorder_point: Input should be greater than or equal to 0" in texts(at, "error")
    assert level(db, shop, "RED", "WEST")["reorder_point"] == 0
    at.number_input(key="reorder_point").set_value(6)
    at.button(key="reorder_submit").click().run()
    assert "Reorder point of RED in WEST is now 6" in texts(at, "success")
    assert level(db, shop, "RED", "WEST")["reorder_point"] == 6
    low = stock_frame(at)
    assert low[(low.SKU == "RED") & (low.Warehouse == "WEST")]["Stock"].item() == "Low"


def test_movement_history_follows_the_chosen_sku(db, shop):
    at = open_inventory(shop, "clerk")
    at.selectbox(key="inventory_history_sku").select("RED").run()
    history = at.dataframe[-1].value
    assert len(history) == moves(db, shop, "RED")
    assert {"Received", "Reserved for an order"} <= set(history["What"])


def test_a_shop_without_warehouses_or_products_says_to_add_them_first(db, tenant):
    tenants.add_user(db, tenant.id, "clerk", "clerk", PASSWORD)
    at = sign_in(app(), f"clerk@{tenant.slug}")
    at.switch_page(PAGE).run()
    assert not at.exception
    assert "Add warehouses and products first" in texts(at, "info")
    assert not at.dataframe


def test_the_stock_chart_stacks_available_and_reserved_per_warehouse():
    rows = [
        {"sku": "A", "warehouse": "EAST", "available": 3, "reserved": 2},
        {"sku": "B", "warehouse": "EAST", "available": 1, "reserved": 0},
        {"sku": "A", "warehouse": "WEST", "available": 5, "reserved": 1},
    ]
    fig = charts.stock_by_warehouse(rows)
    by_name = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data}
    assert by_name == {"Available": {"EAST": 4, "WEST": 5}, "Reserved": {"EAST": 2, "WEST": 1}}
    assert fig.layout.barmode == "stack"
    assert charts.stock_by_warehouse([]).data == ()


def test_stock_table_marks_low_rows():
    row = {"sku": "A", "warehouse": "W", "on_hand": 2, "reserved": 0, "available": 2, "reorder_point": 2}
    table = stock_table([{**row, "low": True}, {**row, "sku": "B", "low": False}], {"A": "Apple"})
    assert list(table["Stock"]) == ["Low", "OK"] and list(table["Product"]) == ["Apple", ""]
