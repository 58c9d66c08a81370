"""Notifications: outbox rows written with their cause, delivered by email (a real SMTP server on
loopback), SMS and push (real HTTP providers on loopback) and in-app; templates per tenant; customer
preferences; retries, dead letters and resending; bad configuration reported, nothing lost."""

from __future__ import annotations

import threading

import pytest
from conftest import snapshot
from fakes import FakeProvider

from core import catalog, customers, inventory, tenants
from core.commands import CLI, Actor
from core.errors import PermissionDenied, ValidationError
from core.notifications import channels, dispatch, templates
from core.notifications.smtp_sink import SmtpServer
from core.orders.handlers import pay_order, place_order, ship_order
from core.orders.model import OutOfStock
from jobs.worker import run_job

LEASE = 5.0


@pytest.fixture
def sms():
    p = FakeProvider()
    yield p
    p.close()


@pytest.fixture
def push():
    p = FakeProvider(token="push-token")
    yield p
    p.close()


def email_to(smtp: SmtpServer, **extra) -> dict:
    return {"host": smtp.host, "port": smtp.port, "starttls": False, "sender": "shop@example.com", **extra}


def setup_shop(db, tid, *, name: str = "Ada", **prefs) -> str:
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
    inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=20)
    fields = {"name": name, "email": "ada@example.com", "phone": "+15550100", **prefs}
    return customers.add_customer(db, tid, CLI, **fields)["id"]


def send(db, tid, worker: str = "test-worker"):
    return dispatch.process_notifications(db, worker, LEASE, only=[tid])


def rows(owner, tid) -> list[tuple]:
    return owner.execute(
        "SELECT topic, channel, recipient, status, attempts, last_error FROM notifications"
        " WHERE tenant_id = %s ORDER BY created_at, channel",
        [tid],
    ).fetchall()


def mail_for(smtp: SmtpServer, dedupe_prefix: str = "") -> list:
    return [m for m in smtp.messages if m["X-OMS-Dedupe-Key"].startswith(dedupe_prefix)]


def test_an_email_with_text_and_html_parts_reaches_the_smtp_server(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    customer = setup_shop(db, tenant.id)
    order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 2)])
    [(topic, channel, recipient, status, _, _)] = rows(owner, tenant.id)
    assert (topic, channel, recipient, status) == ("order_reserved", "email", "ada@example.com", "queued")

    report = send(db, tenant.id)

    assert report.processed == 1 and not report.problems
    key = owner.execute("SELECT dedupe_key FROM notifications WHERE tenant_id = %s", [tenant.id]).fetchone()[
        0
    ]
    [mail] = mail_for(smtp, key)
    assert mail["To"] == "ada@example.com" and mail["X-Envelope-To"] == "ada@example.com"
    assert mail["From"] == f"{tenant.name} <shop@example.com>"
    assert mail["Subject"] == f"Order #{order['number']} received"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Hello Ada" in text and "$25.00" in text and tenant.name in text
    assert "<p>Hello Ada," in html
    assert rows(owner, tenant.id)[0][3:5] == ("sent", 1)
    assert send(db, tenant.id).processed == 0  # sent once


def test_a_long_email_is_sent_with_crlf_line_ends(db, owner, tenant, smtp):
    """SMTP reads bare LF as one line and refuses lines over 1,000 bytes: a long message must still go."""
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    long_text = "Hello {{ customer_name }},\n\n" + "Thank you for shopping with us. " * 80
    templates.set_template(
        db, tenant.id, CLI, "order_reserved", subject="Order received", text=long_text, html=long_text
    )
    customer = setup_shop(db, tenant.id)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])

    report = send(db, tenant.id)

    assert report.processed == 1 and not report.problems, report.problems
    [mail] = [m for m in smtp.messages if m["Subject"] == "Order received" and tenant.name in m["From"]]
    assert mail.get_body(("plain",)).get_content().count("Thank you for shopping") == 80
    assert rows(owner, tenant.id)[0][3] == "sent"


