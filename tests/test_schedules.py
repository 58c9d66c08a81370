"""Scheduled summaries and threshold alerts: the figures reach a real SMTP server on loopback once per
period and subscriber, alerts fire once per breach and again only after they cleared, the right people
get them, and bad input is refused with nothing written."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, date, datetime

import pytest
from conftest import followable, snapshot

from core import catalog, customers, inventory, projections, tenants
from core.analytics import schedules, store
from core.analytics.kpis import Period
from core.commands import CLI, Actor
from core.errors import NotFound, PermissionDenied, ValidationError
from core.notifications import channels, dispatch
from core.orders.handlers import cancel_order, pay_order, place_order

NEW_YORK = "America/New_York"  # UTC-5 in March: 11:30 UTC is 06:30 there


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def shop(db, smtp, tmp_path):
    """A New York shop that sends email. 1 March: one mug paid ($12.50). 2 March (a Monday): two mugs
    paid ($25.00) and one order cancelled."""
    t = tenants.create_tenant(db, f"sched {uuid.uuid4().hex[:6]}", time_zone=NEW_YORK)
    tid = t.id
    channels.set_channel(
        db, tid, CLI, "email", {"host": smtp.host, "port": smtp.port, "starttls": False, "sender": "s@x.test"}
    )
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
    inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=50, at=utc(2026, 2, 1))
    ada = customers.add_customer(db, tid, CLI, name="Ada", email="ada@x.test", notify_email=False)["id"]

    def order(qty, at, *, paid=False, cancelled=False):
        o = place_order(db, tid, CLI, customer_id=ada, lines=[("MUG", qty)], at=at)
        if paid:
            pay_order(db, tid, CLI, o["order_id"], at=at)
        if cancelled:
            cancel_order(db, tid, CLI, o["order_id"], at=at)
        return o

    order(1, utc(2026, 3, 1, 15), paid=True)
    order(2, utc(2026, 3, 2, 15), paid=True)
    order(1, utc(2026, 3, 2, 16), cancelled=True)
    people = {}
    for name, role in (("mia", "manager"), ("ana", "analyst"), ("oli", "owner")):
        tenants.add_user(db, tid, name, role, "correct horse battery")
        people[role] = Actor(name, role)
    return {"tenant": t, "tid": tid, "order": order, "people": people, "data_dir": tmp_path}


def run(db, shop, now):
    followable(db, shop["tid"])  # the store takes events once no open transaction can still precede them
    return schedules.run_due(db, now, shop["data_dir"], only=[shop["tid"]])


def send(db, shop):
    return dispatch.process_notifications(db, "test-worker", 5.0, only=[shop["tid"]])


def outbox(owner, tid) -> list[tuple]:
    return owner.execute(
        "SELECT topic, channel, recipient FROM notifications WHERE tenant_id = %s"
        " ORDER BY created_at, recipient",
        [tid],
    ).fetchall()


def mail(smtp, shop, to: str) -> list:
    return [m for m in smtp.messages if m["To"] == to and shop["tenant"].name in m["From"]]


MORNING_AFTER = utc(2026, 3, 3, 11, 30)  # 06:30 on 3 March in New York


def test_a_daily_summary_emails_yesterdays_figures_against_the_day_before(db, owner, shop, smtp):
    schedules.subscribe(db, shop["tid"], shop["people"]["analyst"], email="ana@x.test", frequency="daily")

    assert run(db, shop, utc(2026, 3, 3, 10, 59)).processed == 1  # 05:59 there: 1 March's is still due
    assert run(db, shop, MORNING_AFTER).processed == 1  # 06:30: now 2 March's
    assert run(db, shop, MORNING_AFTER).processed == 0  # once per period
    assert [r[0] for r in outbox(owner, shop["tid"])] == ["summary", "summary"]
    send(db, shop)

    first, second = sorted(mail(smtp, shop, "ana@x.test"), key=lambda m: m["Subject"])
    assert first["Subject"] == "Daily summary for 2026-03-01"
    assert second["Subject"] == "Daily summary for 2026-03-02"
    text = second.get_body(("plain",)).get_content()
    assert "Revenue: $25.00 (+100.0%)" in text
    assert "Orders: 2 (+100.0%)" in text
    assert "Units: 3 (+200.0%)" in text
    assert "Cancellation rate: 50.0% (+50.0 pts)" in text
    assert "1. Mug (MUG): 2 sold, $25.00" in text
    assert "<b>$25.00</b>" in second.get_body(("html",)).get_content()


def test_a_weekly_summary_covers_monday_to_sunday(db, shop, smtp):
    schedules.subscribe(db, shop["tid"], shop["people"]["manager"], email="mia@x.test", frequency="weekly")
    shop["order"](3, utc(2026, 3, 8, 20), paid=True)  # Sunday 8 March, 16:00 in New York
    shop["order"](5, utc(2026, 3, 9, 6), paid=True)  # Monday 9 March, 02:00 there: the next week

    assert run(db, shop, utc(2026, 3, 9, 12)).processed == 1
    send(db, shop)
    [summary] = mail(smtp, shop, "mia@x.test")
    assert summary["Subject"] == "Weekly summary for 2026-03-02 – 2026-03-08"
    text = summary.get_body(("plain",)).get_content()
    assert "Revenue: $62.50 (+400.0%)" in text  # 2 + 3 mugs; the week before had 1
    assert "Orders: 3 (+200.0%)" in text


def test_summary_periods_follow_the_local_clock():
    def at(*args):
        return datetime(*args)

    assert schedules.summary_period("daily", at(2026, 3, 3, 6, 0)) == Period(
        date(2026, 3, 2), date(2026, 3, 3)
    )
    assert schedules.summary_period("daily", at(2026, 3, 3, 5, 59)) == Period(
        date(2026, 3, 1), date(2026, 3, 2)
    )
    weekly = Period(date(2026, 3, 2), date(2026, 3, 9))
    assert schedules.summary_period("weekly", at(2026, 3, 9, 6, 0)) == weekly
    assert schedules.summary_period("weekly", at(2026, 3, 15, 23, 0)) == weekly
    assert schedules.summary_period("weekly", at(2026, 3, 9, 5, 0)).start == date(2026, 2, 23)
    assert schedules.summary_period("off", at(2026, 3, 9, 12, 0)) is None


def test_two_workers_at_once_send_one_summary(db, owner, shop, smtp):
    schedules.subscribe(db, shop["tid"], shop["people"]["manager"], email="mia@x.test", frequency="daily")
    store.sync(db, shop["tid"], shop["data_dir"])
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(run(db, shop, MORNING_AFTER))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not r.problems for r in results), [r.problems for r in results]
    assert outbox(owner, shop["tid"]) == [("summary", "email", "mia@x.test")]
    send(db, shop)
    assert len(mail(smtp, shop, "mia@x.test")) == 1


def test_no_summary_for_someone_who_lost_the_right_or_switched_off(db, owner, shop):
    tid = shop["tid"]
    schedules.subscribe(db, tid, shop["people"]["manager"], email="mia@x.test", frequency="daily")
    schedules.subscribe(db, tid, shop["people"]["analyst"], email="ana@x.test", frequency="daily")
    tenants.change_staff(db, tid, shop["people"]["owner"], "mia", role="clerk")  # clerks read no reports
    schedules.subscribe(db, tid, shop["people"]["analyst"], email="", frequency="off")
    assert run(db, shop, MORNING_AFTER).processed == 0
    assert outbox(owner, tid) == []
    assert schedules.subscription(db, tid, shop["people"]["analyst"])["frequency"] == "off"


def test_an_alert_fires_once_per_breach_to_those_who_asked(db, owner, shop, smtp):
    tid, people = shop["tid"], shop["people"]
    schedules.subscribe(db, tid, people["manager"], email="mia@x.test", frequency="off", alerts=True)
    schedules.subscribe(db, tid, people["owner"], email="oli@x.test", frequency="off", alerts=False)
    schedules.subscribe(db, tid, people["analyst"], email="ana@x.test", frequency="off")
    rule = schedules.save_alert(
        db,
        tid,
        people["manager"],
        metric="cancellation_rate",
        direction="above",
        threshold=0.4,
        window="7 days",
    )
    tuesday = utc(2026, 3, 3, 2)  # 2 March, 21:00 in New York: the week is 24 Feb - 2 March; 1 of 3 cancelled
    assert run(db, shop, tuesday).processed == 0  # 33% is within 40%
    [state] = schedules.alert_rules(db, tid, people["analyst"])
    assert state.breached_at is None

    shop["order"](1, utc(2026, 3, 2, 17), cancelled=True)  # 2 of 4: 50%
    assert run(db, shop, tuesday).processed == 1
    assert run(db, shop, tuesday).processed == 0  # still breached: told once
    alerts = [r for r in outbox(owner, tid) if r[0] == "alert"]
    assert sorted(alerts) == [("alert", "email", "mia@x.test"), ("alert", "in_app", "staff")]
    [state] = schedules.alert_rules(db, tid, people["analyst"])
    assert state.breached_at is not None and state.last_value == 0.5

    send(db, shop)
    [email] = mail(smtp, shop, "mia@x.test")
    assert email["Subject"] == "Alert: Cancellation rate above 40.0% over 7 days"
    assert (
        "Cancellation rate is 50.0% for 2026-02-24 – 2026-03-02." in email.get_body(("plain",)).get_content()
    )
    assert not mail(smtp, shop, "oli@x.test") and not mail(smtp, shop, "ana@x.test")

    for _ in range(2):
        shop["order"](1, utc(2026, 3, 2, 18), paid=True)  # 2 of 6: 33%, back within
    assert run(db, shop, tuesday).processed == 1
    [state] = schedules.alert_rules(db, tid, people["analyst"])
    assert state.breached_at is None
    for _ in range(3):
        shop["order"](1, utc(2026, 3, 2, 19), cancelled=True)  # 5 of 9: past it again
    assert run(db, shop, tuesday).processed == 1
    assert len([r for r in outbox(owner, tid) if r[:2] == ("alert", "in_app")]) == 2
    assert rule["rule_id"] == str(state.id)


def test_two_workers_record_one_breach(db, owner, shop):
    tid = shop["tid"]
    schedules.save_alert(db, tid, CLI, metric="orders", direction="above", threshold=1, window="30 days")
    store.sync(db, tid, shop["data_dir"])
    now = utc(2026, 3, 3, 2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(run(db, shop, now))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not r.problems for r in results), [r.problems for r in results]
    assert sum(r.processed for r in results) == 1
    assert [r for r in outbox(owner, tid) if r[0] == "alert"] == [("alert", "in_app", "staff")]


def test_a_worker_whose_store_is_behind_cannot_flip_an_alert_back(db, shop):
    """Two workers read the store at different moments: a decision on fewer events than the last one
    is refused, so a stale copy does not clear (and then re-fire) an alert."""
    tid = shop["tid"]
    schedules.save_alert(db, tid, CLI, metric="orders", direction="above", threshold=1, window="30 days")
    now = utc(2026, 3, 3, 2)
    assert run(db, shop, now).processed == 1
    [rule] = schedules.alert_rules(db, tid, CLI)
    held = store.read_manifest(store.tenant_dir(tid, shop["data_dir"]), tid)["events"]
    tenant = shop["tenant"]
    period = Period(date(2026, 2, 1), date(2026, 3, 3))
    assert not schedules._set_state(db, tenant, rule, 0, period, as_of=held - 1)  # 0 orders, seen on less
    assert schedules.alert_rules(db, tid, CLI)[0].breached_at is not None
    assert schedules._set_state(db, tenant, rule, 0, period, as_of=held)  # as up to date: it clears
    assert schedules.alert_rules(db, tid, CLI)[0].breached_at is None


def test_changing_and_removing_rules(db, shop):
    tid, manager = shop["tid"], shop["people"]["manager"]
    rule = schedules.save_alert(
        db, tid, manager, metric="revenue", direction="below", threshold=10_000, window="today"
    )
    [r] = schedules.alert_rules(db, tid, manager)
    assert r.describe("USD") == "Revenue below $100.00 today"
    schedules.save_alert(
        db,
        tid,
        manager,
        metric="revenue",
        direction="below",
        threshold=5_000,
        window="7 days",
        rule_id=rule["rule_id"],
    )
    [r] = schedules.alert_rules(db, tid, manager)
    assert r.describe("USD") == "Revenue below $50.00 over 7 days"
    schedules.remove_alert(db, tid, manager, rule["rule_id"])
    assert schedules.alert_rules(db, tid, manager) == []
    with pytest.raises(NotFound):
        schedules.remove_alert(db, tid, manager, rule["rule_id"])


def test_the_read_model_rebuilds_equal(db, owner, shop):
    tid, people = shop["tid"], shop["people"]
    schedules.subscribe(db, tid, people["manager"], email="mia@x.test", frequency="daily", alerts=True)
    schedules.save_alert(db, tid, CLI, metric="orders", direction="above", threshold=1, window="30 days")
    schedules.save_alert(db, tid, CLI, metric="units", direction="below", threshold=1, window="today")
    run(db, shop, MORNING_AFTER)
    tables = ("report_subscriptions", "alert_rules")
    before = {
        t: owner.execute(f"SELECT * FROM {t} WHERE tenant_id = %s ORDER BY 2", [tid]).fetchall()
        for t in tables
    }
    assert before["report_subscriptions"][0][5] == date(2026, 3, 2)  # last_summary_start
    assert any(r[7] is not None for r in before["alert_rules"])  # one breached
    projections.rebuild(db, tid, projections.registry()["report_schedules"])
    after = {
        t: owner.execute(f"SELECT * FROM {t} WHERE tenant_id = %s ORDER BY 2", [tid]).fetchall()
        for t in tables
    }
    assert after == before


BAD_RULES = [
    ({"metric": "profit"}, "Watch one of"),
    ({"metric": "orders'; DROP TABLE alert_rules; --"}, "Watch one of"),
    ({"direction": "sideways"}, "above or below"),
    ({"window": "forever"}, "Measure over"),
    ({"threshold": -1}, "whole number from 0"),
    ({"threshold": 10**15}, "whole number from 0"),
    ({"threshold": 2.5}, "whole number from 0"),
    ({"threshold": math.nan}, "must be a number"),
    ({"threshold": True}, "must be a number"),
    ({"threshold": "10"}, "must be a number"),
    ({"metric": "payment_failure_rate", "threshold": 1.5}, "between 0% and 100%"),
    ({"metric": "payment_failure_rate", "threshold": -0.1}, "between 0% and 100%"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RULES)
def test_bad_rules_are_refused_and_write_nothing(db, owner, shop, change, message):
    before = snapshot(owner, shop["tid"])
    fields = {"metric": "orders", "direction": "below", "threshold": 5, "window": "today"} | change
    with pytest.raises(ValidationError, match=message):
        schedules.save_alert(db, shop["tid"], CLI, **fields)
    assert snapshot(owner, shop["tid"]) == before


def test_bad_subscriptions_and_wrong_people_are_refused_and_write_nothing(db, owner, shop, other_tenant):
    tid, people = shop["tid"], shop["people"]
    before = snapshot(owner, tid, other_tenant.id)
    refused = [
        (people["analyst"], {"email": "not an address", "frequency": "daily"}, "not an email address"),
        (people["analyst"], {"email": "a@x.test\u202e", "frequency": "daily"}, "plain text"),
        (people["analyst"], {"email": "", "frequency": "daily"}, "email is required"),
        (people["analyst"], {"email": "a@x.test", "frequency": "hourly"}, "How often"),
        (people["analyst"], {"email": "a@x.test", "frequency": "off", "alerts": True}, "owners and managers"),
        (people["manager"], {"email": "a@x.test", "frequency": "daily", "alerts": "yes"}, "on or off"),
        (CLI, {"email": "a@x.test", "frequency": "daily"}, "signed-in user"),
        (Actor("ghost", "manager"), {"email": "a@x.test", "frequency": "daily"}, "signed-in user"),
    ]
    for actor, fields, message in refused:
        with pytest.raises(ValidationError, match=message):
            schedules.subscribe(db, tid, actor, **fields)
    with pytest.raises(PermissionDenied):
        schedules.subscribe(db, tid, Actor("clerk", "clerk"), email="c@x.test", frequency="daily")
    for role in ("analyst", "clerk"):
        with pytest.raises(PermissionDenied):
            schedules.save_alert(
                db, tid, Actor(role, role), metric="orders", direction="below", threshold=1, window="today"
            )
    assert snapshot(owner, tid, other_tenant.id) == before
    # Another shop's rule is not found from this one; a shop without email cannot take subscriptions.
    theirs = schedules.save_alert(
        db, other_tenant.id, CLI, metric="orders", direction="below", threshold=1, window="today"
    )
    tenants.add_user(db, other_tenant.id, "zed", "manager", "correct horse battery")
    before = snapshot(owner, tid, other_tenant.id)
    for call in (
        lambda: schedules.remove_alert(db, tid, CLI, theirs["rule_id"]),
        lambda: schedules.remove_alert(db, tid, CLI, "not-a-uuid"),
        lambda: schedules.save_alert(
            db,
            tid,
            CLI,
            metric="orders",
            direction="below",
            threshold=1,
            window="today",
            rule_id=theirs["rule_id"],
        ),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(ValidationError, match="no email channel"):
        schedules.subscribe(db, other_tenant.id, Actor("zed", "manager"), email="z@x.test", frequency="daily")
    assert snapshot(owner, tid, other_tenant.id) == before
