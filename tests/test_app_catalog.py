"""The Products and Customers pages through AppTest, signed in through the real form."""

from __future__ import annotations

import pytest
from app_helpers import app, seed_shop, sign_in, texts, titles

from app.format import major_units, minor_units
from core import catalog, customers
from core.commands import CLI
from core.errors import PermissionDenied

PRODUCTS, CUSTOMERS = "pages/products.py", "pages/customers.py"


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def open_page(shop, role: str, path: str, title: str):
    at = sign_in(app(), shop.login(role))
    at.switch_page(path).run()
    assert not at.exception
    assert titles(at) == [title]
    return at


def product(db, shop, sku: str) -> dict | None:
    return next(
        (p for p in catalog.list_products(db, shop.tenant.id, CLI, search=sku) if p["sku"] == sku), None
    )


def people(db, shop) -> dict[str, dict]:
    return {c["name"]: c for c in customers.list_customers(db, shop.tenant.id, CLI)}


# Products ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "manages"), [("owner", True), ("manager", True), ("clerk", False), ("analyst", False)]
)
def test_products_list_for_every_catalog_viewer_forms_only_for_managers(shop, role, manages):
    at = open_page(shop, role, PRODUCTS, "Products")
    table = at.dataframe[0].value
    assert list(table["SKU"]) == ["BLUE", "RED"]
    assert list(table["Price"]) == ["$8.00", "$12.50"]
    buttons = {b.key for b in at.button}
    assert ({"add_product_submit", "edit_product_submit", "products_toggle"} <= buttons) is manages
    assert bool(buttons & {"add_product_submit", "edit_product_submit", "products_toggle"}) is manages


def test_product_search_narrows_the_list_and_says_when_nothing_matches(shop):
    at = open_page(shop, "analyst", PRODUCTS, "Products")
    at.text_input(key="products_q").input("blue").run()
    assert list(at.dataframe[0].value["SKU"]) == ["BLUE"]
    at.text_input(key="products_q").input("no such thing").run()
    assert not at.dataframe and "No product matches" in texts(at, "info")


def test_add_a_product_with_a_price_in_major_units(db, shop):
    at = open_page(shop, "manager", PRODUCTS, "Products")
    at.text_input(key="add_product_sku").input("green-mug")
    at.text_input(key="add_product_name").input("Green mug")
    at.text_input(key="add_product_category").input("Mugs")
    at.text_input(key="add_product_price").input("9.99")
    at.button(key="add_product_submit").click().run()
    assert not at.exception
    assert "Added GREEN-MUG · Green mug at $9.99" in texts(at, "success")
    assert product(db, shop, "GREEN-MUG") == {
        "sku": "GREEN-MUG",
        "name": "Green mug",
        "category": "Mugs",
        "price": 999,
        "active": True,
    }
    assert "GREEN-MUG" in set(at.dataframe[0].value["SKU"])


@pytest.mark.parametrize(
    ("sku", "price", "message"),
    [
        ("NEW", "-1", "price: Input should be greater than or equal to 0"),  # core's check
        ("NEW", "abc", "price: 'abc' is not an amount in USD"),
        ("NEW", "1.999", "at most 2 decimal places"),
        ("RED", "5", "a product with SKU RED already exists"),
        ("bad sku!", "5", "sku: String should match pattern"),
    ],
)
def test_bad_product_input_shows_a_clear_message_and_writes_nothing(db, shop, sku, price, message):
    before = catalog.list_products(db, shop.tenant.id, CLI)
    at = open_page(shop, "owner", PRODUCTS, "Products")
    at.text_input(key="add_product_sku").input(sku)
    at.text_input(key="add_product_name").input("Something")
    at.text_input(key="add_product_price").input(price)
    at.button(key="add_product_submit").click().run()
    assert not at.exception
    assert message in texts(at, "error")
    assert catalog.list_products(db, shop.tenant.id, CLI) == before


def test_edit_a_product(db, shop):
    at = open_page(shop, "owner", PRODUCTS, "Products")
    at.selectbox(key="products_edit_sku").select("RED").run()
    assert at.text_input(key="edit_product_price_RED").value == "12.50"
    at.text_input(key="edit_product_name_RED").input("")
    at.button(key="edit_product_submit").click().run()
    assert "name is required" in texts(at, "error")
    assert product(db, shop, "RED")["name"] == "Red mug"

    at.text_input(key="edit_product_name_RED").input("Red mug, large")
    at.text_input(key="edit_product_price_RED").input("13")
    at.button(key="edit_product_submit").click().run()
    assert "Saved RED · Red mug, large at $13.00" in texts(at, "success")
    assert product(db, shop, "RED")["price"] == 1300 and product(db, shop, "RED")["name"] == "Red mug, large"


def test_deactivate_and_reactivate_a_product_after_confirming(db, shop):
    at = open_page(shop, "manager", PRODUCTS, "Products")
    at.selectbox(key="products_edit_sku").select("BLUE").run()
    at.button(key="products_toggle").click().run()
    assert "Deactivate BLUE · Blue mug?" in texts(at, "warning")
    at.button(key="products_toggle_keep").click().run()
    assert product(db, shop, "BLUE")["active"] is True and not at.warning

    at.button(key="products_toggle").click().run()
    at.button(key="products_toggle_confirm").click().run()
    assert "BLUE is now inactive" in texts(at, "success")
    assert product(db, shop, "BLUE")["active"] is False
    assert at.dataframe[0].value.set_index("SKU").loc["BLUE", "Status"] == "Inactive"

    at.button(key="products_toggle").click().run()
    assert "Reactivate BLUE" in texts(at, "warning")
    at.button(key="products_toggle_confirm").click().run()
    assert product(db, shop, "BLUE")["active"] is True


