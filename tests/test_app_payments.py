"""The Payments and Notifications pages through AppTest, signed in through the real form, on a real
PostgreSQL: empty states, who sees them, a declined charge retried, and a dead letter resent."""

from __future__ import annotations

import pytest
from app_helpers import app, seed_shop, sign_in, texts, titles
from fakes import FakeGateway

from app.navigation import page_specs
from core import inventory, tenants
from core.commands import CLI
from core.errors import PermissionDenied
from core.notifications import channels, dispatch
from core.orders.handlers import cancel_order, place_order
from core.payments import refunds
from core.payments import service as payments

PAYMENTS = "pages/payments.py"
NOTIFICATIONS = "pages/notifications.py"
LEASE = 5.0


@pytest.fixture
def shop(db, tenant):
    return seed_shop(db, tenant)


def open_page(shop, role: str, path: str, title: str):
    at = sign_in(app(), shop.login(role))
    at.switch_page(path).run()
    assert not at.exception
    assert titles(at) == [title]
    return at


# Each table by a column only it has.
TABLES = {
    "gateways": "Circuit",
    "queue": "Next attempt",
    "failed": "Charged again",
    "attempts": "Outcome",
    "channels": "Sends through",
    "outbox": "Sent / next try",
    "dead": "Error",
    "refunds": "Retries at",
}


def frame(at, table: str):
    return next(d.value for d in at.dataframe if TABLES[table] in d.value.columns)


@pytest.fixture
def declined(db, shop) -> dict:
    """The second seeded order (reserved) charged through a gateway that declines every card."""
    tid = shop.tenant.id
    payments.set_gateways(db, tid, CLI, [{"name": "sim", "kind": "simulated", "decline_rate": 1.0}])
    order = shop.orders[1]
    payments.request_payment(db, tid, CLI, order["order_id"])
    report = payments.process_payments(db, "test", LEASE, only=[tid])
    assert not report.problems, report.problems
    return order


def order_status(owner, order_id) -> str:
    return owner.execute("SELECT status FROM orders WHERE id = %s", [order_id]).fetchone()[0]


# --- who sees the pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "manager"])
def test_owner_and_manager_see_empty_payments_and_notifications(shop, role):
    at = open_page(shop, role, PAYMENTS, "Payments")
    info = texts(at, "info")
    assert "No gateway set up yet — the owner adds them in Settings" in info
    assert "No payments yet" in info
    assert [m.value for m in at.metric][:3] == ["0", "0", "0"]

    at.switch_page(NOTIFICATIONS).run()
    assert not at.exception
    assert titles(at) == ["Notifications"]
    info = texts(at, "info")
    assert "No notifications yet" in info
    assert "No email, SMS or push channel is set up yet" in info and "Settings" in info
    assert "No dead letters" in info
    assert [m.value for m in at.metric] == ["0", "0", "0"]
    assert set(frame(at, "channels")["Set up"]) == {"yes", "no"}


@pytest.mark.parametrize("role", ["clerk", "analyst"])
def test_clerk_and_analyst_have_neither_page_and_core_refuses_them(db, shop, role):
    at = sign_in(app(), shop.login(role))
    titles_seen = [p.title for p in page_specs(at.session_state["oms_session"])]
    assert "Payments" not in titles_seen and "Notifications" not in titles_seen
    for path in (PAYMENTS, NOTIFICATIONS):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(path)
    actor = at.session_state["oms_session"].actor
    with pytest.raises(PermissionDenied):
        payments.list_payments(db, shop.tenant.id, actor)
    with pytest.raises(PermissionDenied):
        dispatch.list_notifications(db, shop.tenant.id, actor)


# --- payments --------------------------------------------------------------------------------------


def test_a_declined_charge_is_listed_and_retried_after_confirmation(db, owner, shop, declined):
    number = declined["number"]
    assert order_status(owner, declined["order_id"]) == "payment_failed"
    at = open_page(shop, "manager", PAYMENTS, "Payments")
    assert [m.value for m in at.metric][:3] == ["0", "1", "0"]  # pending, failed, succeeded
    gateways = frame(at, "gateways")
    assert list(gateways["Gateway"]) == ["sim"] and list(gateways["Circuit"]) == ["closed"]

    failed = frame(at, "failed")
    assert list(failed["Order"]) == [f"#{number}"]
    assert "card_declined" in failed.iloc[0]["Error"]
    attempts = frame(at, "attempts")
    assert list(attempts["Code"]) == ["card_declined"] and list(attempts["Outcome"]) == ["declined"]
    assert attempts.iloc[0]["Amount"] == "$16.00"  # two blue mugs at 8.00
    assert "Nothing is waiting for a charge" in texts(at, "info")

    # Asking first: nothing happens until the confirmation.
    assert at.selectbox(key="payments_retry_order").value == number
    at.button(key="payments_retry").click().run()
    assert not at.exception
    assert f"Charge order #{number} again?" in texts(at, "warning")
    assert order_status(owner, declined["order_id"]) == "payment_failed"
    at.button(key="payments_retry_keep").click().run()
    assert not _has_button(at, "payments_retry_confirm")
    assert order_status(owner, declined["order_id"]) == "payment_failed"

    at.button(key="payments_retry").click().run()
    at.button(key="payments_retry_confirm").click().run()
    assert not at.exception
    assert f"Order #{number} is payment pending" in texts(at, "success")
    assert order_status(owner, declined["order_id"]) == "payment_pending"
    pending = payments.list_payments(db, shop.tenant.id, CLI, status="pending")
    assert [p["order_number"] for p in pending] == [number]
    queue = frame(at, "queue")
    assert list(queue["Order"]) == [f"#{number}"]
    assert list(frame(at, "failed")["Charged again"]) == ["yes"]
    assert not _has_button(at, "payments_retry")  # nothing left to retry