def test_shipping_tells_the_carrier_and_tracking_number(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    customer = setup_shop(db, tenant.id)
    order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    pay_order(db, tenant.id, CLI, order["order_id"])
    ship_order(db, tenant.id, CLI, order["order_id"], carrier="UPS", tracking="1Z-TRACK-42")
    send(db, tenant.id)
    topics = [r[0] for r in rows(owner, tenant.id)]
    assert topics == ["order_reserved", "order_paid", "order_shipped"]
    shipped = [m for m in smtp.messages if m["Subject"] == f"Order #{order['number']} has shipped"]
    assert "UPS" in shipped[0].get_body(("plain",)).get_content()
    assert "1Z-TRACK-42" in shipped[0].get_body(("plain",)).get_content()


def test_customer_preferences_choose_the_channels(db, owner, tenant, smtp, sms, push):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    channels.set_channel(db, tenant.id, CLI, "sms", {"url": sms.url}, secret="good-token")
    channels.set_channel(db, tenant.id, CLI, "push", {"url": push.url}, secret="push-token")
    customer = setup_shop(db, tenant.id, notify_email=False, notify_sms=True, notify_push=True)
    order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    assert sorted(r[1] for r in rows(owner, tenant.id)) == ["push", "sms"]

    send(db, tenant.id)

    [text] = sms.received
    assert text["to"] == "+15550100" and f"#{order['number']}" in text["text"]
    assert text["idempotency_key"] == text["dedupe_key"]
    [note] = push.received
    assert note["to"] == customer and note["title"] == f"Order #{order['number']} received"
    assert all(r[3] == "sent" for r in rows(owner, tenant.id))


def test_html_is_escaped_and_tenant_templates_replace_the_built_in_ones(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    customer = setup_shop(db, tenant.id, name="<script>alert(1)</script>")
    templates.set_template(
        db,
        tenant.id,
        CLI,
        "order_reserved",
        subject="Thanks {{ customer_name }}!",
        text="Order {{ order_number }} for {{ total | money(currency) }}",
        html="<b>{{ customer_name }}</b>",
    )
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    send(db, tenant.id)
    [mail] = [m for m in smtp.messages if m["Subject"] == "Thanks <script>alert(1)</script>!"]
    assert mail.get_body(("html",)).get_content().strip() == "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>"
    assert mail.get_body(("plain",)).get_content().strip().endswith("for $12.50")


def test_bad_templates_are_refused_and_write_nothing(db, owner, tenant):
    before = snapshot(owner, tenant.id)
    for parts, words in [
        ({"subject": "{{ broken", "text": "x", "html": "x"}, "does not render"),
        ({"subject": "x", "text": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "html": "x"}, "render"),
        ({"subject": "x", "text": "", "html": "x"}, "text is required"),
        ({"subject": "x", "text": "x" * 20_001, "html": "x"}, "longer than"),
    ]:
        with pytest.raises(ValidationError, match=words):
            templates.set_template(db, tenant.id, CLI, "order_paid", **parts)
    with pytest.raises(ValidationError, match="topic must be one of"):
        templates.set_template(db, tenant.id, CLI, "birthday", subject="x", text="x", html="x")
    with pytest.raises(PermissionDenied):
        templates.set_template(
            db, tenant.id, Actor("m", "manager"), "order_paid", subject="x", text="x", html="x"
        )
    assert snapshot(owner, tenant.id) == before
    preview = templates.preview(db, tenant.id, CLI, "order_shipped")
    assert "1Z999AA10123456784" in preview.text and preview.subject == "Order #1042 has shipped"


def test_a_rejected_order_or_a_repeated_command_sends_nothing_more(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    customer = setup_shop(db, tenant.id)
    with pytest.raises(OutOfStock):
        place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 999)])
    assert rows(owner, tenant.id) == []
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)], key="k1")
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)], key="k1")
    assert len(rows(owner, tenant.id)) == 1


def test_low_stock_tells_the_staff_in_the_app_and_by_email(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp, staff_address="staff@example.com"))
    customer = setup_shop(db, tenant.id, notify_email=False)
    inventory.set_reorder_point(db, tenant.id, CLI, sku="MUG", warehouse="MAIN", reorder_point=18)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])  # 19 left: above
    assert rows(owner, tenant.id) == []
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 2)])  # 17 left: crosses
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])  # already below: quiet
    low = [(r[1], r[2]) for r in rows(owner, tenant.id) if r[0] == "low_stock"]
    assert sorted(low) == [("email", "staff@example.com"), ("in_app", "staff")]
    send(db, tenant.id)
    [mail] = [m for m in smtp.messages if m["To"] == "staff@example.com" and tenant.name in m["From"]]
    assert mail["Subject"] == "Low stock: MUG in MAIN"
    inbox = dispatch.list_notifications(db, tenant.id, CLI, channel="in_app")
    assert [(n["topic"], n["status"]) for n in inbox] == [("low_stock", "sent")]