def test_core_refuses_catalog_changes_from_clerks_and_analysts(db, shop):
    for role in ("clerk", "analyst"):
        at = open_page(shop, role, PRODUCTS, "Products")
        actor = at.session_state["oms_session"].actor
        with pytest.raises(PermissionDenied, match=f"{role} may not manage catalog"):
            catalog.add_product(db, shop.tenant.id, actor, sku="X1", name="X", price=1)
        with pytest.raises(PermissionDenied):
            catalog.update_product(db, shop.tenant.id, actor, "RED", price=1)
        with pytest.raises(PermissionDenied):
            catalog.set_product_active(db, shop.tenant.id, actor, "RED", False)
    assert product(db, shop, "RED") == {
        "sku": "RED",
        "name": "Red mug",
        "category": "",
        "price": 1250,
        "active": True,
    }


def test_prices_convert_between_major_and_minor_units():
    assert minor_units("12.5", "USD") == 1250 and minor_units("$1,234.56", "USD") == 123456
    assert minor_units("1200", "JPY") == 1200 and major_units(1200, "JPY") == "1200"
    assert major_units(1250, "EUR") == "12.50" and minor_units(major_units(7, "GBP"), "GBP") == 7
    for bad, message in (("", "price is required"), ("1.5", "no decimal places"), ("1e99", "too large")):
        with pytest.raises(ValueError, match=message):
            minor_units(bad, "JPY")


# Customers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "manager", "clerk"])
def test_customers_list_and_forms_for_staff(shop, role):
    at = open_page(shop, role, CUSTOMERS, "Customers")
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["Ada Lovelace"] and table["Notifications"].item() == "email"
    assert at.button(key="add_customer_submit") and at.button(key="edit_customer_submit")


def test_an_analyst_has_no_customers_page_and_core_refuses_them(db, shop):
    at = sign_in(app(), shop.login("analyst"))
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(CUSTOMERS)
    analyst = at.session_state["oms_session"].actor
    with pytest.raises(PermissionDenied, match="analyst may not view customers"):
        customers.list_customers(db, shop.tenant.id, analyst)
    with pytest.raises(PermissionDenied, match="analyst may not manage customers"):
        customers.add_customer(db, shop.tenant.id, analyst, name="Eve")
    with pytest.raises(PermissionDenied):
        customers.set_customer_active(db, shop.tenant.id, analyst, shop.customer, False)
    assert list(people(db, shop)) == ["Ada Lovelace"]


def test_customer_search(shop):
    at = open_page(shop, "clerk", CUSTOMERS, "Customers")
    at.text_input(key="customers_q").input("ADA@example").run()
    assert list(at.dataframe[0].value["Name"]) == ["Ada Lovelace"]
    at.text_input(key="customers_q").input("grace").run()
    assert not at.dataframe and "No customer matches" in texts(at, "info")


def test_add_a_customer_and_a_bad_email_writes_nothing(db, shop):
    at = open_page(shop, "clerk", CUSTOMERS, "Customers")
    at.text_input(key="add_customer_name").input("Grace Hopper")
    at.text_input(key="add_customer_email").input("grace-at-navy")
    at.button(key="add_customer_submit").click().run()
    assert "email: 'grace-at-navy' is not an email address" in texts(at, "error")
    assert list(people(db, shop)) == ["Ada Lovelace"]

    at.text_input(key="add_customer_email").input("grace@navy.mil")
    at.text_input(key="add_customer_phone").input("+1 555 0100")
    at.checkbox(key="add_customer_notify_sms").check()
    at.button(key="add_customer_submit").click().run()
    assert "Added Grace Hopper." in texts(at, "success")
    grace = people(db, shop)["Grace Hopper"]
    assert (grace["email"], grace["phone"], grace["notify_email"], grace["notify_sms"]) == (
        "grace@navy.mil",
        "+1 555 0100",
        True,
        True,
    )


def test_edit_a_customer_and_their_notification_preferences(db, shop):
    at = open_page(shop, "manager", CUSTOMERS, "Customers")
    prefix = f"edit_customer_{shop.customer}"
    at.text_input(key=f"{prefix}_phone").input("call me")
    at.button(key="edit_customer_submit").click().run()
    assert "phone: 'call me' is not a phone number" in texts(at, "error")
    assert people(db, shop)["Ada Lovelace"]["phone"] == ""

    at.text_input(key=f"{prefix}_phone").input("+44 20 7946 0000")
    at.checkbox(key=f"{prefix}_notify_email").uncheck()
    at.checkbox(key=f"{prefix}_notify_push").check()
    at.button(key="edit_customer_submit").click().run()
    assert "Saved Ada Lovelace." in texts(at, "success")
    ada = people(db, shop)["Ada Lovelace"]
    assert (ada["phone"], ada["notify_email"], ada["notify_push"]) == ("+44 20 7946 0000", False, True)
    assert at.dataframe[0].value["Notifications"].item() == "push"


def test_deactivate_a_customer_after_confirming(db, shop):
    at = open_page(shop, "clerk", CUSTOMERS, "Customers")
    at.button(key="customers_toggle").click().run()
    assert "Deactivate Ada Lovelace?" in texts(at, "warning")
    at.button(key="customers_toggle_keep").click().run()
    assert people(db, shop)["Ada Lovelace"]["active"] is True

    at.button(key="customers_toggle").click().run()
    at.button(key="customers_toggle_confirm").click().run()
    assert "Ada Lovelace is now inactive" in texts(at, "success")
    assert people(db, shop)["Ada Lovelace"]["active"] is False
    assert at.dataframe[0].value["Status"].item() == "Inactive"
