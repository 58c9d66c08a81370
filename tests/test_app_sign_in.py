"""Sign-in through the app's form against the users in PostgreSQL, lockout, navigation per role."""

from __future__ import annotations

import pytest
from app_helpers import PASSWORD, app, seed_shop, sign_in, texts, titles

from app.navigation import page_specs
from core import auth, tenants
from core.auth import AccountLocked, SignInError
from core.commands import PERMISSIONS
from core.errors import PermissionDenied
from core.orders.handlers import place_order


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def test_an_owner_signs_in_and_lands_on_overview(shop):
    at = sign_in(app(), shop.login("owner"))
    assert not at.exception
    assert titles(at) == ["Overview"]
    session = at.session_state["oms_session"]
    assert (session.tenant_id, session.role, session.username) == (shop.tenant.id, "owner", "owner")
    assert "The owner" in texts(at.sidebar, "caption")


def test_a_login_is_case_and_space_insensitive(shop):
    at = sign_in(app(), f"  {shop.login('clerk').upper()} ")
    assert titles(at) == ["Overview"]


def test_a_wrong_password_is_refused_with_a_clear_message_and_no_session(shop):
    at = sign_in(app(), shop.login("owner"), "not the password")
    assert not at.exception
    assert titles(at) == ["Sign in to OMS"]
    assert "wrong login or password" in texts(at, "error")
    assert "oms_session" not in at.session_state


@pytest.mark.parametrize("login", ["nobody@x", "owner@no-such-shop", "owner", "@@", ""])
def test_an_unknown_login_gets_the_same_message(shop, login):
    at = sign_in(app(), login, "whatever password")
    assert titles(at) == ["Sign in to OMS"]
    assert "wrong login or password" in texts(at, "error")


def test_the_fifth_wrong_password_locks_the_account_even_against_the_right_one(db, shop):
    at = app()
    for _ in range(4):
        sign_in(at, shop.login("manager"), "wrong password!")
        assert "wrong login or password" in texts(at, "error")
    sign_in(at, shop.login("manager"), "wrong password!")
    assert "locked until" in texts(at, "error")
    sign_in(at, shop.login("manager"), PASSWORD)
    assert "locked until" in texts(at, "error")
    assert titles(at) == ["Sign in to OMS"]
    # Another user of the same shop is not affected.
    assert titles(sign_in(app(), shop.login("clerk"))) == ["Overview"]
    with pytest.raises(AccountLocked):
        auth.authenticate(db, shop.login("manager"), PASSWORD)


def test_a_success_resets_the_failure_count(db, shop):
    for _ in range(4):
        with pytest.raises(SignInError):
            auth.authenticate(db, shop.login("clerk"), "wrong password!")
    auth.authenticate(db, shop.login("clerk"), PASSWORD)
    for _ in range(4):
        with pytest.raises(SignInError) as info:
            auth.authenticate(db, shop.login("clerk"), "wrong password!")
        assert not isinstance(info.value, AccountLocked)


def test_same_username_in_two_shops_signs_into_its_own_shop(db, shop, other_tenant):
    tenants.add_user(db, other_tenant.id, "owner", "owner", "another password")
    assert (
        auth.authenticate(db, f"owner@{other_tenant.slug}", "another password").tenant_id == other_tenant.id
    )
    with pytest.raises(SignInError):
        auth.authenticate(db, f"owner@{other_tenant.slug}", PASSWORD)
    assert auth.authenticate(db, shop.login("owner"), PASSWORD).tenant_id == shop.tenant.id


def test_a_deactivated_user_cannot_sign_in_or_resume(db, owner, shop):
    owner.execute(
        "UPDATE users SET active = false WHERE tenant_id = %s AND username = 'analyst'", [shop.tenant.id]
    )
    with pytest.raises(SignInError, match="deactivated"):
        auth.authenticate(db, shop.login("analyst"), PASSWORD)
    with pytest.raises(SignInError):
        auth.restore(db, shop.login("analyst"))