def test_a_retry_core_refuses_shows_its_message_and_changes_nothing(db, owner, shop, declined):
    tid = shop.tenant.id
    inventory.adjust(db, tid, CLI, sku="BLUE", warehouse="EAST", change=-9, reason="stock count")
    at = open_page(shop, "owner", PAYMENTS, "Payments")
    at.button(key="payments_retry").click().run()
    at.button(key="payments_retry_confirm").click().run()
    assert not at.exception
    assert f"order #{declined['number']} cannot be charged again: not enough stock of BLUE" in texts(
        at, "error"
    )
    assert not texts(at, "success")
    assert order_status(owner, declined["order_id"]) == "payment_failed"
    assert not payments.list_payments(db, tid, CLI, status="pending")


def _has_button(at, key: str) -> bool:
    return any(b.key == key for b in at.button)


# --- notifications ---------------------------------------------------------------------------------


def test_the_failed_payment_tells_the_staff_in_the_app(shop, declined):
    at = open_page(shop, "owner", NOTIFICATIONS, "Notifications")
    outbox = frame(at, "outbox")
    staff = outbox[outbox["Topic"] == "payment_failed"]
    assert list(staff["Channel"]) == ["In-app (staff)"]
    assert list(staff["Order"]) == [f"#{declined['number']}"] and list(staff["Status"]) == ["queued"]
    assert [m.value for m in at.metric] == ["1", "0", "0"]

    at.selectbox(key="notifications_channel").select("email").run()
    assert "No notification matches these filters" in texts(at, "info")
    at.selectbox(key="notifications_channel").select(None).run()
    at.selectbox(key="notifications_status").select("queued").run()
    assert list(frame(at, "outbox")["Topic"]) == ["payment_failed"]


def test_a_dead_letter_is_resent_after_confirmation(db, shop):
    tid = shop.tenant.id
    email = {"host": "127.0.0.1", "port": 9, "starttls": False, "sender": "s@x.io", "timeout_seconds": 1}
    channels.set_channel(db, tid, CLI, "email", email)
    tenants.change_settings(db, tid, CLI, notification_attempt_limit=1)
    place_order(db, tid, CLI, customer_id=shop.customer, lines=[("BLUE", 1)])
    dispatch.process_notifications(db, "test", LEASE, only=[tid])
    [letter] = dispatch.list_notifications(db, tid, CLI, status="dead")

    at = open_page(shop, "manager", NOTIFICATIONS, "Notifications")
    assert [m.value for m in at.metric] == ["0", "0", "1"]
    dead = frame(at, "dead")
    assert list(dead["Recipient"]) == ["ada@example.com"]
    assert "cannot reach the SMTP server 127.0.0.1:9" in dead.iloc[0]["Error"]
    assert frame(at, "channels").set_index("Channel").loc["Email", "Set up"] == "yes"

    at.button(key="notifications_resend").click().run()
    assert "Send order_reserved" in texts(at, "warning")
    assert dispatch.list_notifications(db, tid, CLI, status="dead")  # not yet
    at.button(key="notifications_resend_confirm").click().run()
    assert not at.exception
    assert "Queued again: order_reserved" in texts(at, "success")
    [again] = dispatch.list_notifications(db, tid, CLI, status="queued")
    assert again["id"] == letter["id"] and again["attempts"] == 0
    assert "No dead letters" in texts(at, "info")


def test_the_template_preview_renders_sample_data(shop):
    at = open_page(shop, "owner", NOTIFICATIONS, "Notifications")
    at.selectbox(key="notifications_topic").select("order_shipped").run()
    assert not at.exception
    assert "Subject: Order #1042 has shipped" in texts(at, "text")
    assert "Tracking number: 1Z999AA10123456784" in texts(at, "code")


def test_a_refund_the_gateway_declines_is_shown_for_settling_by_hand(db, shop):
    tid = shop.tenant.id
    gateway = FakeGateway()
    try:
        payments.set_gateways(db, tid, CLI, [{"name": "main", "kind": "http", "url": gateway.url}])
        order = shop.orders[1]
        payments.request_payment(db, tid, CLI, order["order_id"])
        assert not payments.process_payments(db, "test", LEASE, only=[tid]).problems
        cancel_order(db, tid, CLI, order["order_id"])
        gateway.refund_plan = ["decline"]
        assert not refunds.process_refunds(db, "test", LEASE, only=[tid]).problems
    finally:
        gateway.close()

    at = open_page(shop, "manager", PAYMENTS, "Payments")

    table = frame(at, "refunds")
    assert list(table["Order"]) == [f"#{order['number']}"] and list(table["Status"]) == ["failed"]
    assert "insufficient_funds" in table["Last error"][0]
    assert "settle them with the customer by hand" in texts(at, "warning")
