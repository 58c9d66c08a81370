"""The Summaries and alerts page through AppTest: empty states, subscribing, adding an alert in the KPI's
own unit, refusals shown as messages, removing with a confirmation, and a breached rule shown as such."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from app_helpers import app, seed_shop, sign_in, texts, titles
from conftest import followable

from core.analytics import schedules
from core.commands import CLI, Actor
from core.notifications import channels

PAGE = "pages/alerts.py"


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def with_email(db, shop) -> None:
    settings = {"host": "127.0.0.1", "port": 2525, "starttls": False, "sender": "shop@x.test"}
    channels.set_channel(db, shop.tenant.id, CLI, "email", settings)


def open_page(shop, role: str):
    at = sign_in(app(), shop.login(role))
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert titles(at) == ["Summaries and alerts"]
    return at


def test_empty_states_for_an_analyst_in_a_shop_without_email(shop):
    at = open_page(shop, "analyst")
    assert "no email channel" in texts(at, "warning")
    assert "No alerts yet." in texts(at, "info")
    assert not [b for b in at.button if b.key == "alerts_add"]  # analysts do not set alerts
    assert not [c for c in at.checkbox if c.key == "alerts_by_email"]


def test_an_analyst_subscribes_to_a_daily_summary(db, shop):
    with_email(db, shop)
    at = open_page(shop, "analyst")
    at.text_input(key="alerts_email").input("not-an-address")
    at.radio(key="alerts_frequency").set_value("daily")
    at.button(key="alerts_subscribe").click().run()
    assert "is not an email address" in texts(at, "error")
    assert schedules.subscription(db, shop.tenant.id, Actor("analyst", "analyst"))["frequency"] == "off"

    at.text_input(key="alerts_email").input("ana@x.test")
    at.button(key="alerts_subscribe").click().run()
    assert not at.exception
    assert "Saved: emails go to ana@x.test." in texts(at, "success")
    mine = schedules.subscription(db, shop.tenant.id, Actor("analyst", "analyst"))
    assert (mine["email"], mine["frequency"], mine["alerts"]) == ("ana@x.test", "daily", False)
    assert at.radio(key="alerts_frequency").value == "daily"  # the page shows what was saved


def test_a_manager_adds_an_alert_in_percent_and_in_money(db, shop):
    at = open_page(shop, "manager")
    at.selectbox(key="alerts_metric").select("payment_failure_rate")
    at.selectbox(key="alerts_direction").select("above")
    at.text_input(key="alerts_limit").input("ten")
    at.button(key="alerts_add").click().run()
    assert "Limit: 'ten' is not a number" in texts(at, "error")
    assert schedules.alert_rules(db, shop.tenant.id, CLI) == []

    at.text_input(key="alerts_limit").input("10")
    at.button(key="alerts_add").click().run()
    assert "Alert added" in texts(at, "success")
    at.selectbox(key="alerts_metric").select("revenue")
    at.selectbox(key="alerts_direction").select("below")
    at.text_input(key="alerts_limit").input("$12.5")
    at.selectbox(key="alerts_window").select("today")
    at.button(key="alerts_add").click().run()
    shown = texts(at, "markdown")
    assert "Payment failure rate above 10.0% over 7 days" in shown
    assert "Revenue below $12.50 today" in shown
    rules = schedules.alert_rules(db, shop.tenant.id, CLI)
    assert [(r.metric, r.threshold) for r in rules] == [("payment_failure_rate", 0.1), ("revenue", 1250)]

    at.text_input(key="alerts_limit").input("150")  # a rate over 100%: core's sentence, nothing written
    at.selectbox(key="alerts_metric").select("return_rate")
    at.button(key="alerts_add").click().run()
    assert "between 0% and 100%" in texts(at, "error")
    assert len(schedules.alert_rules(db, shop.tenant.id, CLI)) == 2


def test_removing_an_alert_asks_first(db, shop):
    rule = schedules.save_alert(
        db, shop.tenant.id, CLI, metric="orders", direction="below", threshold=5, window="today"
    )
    at = open_page(shop, "owner")
    at.button(key=f"alerts_remove_{rule['rule_id']}").click().run()
    assert "Remove this alert?" in texts(at, "warning")
    at.button(key=f"alerts_remove_no_{rule['rule_id']}").click().run()
    assert len(schedules.alert_rules(db, shop.tenant.id, CLI)) == 1
    at.button(key=f"alerts_remove_{rule['rule_id']}").click().run()
    at.button(key=f"alerts_remove_yes_{rule['rule_id']}").click().run()
    assert "Alert removed." in texts(at, "success")
    assert schedules.alert_rules(db, shop.tenant.id, CLI) == []
    assert "No alerts yet." in texts(at, "info")


def test_a_breached_rule_says_so_with_its_figure(db, shop):
    # seed_shop's three orders are on 3 March 2025: over 30 days from 10 March, 3 orders, above 2.
    schedules.save_alert(
        db, shop.tenant.id, CLI, metric="orders", direction="above", threshold=2, window="30 days"
    )
    followable(db, shop.tenant.id)
    schedules.run_due(db, datetime(2025, 3, 10, 12, tzinfo=UTC), only=[shop.tenant.id])
    at = open_page(shop, "manager")
    assert "Past the limit since" in texts(at, "error") and ": 3" in texts(at, "error")


def test_the_overview_tells_managers_of_a_breached_alert(db, shop):
    schedules.save_alert(
        db, shop.tenant.id, CLI, metric="orders", direction="above", threshold=2, window="30 days"
    )
    followable(db, shop.tenant.id)
    at = sign_in(app(), shop.login("manager"))
    assert "Alert:" not in texts(at, "warning")  # not breached yet
    schedules.run_due(db, datetime(2025, 3, 10, 12, tzinfo=UTC), only=[shop.tenant.id])
    at = sign_in(app(), shop.login("manager"))
    assert titles(at) == ["Overview"]
    assert "Alert: Orders above 2 over 30 days" in texts(at, "warning")
    clerk = sign_in(app(), shop.login("clerk"))  # clerks read no reports, so no alerts either
    assert "Alert:" not in texts(clerk, "warning")