def test_a_platform_admin_signs_in_with_a_bare_username_and_sees_only_tenants(db, shop):
    import uuid

    name = f"admin-{uuid.uuid4().hex[:6]}"
    tenants.add_platform_admin(db, name, "platform password")
    at = sign_in(app(), name, "platform password")
    assert titles(at) == ["Tenants"]
    assert shop.tenant.slug in at.dataframe[0].value.to_string()
    assert [p.title for p in page_specs(at.session_state["oms_session"])] == ["Tenants", "Account"]


SHOP_PAGES = ["Inventory", "Products", "Customers"]
MONEY_PAGES = ["Payments", "Notifications", "Reports", "SQL workbench", "Summaries and alerts", "Audit trail"]


@pytest.mark.parametrize(
    ("role", "pages", "home"),
    [
        (
            "owner",
            ["Overview", "Orders", "New order", *SHOP_PAGES, *MONEY_PAGES, "Settings", "System", "Account"],
            "Overview",
        ),
        (
            "manager",
            ["Overview", "Orders", "New order", *SHOP_PAGES, *MONEY_PAGES, "System", "Account"],
            "Overview",
        ),
        ("clerk", ["Overview", "Orders", "New order", *SHOP_PAGES, "Account"], "Overview"),
        (
            "analyst",
            ["Inventory", "Products", "Reports", "SQL workbench", "Summaries and alerts", "Account"],
            "Reports",
        ),
    ],
)
def test_navigation_follows_the_role(shop, role, pages, home):
    at = sign_in(app(), shop.login(role))
    session = at.session_state["oms_session"]
    assert [p.title for p in page_specs(session)] == pages
    assert titles(at) == [home]
    for spec in page_specs(session):
        at.switch_page(spec.path).run()
        assert not at.exception, spec.path
        assert titles(at) == [spec.title]


def test_an_analyst_cannot_reach_orders_and_core_refuses_their_order(db, shop):
    at = sign_in(app(), shop.login("analyst"))
    assert "orders.view" in PERMISSIONS and "analyst" not in PERMISSIONS["orders.view"]
    # The analyst's navigation does not hold the pages, so no URL leads there.
    for path in ("pages/overview.py", "pages/orders.py", "pages/new_order.py", "pages/settings.py"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(path)
    assert titles(at) == ["Reports"]
    analyst = at.session_state["oms_session"].actor
    with pytest.raises(PermissionDenied, match="analyst may not place orders"):
        place_order(db, shop.tenant.id, analyst, customer_id=shop.customer, lines=[("RED", 1)])


def test_sign_out_returns_to_the_form_and_forgets_the_session(shop):
    at = sign_in(app(), shop.login("owner"))
    at.sidebar.button(key="sign_out").click().run()
    assert "oms_session" not in at.session_state
    assert not at.session_state["authentication_status"] and at.session_state["logout"]
    # The page that was open refuses to render without a session (AppTest re-requests it directly).
    assert titles(at) == [] and "Please sign in." in texts(at, "warning")
    at.switch_page("streamlit_app.py").run()
    assert titles(at) == ["Sign in to OMS"]


def test_change_password_from_the_account_page(db, shop):
    at = sign_in(app(), shop.login("clerk"))
    at.switch_page("pages/account.py").run()
    at.text_input(key="pw_current").input(PASSWORD)
    at.text_input(key="pw_new").input("a brand new secret")
    at.text_input(key="pw_again").input("a brand new secret")
    at.button[-1].click().run()
    assert "Password changed" in texts(at, "success"), texts(at, "error")
    with pytest.raises(SignInError):
        auth.authenticate(db, shop.login("clerk"), PASSWORD)
    assert auth.authenticate(db, shop.login("clerk"), "a brand new secret").role == "clerk"


def test_change_password_refuses_a_wrong_current_password(db, shop):
    session = auth.authenticate(db, shop.login("owner"), PASSWORD)
    with pytest.raises(SignInError, match="current password is wrong"):
        auth.change_password(db, session, "nope nope", "a brand new secret")
    assert auth.authenticate(db, shop.login("owner"), PASSWORD)