def test_an_unreachable_smtp_server_is_reported_retried_dead_lettered_and_resent(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", {**email_to(smtp), "port": 9, "timeout_seconds": 2})
    tenants.change_settings(db, tenant.id, CLI, notification_attempt_limit=2)
    customer = setup_shop(db, tenant.id)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])

    report = send(db, tenant.id)
    [(_, _, _, status, attempts, error)] = rows(owner, tenant.id)
    assert (status, attempts) == ("queued", 1)
    assert f"cannot reach the SMTP server {smtp.host}:9" in error and error in report.problems
    assert send(db, tenant.id).processed == 0  # backing off

    # Time passes (the backoff is 10 s and more): make the row due now.
    owner.execute("UPDATE notifications SET next_attempt_at = now() WHERE tenant_id = %s", [tenant.id])
    send(db, tenant.id)
    [(_, _, _, status, attempts, error)] = rows(owner, tenant.id)
    assert (status, attempts) == ("dead", 2) and "cannot reach" in error

    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))  # fixed
    nid = dispatch.list_notifications(db, tenant.id, CLI, status="dead")[0]["id"]
    with pytest.raises(PermissionDenied):
        dispatch.resend(db, tenant.id, Actor("cleo", "clerk"), nid)
    dispatch.resend(db, tenant.id, CLI, nid)
    with pytest.raises(ValidationError, match="still queued"):
        dispatch.resend(db, tenant.id, CLI, nid)
    send(db, tenant.id)
    assert rows(owner, tenant.id)[0][3] == "sent"
    resent = owner.execute(
        "SELECT count(*) FROM events WHERE tenant_id = %s AND event_type = 'NotificationResent'", [tenant.id]
    ).fetchone()[0]
    assert resent == 1


def test_a_wrong_token_shows_on_the_notification_and_in_the_worker_heartbeat(db, owner, tenant, sms):
    channels.set_channel(db, tenant.id, CLI, "sms", {"url": sms.url}, secret="wrong-token")
    customer = setup_shop(db, tenant.id, notify_email=False, notify_sms=True)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])

    from core.workers import Heartbeat

    heartbeat = Heartbeat(db)
    run_job(heartbeat, "notifications")

    [(_, _, _, status, _, error)] = rows(owner, tenant.id)
    assert status == "queued" and error == "the sms provider refused the token (HTTP 401)"
    assert error in heartbeat.jobs["notifications"]["error"]
    assert sms.received == []


def test_two_workers_send_each_notification_once(db, owner, tenant, smtp):
    channels.set_channel(db, tenant.id, CLI, "email", email_to(smtp))
    customer = setup_shop(db, tenant.id)
    for _ in range(15):
        order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
        pay_order(db, tenant.id, CLI, order["order_id"])
    keys = {
        r[0] for r in owner.execute("SELECT dedupe_key FROM notifications WHERE tenant_id = %s", [tenant.id])
    }
    assert len(keys) == 30

    done: dict[str, int] = {"w1": 0, "w2": 0}

    def work(worker: str) -> None:
        for _ in range(30):  # small batches until the outbox is empty for this worker
            processed = dispatch.process_notifications(db, worker, LEASE, limit=4, only=[tenant.id]).processed
            if not processed:
                return
            done[worker] += processed

    threads = [threading.Thread(target=work, args=(w,)) for w in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(done.values()) == 30
    received = [m["X-OMS-Dedupe-Key"] for m in smtp.messages if m["X-OMS-Dedupe-Key"] in keys]
    assert sorted(received) == sorted(keys)  # every one, each once
    assert dispatch.counts(db, tenant.id, CLI) == {"queued": 0, "sent": 30, "dead": 0}


def test_channel_settings_are_checked_and_secrets_stay_out_of_the_log(db, owner, tenant):
    before = snapshot(owner, tenant.id)
    for channel, settings, words in [
        ("fax", {}, "channel must be"),
        ("email", {"host": "smtp.example.com", "sender": "not-an-address"}, "sender"),
        ("email", {"host": "smtp.example.com", "sender": "a@b.c", "port": 70000}, "port"),
        ("sms", {"url": "not a url"}, "url"),
        ("push", {"url": "http://127.0.0.1:1", "extra": 1}, "extra"),
    ]:
        with pytest.raises(ValidationError, match=words):
            channels.set_channel(db, tenant.id, CLI, channel, settings)
    assert snapshot(owner, tenant.id) == before
    channels.set_channel(db, tenant.id, CLI, "sms", {"url": "http://127.0.0.1:1"}, secret="tok-123456")
    logged = owner.execute("SELECT data::text FROM events WHERE tenant_id = %s", [tenant.id]).fetchall()
    assert not any("tok-123456" in r[0] for r in logged)
    assert channels.channel_settings(db, tenant.id, CLI)["channels"]["sms"]["secret_set"] is True
    with pytest.raises(PermissionDenied):
        dispatch.list_notifications(db, tenant.id, Actor("cleo", "clerk"))
