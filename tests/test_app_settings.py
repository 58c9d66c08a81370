"""The Settings page (owner only) and the System page through AppTest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from app_helpers import PASSWORD, app, seed_shop, sign_in, texts, titles

from core import auth, catalog, projections, tenants
from core.chain import SEALER
from core.commands import CLI as CLI_ACTOR
from core.errors import PermissionDenied, ValidationError
from core.notifications import channels, templates
from core.payments import service as payments
from core.workers import Heartbeat


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def settings_page(shop, role: str = "owner"):
    at = sign_in(app(), shop.login(role))
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    assert titles(at) == ["Settings"]
    return at


@pytest.mark.parametrize("role", ["manager", "clerk", "analyst"])
def test_settings_is_only_for_the_owner_and_core_refuses_the_others(db, shop, role):
    at = sign_in(app(), shop.login(role))
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/settings.py")
    actor = at.session_state["oms_session"].actor
    with pytest.raises(PermissionDenied):
        tenants.change_settings(db, shop.tenant.id, actor, reservation_minutes=5)
    with pytest.raises(PermissionDenied):
        tenants.add_staff(db, shop.tenant.id, actor, username="eve", role="owner", password=PASSWORD)
    with pytest.raises(PermissionDenied):
        tenants.list_staff(db, shop.tenant.id, actor)
    with pytest.raises(PermissionDenied):
        catalog.update_warehouse(db, shop.tenant.id, actor, "WEST", priority=0)
    assert tenants.get_settings(db, shop.tenant.id)["reservation_minutes"] == 30


def test_the_owner_changes_order_settings(db, shop):
    at = settings_page(shop)
    at.selectbox(key="settings_strategy").select("most_available")
    at.number_input(key="settings_minutes").set_value(45)
    at.number_input(key="settings_tax").set_value(8.25)
    at.button(key="settings_save").click().run()
    assert not at.exception
    assert "Order settings saved" in texts(at, "success")
    assert (
        tenants.get_settings(db, shop.tenant.id).items()
        >= {
            "allocation_strategy": "most_available",
            "reservation_minutes": 45,
            "tax_rate_bp": 825,
        }.items()
    )
    # The form shows what is now in force.
    assert at.number_input(key="settings_minutes").value == 45


def test_a_bad_setting_is_refused_with_cores_message_and_nothing_changes(db, shop):
    at = settings_page(shop)
    at.number_input(key="settings_minutes").set_value(0)
    at.button(key="settings_save").click().run()
    assert not at.exception
    assert "Not saved: reservation_minutes: the reservation time must be from 1 to 43,200 minutes" in texts(
        at, "error"
    )
    at.number_input(key="settings_minutes").set_value(30)
    at.number_input(key="settings_tax").set_value(150.0)
    at.button(key="settings_save").click().run()
    assert "the tax rate must be from 0 to 10,000 basis points (0% to 100%)" in texts(at, "error")
    assert (
        tenants.get_settings(db, shop.tenant.id).items()
        >= {
            "allocation_strategy": "priority",
            "reservation_minutes": 30,
            "tax_rate_bp": 0,
        }.items()
    )


def test_the_owner_lists_and_adds_users(db, shop):
    at = settings_page(shop)
    users = next(d.value for d in at.dataframe if "Username" in d.value.columns)
    assert set(users["Username"]) == set(tenants.ROLES)
    at.text_input(key="settings_user_name").input("Bad Name!")
    at.text_input(key="settings_user_password").input(PASSWORD)
    at.button(key="settings_add_user").click().run()
    assert "Not added: username: use 2 to 63 lower-case letters" in texts(at, "error")

    at.text_input(key="settings_user_name").input("Anna")
    at.text_input(key="settings_user_display").input("Anna Karenina")
    at.selectbox(key="settings_user_role").select("manager")
    at.button(key="settings_add_user").click().run()
    assert f"they sign in as anna@{shop.tenant.slug}" in texts(at, "success")
    users = next(d.value for d in at.dataframe if "Username" in d.value.columns)
    assert "anna" in set(users["Username"])
    session = auth.authenticate(db, f"anna@{shop.tenant.slug}", PASSWORD)
    assert (session.role, session.display_name) == ("manager", "Anna Karenina")

    at.button(key="settings_add_user").click().run()  # the same username again
    assert "Not added: the username 'anna' is taken in this tenant" in texts(at, "error")


def test_the_owner_changes_a_role_and_deactivates_an_account_but_keeps_an_owner(db, shop):
    at = settings_page(shop)
    at.selectbox(key="settings_change_who").select("clerk")
    at.selectbox(key="settings_change_role").select("manager")
    at.button(key="settings_change_user").click().run()
    assert "clerk is now manager, active." in texts(at, "success")
    assert auth.authenticate(db, shop.login("clerk"), PASSWORD).role == "manager"

    at.selectbox(key="settings_change_who").select("clerk")
    at.selectbox(key="settings_change_role").select("(keep)")
    at.selectbox(key="settings_change_active").select("deactivated")
    at.button(key="settings_change_user").click().run()
    assert "clerk is now manager, deactivated" in texts(at, "success")
    with pytest.raises(auth.SignInError, match="deactivated"):
        auth.authenticate(db, shop.login("clerk"), PASSWORD)

    # The only owner may not demote or lock out themselves: the shop would have nobody to run it.
    for field, value in (("settings_change_role", "analyst"), ("settings_change_active", "deactivated")):
        at.selectbox(key="settings_change_who").select("owner")
        at.selectbox(key="settings_change_role").select("(keep)")
        at.selectbox(key="settings_change_active").select("(keep)")
        at.selectbox(key=field).select(value)
        at.button(key="settings_change_user").click().run()
        assert "last active owner" in texts(at, "error")
    assert auth.authenticate(db, shop.login("owner"), PASSWORD).role == "owner"
    with pytest.raises(PermissionDenied):
        tenants.change_staff(
            db,
            shop.tenant.id,
            auth.authenticate(db, shop.login("manager"), PASSWORD).actor,
            "analyst",
            active=False,
        )
    live = db_rows(db, shop)
    projections.rebuild(db, shop.tenant.id, projections.registry()["users"])
    assert db_rows(db, shop) == live


def db_rows(db, shop) -> list:
    return [(u.username, u.role, u.active) for u in tenants.list_users(db, shop.tenant.id)]


def test_the_owner_reorders_and_adds_warehouses(db, shop):
    at = settings_page(shop)
    at.selectbox(key="settings_wh_pick").select("WEST")
    at.number_input(key="settings_wh_priority").set_value(0)
    at.button(key="settings_set_priority").click().run()
    assert "Warehouse WEST now has priority 0." in texts(at, "success")
    frame = next(d.value for d in at.dataframe if "Priority" in d.value.columns)
    assert list(frame["Code"]) == ["WEST", "EAST"]  # lowest priority number first

    at.text_input(key="settings_wh_code").input("north")
    at.text_input(key="settings_wh_name").input("North")
    at.number_input(key="settings_wh_new_priority").set_value(5)
    at.button(key="settings_add_warehouse_btn").click().run()
    assert "Warehouse NORTH added with priority 5." in texts(at, "success")
    at.button(key="settings_add_warehouse_btn").click().run()
    assert "Not added: a warehouse with code NORTH already exists" in texts(at, "error")
    at.number_input(key="settings_wh_priority").set_value(-1)
    at.button(key="settings_set_priority").click().run()
    assert "Not changed: priority" in texts(at, "error")


def test_system_shows_the_database_a_worker_heartbeat_and_projection_lag(db, shop):
    beat = Heartbeat(db)
    started = datetime.now(UTC)
    beat.record("projections", started, 0.0123, 7, None)
    beat.record("reservation_expiry", started, 0.5, None, "ConnectionError: gateway down")
    beat.beat()

    at = sign_in(app(), shop.login("manager"))
    at.switch_page("pages/system.py").run()
    assert not at.exception
    assert titles(at) == ["System"]
    assert "Database reachable" in texts(at, "success")
    frames = [d.value for d in at.dataframe]
    workers = next(f for f in frames if "Worker" in f.columns)
    ours = workers[workers["Worker"] == beat.worker_id]
    assert list(ours["Job"]) == ["projections", "reservation_expiry"]
    assert list(ours["State"]) == ["running", "running"]
    assert list(ours["Duration (s)"]) == [0.0123, 0.5]
    assert list(ours["Error"]) == ["", "ConnectionError: gateway down"]
    assert "A job failed on its last run" in texts(at, "error")

    lag = next(f for f in frames if "Projection" in f.columns)
    names = [*projections.registry(), SEALER.name]
    assert list(lag["Projection"]) == names
    chain_row = lag[lag["Projection"] == "chain"].iloc[0]
    assert chain_row["Kind"] == "async" and chain_row["Events behind"] > 0  # nothing sealed in this test
    assert (lag[lag["Kind"] == "inline"]["Events behind"] == 0).all()

    beat.beat(stopped=True)
    at.run()
    workers = next(d.value for d in at.dataframe if "Worker" in d.value.columns)
    assert set(workers[workers["Worker"] == beat.worker_id]["State"]) == {"stopped"}


def test_a_clerk_has_no_system_page_and_core_refuses_the_lag(db, shop):
    at = sign_in(app(), shop.login("clerk"))
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/system.py")
    from core.health import projection_lag

    with pytest.raises(PermissionDenied, match="clerk may not view system"):
        projection_lag(db, shop.tenant.id, at.session_state["oms_session"].actor)


def test_the_owner_sets_up_a_gateway_its_retry_policy_and_the_channels(db, owner, shop):
    at = settings_page(shop)
    at.text_input(key="settings_gw_name").input("Main")  # not a valid name: core says why
    at.selectbox(key="settings_gw_kind").select("simulated")
    at.button(key="settings_gw_save").click().run()
    assert "Not saved: gateway 1" in texts(at, "error")

    at.text_input(key="settings_gw_name").input("main")
    at.selectbox(key="settings_gw_kind").select("http")
    at.text_input(key="settings_gw_url").input("http://127.0.0.1:9/pay")
    at.text_input(key="settings_gw_token").input("gw-secret-1")
    at.button(key="settings_gw_save").click().run()
    assert "Gateway main saved." in texts(at, "success")
    setup = payments.gateway_settings(db, shop.tenant.id, CLI_ACTOR)
    assert [(g["name"], g["kind"], g["token_set"]) for g in setup["gateways"]] == [("main", "http", True)]
    logged = owner.execute("SELECT data::text FROM events WHERE tenant_id = %s", [shop.tenant.id]).fetchall()
    assert not any("gw-secret-1" in r[0] for r in logged)  # the token stays out of the log

    at.number_input(key=next(n.key for n in at.number_input if n.label == "Attempts per charge")).set_value(3)
    at.button(key="settings_retry_save").click().run()
    assert payments.gateway_settings(db, shop.tenant.id, CLI_ACTOR)["payment_attempt_limit"] == 3

    at.text_input(key="settings_smtp_host").input("127.0.0.1")
    at.text_input(key="settings_smtp_sender").input("shop@example.com")
    at.button(key="settings_email_save").click().run()
    assert "Email channel saved." in texts(at, "success")
    at.text_input(key="settings_sms_url").input("not a url")
    at.button(key="settings_sms_save").click().run()
    assert "Not saved: sms url" in texts(at, "error")
    assert set(channels.channel_settings(db, shop.tenant.id, CLI_ACTOR)["channels"]) == {"email"}

    at.selectbox(key="settings_tpl_topic").select("order_paid")
    at.text_input(key="settings_tpl_subject").input("Paid: #{{ order_number }}")
    at.text_area(key="settings_tpl_text").input("Thanks {{ customer_name }}")
    at.text_area(key="settings_tpl_html").input("<p>Thanks {{ customer_name }}</p>")
    at.button(key="settings_tpl_save").click().run()
    assert "The order_paid template is saved." in texts(at, "success")
    preview = templates.preview(db, shop.tenant.id, CLI_ACTOR, "order_paid")
    assert preview.subject.startswith("Paid: #")

    at.selectbox(key="settings_gw_remove").select("main")
    at.button(key="settings_gw_remove_btn").click().run()
    assert payments.gateway_settings(db, shop.tenant.id, CLI_ACTOR)["gateways"] == []


def test_the_owner_changes_currency_and_time_zone_and_pages_follow(db, owner, shop):
    at = settings_page(shop)
    at.selectbox(key="settings_currency").select("EUR")
    at.selectbox(key="settings_zone").select("Asia/Tokyo")
    at.button(key="settings_profile_save").click().run()
    assert "The shop now uses EUR and the Asia/Tokyo time zone." in texts(at, "success")
    changed = tenants.get_tenant(db, shop.tenant.id)
    assert (changed.currency, changed.time_zone) == ("EUR", "Asia/Tokyo")
    at.switch_page("pages/orders.py").run()
    assert at.dataframe[0].value["Placed"].iloc[0] == "2025-03-03 18:30"  # 09:30 UTC, seen in Tokyo

    at.switch_page("pages/settings.py").run()
    at.button(key="settings_profile_save").click().run()  # the same again
    assert "Not saved: nothing to change" in texts(at, "error")
    with pytest.raises(ValidationError, match="time zone"):
        tenants.change_profile(db, shop.tenant.id, CLI_ACTOR, currency="EUR", time_zone="Mars/Olympus")
    with pytest.raises(PermissionDenied):
        manager = auth.authenticate(db, shop.login("manager"), PASSWORD).actor
        tenants.change_profile(db, shop.tenant.id, manager, currency="USD", time_zone="UTC")
    assert (tenants.get_tenant(db, shop.tenant.id).currency) == "EUR"
