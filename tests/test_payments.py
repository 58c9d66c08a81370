"""Charging orders through gateways: retries with backoff, circuit breakers and failover, declines,
giving up, staff retries, and never charging twice. The gateway is a real HTTP server on loopback
(tests/fakes.FakeGateway) that counts captures per idempotency key and per order."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import snapshot
from fakes import FakeGateway

from core import catalog, customers, inventory, projections, tenants
from core.commands import CLI, SYSTEM, Actor
from core.errors import NotFound, PermissionDenied, ValidationError
from core.orders.handlers import cancel_order, expire_reservations, pay_order, place_order
from core.orders.model import IllegalTransition
from core.payments import refunds as refunds_service
from core.payments import service as payments

LEASE = 5.0


@pytest.fixture
def gateway():
    g = FakeGateway(slow=1.0)
    yield g
    g.close()


@pytest.fixture
def backup():
    g = FakeGateway()
    yield g
    g.close()


def setup_shop(db, tid, *, stock: int = 10, **policy) -> str:
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug", price=1250)
    inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=stock)
    if policy:
        tenants.change_settings(db, tid, CLI, **policy)
    return customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")["id"]


def http(name: str, g: FakeGateway, timeout: float = 5.0) -> dict:
    return {"name": name, "kind": "http", "url": g.url, "timeout_seconds": timeout}


def order_and_charge(db, tid, customer, qty: int = 2) -> dict:
    order = place_order(db, tid, CLI, customer_id=customer, lines=[("MUG", qty)])
    payments.request_payment(db, tid, CLI, order["order_id"])
    return order


def run(db, tid, worker: str = "test-worker") -> None:
    report = payments.process_payments(db, worker, LEASE, only=[tid])
    assert not report.problems, report.problems


def state(owner, order_id) -> dict:
    row = owner.execute(
        "SELECT o.status, p.status, p.attempts, p.next_attempt_at, p.updated_at, p.last_error,"
        " p.pinned_gateway"
        " FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id = %s"
        " ORDER BY p.created_at DESC LIMIT 1",
        [order_id],
    ).fetchone()
    keys = ("order", "payment", "attempts", "next_attempt_at", "updated_at", "error", "pinned")
    return dict(zip(keys, row, strict=True))


def attempts(owner, order_id) -> list[tuple]:
    return owner.execute(
        "SELECT a.attempt, a.gateway, a.outcome, a.code, a.idempotency_key FROM payment_attempts a"
        " JOIN payments p ON p.tenant_id = a.tenant_id AND p.id = a.payment_id"
        " WHERE p.order_id = %s ORDER BY p.created_at, a.attempt",
        [order_id],
    ).fetchall()


def reserved(owner, tid) -> int:
    return owner.execute(
        "SELECT coalesce(sum(reserved), 0) FROM stock WHERE tenant_id = %s", [tid]
    ).fetchone()[0]


def wait_due(owner, order_id, limit: float = 10.0) -> None:
    """Sleep until the payment's next attempt is due (the backoff really elapses)."""
    due = state(owner, order_id)["next_attempt_at"]
    pause = (due - datetime.now(UTC)).total_seconds()
    assert pause <= limit, f"next attempt in {pause:.1f}s"
    time.sleep(max(0.0, pause) + 0.05)


def test_a_charge_authorizes_and_captures_once_with_the_attempts_key(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    order = order_and_charge(db, tenant.id, customer)
    assert state(owner, order["order_id"])["order"] == "payment_pending"

    run(db, tenant.id)

    s = state(owner, order["order_id"])
    assert (s["order"], s["payment"], s["attempts"]) == ("paid", "succeeded", 1)
    [(n, gw, outcome, _code, key)] = attempts(owner, order["order_id"])
    assert (n, gw, outcome) == (1, "main", "succeeded")
    assert gateway.calls == [("/authorize", f"{key}:authorize"), ("/capture", f"{key}:capture")]
    assert gateway.charged == {f"order-{order['number']}": 1}
    paid = owner.execute(
        "SELECT paid_amount, total FROM orders WHERE id = %s", [order["order_id"]]
    ).fetchone()
    assert paid[0] == paid[1] > 0


def test_transient_failures_are_retried_with_exponential_backoff_and_jitter(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id, payment_backoff_seconds=1, circuit_failures=10)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["5xx", "5xx", "ok"]
    order = order_and_charge(db, tenant.id, customer)

    for n in (1, 2):
        run(db, tenant.id)
        s = state(owner, order["order_id"])
        assert (s["order"], s["payment"], s["attempts"]) == ("payment_pending", "pending", n)
        delay = (s["next_attempt_at"] - s["updated_at"]).total_seconds()
        assert 2 ** (n - 1) <= delay <= 2 ** (n - 1) * 1.25 + 0.01, delay  # base x 2^(n-1), +0..25 %
        run(db, tenant.id)  # not due yet: nothing happens
        assert state(owner, order["order_id"])["attempts"] == n
        wait_due(owner, order["order_id"])

    run(db, tenant.id)
    assert state(owner, order["order_id"])["order"] == "paid"
    assert [a[2] for a in attempts(owner, order["order_id"])] == ["transient", "transient", "succeeded"]
    assert gateway.charged == {f"order-{order['number']}": 1}


def test_backoff_doubles_stays_within_jitter_and_is_capped():
    for attempt in range(1, 8):
        d = payments.backoff(30, attempt, "p1").total_seconds()
        assert 30 * 2 ** (attempt - 1) <= d <= 30 * 2 ** (attempt - 1) * 1.25
    assert payments.backoff(3600, 10, "p1") == payments.MAX_BACKOFF
    assert payments.backoff(30, 3, "p1") == payments.backoff(30, 3, "p1")  # reproducible per payment


def test_a_decline_is_not_retried_releases_the_stock_and_tells_the_customer(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["decline"]
    order = order_and_charge(db, tenant.id, customer)
    assert reserved(owner, tenant.id) == 2

    run(db, tenant.id)

    s = state(owner, order["order_id"])
    assert (s["order"], s["payment"], s["attempts"]) == ("payment_failed", "failed", 1)
    assert "insufficient_funds" in s["error"]
    assert gateway.authorizations == 1 and not gateway.captures
    assert reserved(owner, tenant.id) == 0
    told = owner.execute(
        "SELECT channel, recipient FROM notifications WHERE order_id = %s AND topic = 'payment_failed'"
        " ORDER BY channel",
        [order["order_id"]],
    ).fetchall()
    assert ("in_app", "staff") in told  # the customer's email needs the email channel set up: see below
    run(db, tenant.id)
    assert gateway.authorizations == 1


def test_giving_up_after_the_attempt_limit_releases_stock(db, owner, tenant, gateway):
    customer = setup_shop(
        db, tenant.id, payment_attempt_limit=2, payment_backoff_seconds=1, circuit_failures=10
    )
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["5xx", "5xx", "ok"]
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    wait_due(owner, order["order_id"])
    run(db, tenant.id)
    s = state(owner, order["order_id"])
    assert (s["order"], s["payment"], s["attempts"]) == ("payment_failed", "failed", 2)
    assert reserved(owner, tenant.id) == 0
    assert gateway.authorizations == 2 and not gateway.captures


def test_an_open_circuit_fails_over_to_the_next_gateway(db, owner, tenant, gateway, backup):
    customer = setup_shop(
        db, tenant.id, payment_backoff_seconds=1, circuit_failures=2, circuit_reset_seconds=600
    )
    payments.set_gateways(db, tenant.id, CLI, [http("first", gateway), http("second", backup)])
    gateway.plan = ["5xx"] * 10
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    wait_due(owner, order["order_id"])
    run(db, tenant.id)  # the second failure opens first's circuit: the next attempt is due at once
    s = state(owner, order["order_id"])
    assert s["next_attempt_at"] <= s["updated_at"] + timedelta(milliseconds=5)
    run(db, tenant.id)
    assert state(owner, order["order_id"])["order"] == "paid"
    assert [(a[1], a[2]) for a in attempts(owner, order["order_id"])] == [
        ("first", "transient"),
        ("first", "transient"),
        ("second", "succeeded"),
    ]
    circuits = {c["gateway"]: c["state"] for c in payments.circuits(db, tenant.id, CLI)}
    assert circuits == {"first": "open", "second": "closed"}
    # A new charge skips the open circuit without calling it.
    calls = gateway.authorizations
    second = order_and_charge(db, tenant.id, customer, qty=1)
    run(db, tenant.id)
    assert state(owner, second["order_id"])["order"] == "paid" and gateway.authorizations == calls


def test_a_half_open_circuit_lets_one_trial_through_and_closes_on_success(db, owner, tenant, gateway):
    customer = setup_shop(
        db, tenant.id, payment_backoff_seconds=1, circuit_failures=2, circuit_reset_seconds=4
    )
    payments.set_gateways(db, tenant.id, CLI, [http("only", gateway)])
    gateway.plan = ["5xx", "5xx", "ok"]
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    wait_due(owner, order["order_id"])
    run(db, tenant.id)
    assert {c["gateway"]: c["state"] for c in payments.circuits(db, tenant.id, CLI)} == {"only": "open"}
    wait_due(owner, order["order_id"])  # the backoff (2 s) ends before the circuit half-opens (4 s)
    run(db, tenant.id)  # so the attempt is postponed until it does, without calling
    assert gateway.authorizations == 2
    s = state(owner, order["order_id"])
    assert "circuit" in s["error"] and s["order"] == "payment_pending" and s["attempts"] == 2
    wait_due(owner, order["order_id"])
    run(db, tenant.id)  # the trial call succeeds and closes the circuit
    assert state(owner, order["order_id"])["order"] == "paid"
    assert {c["gateway"]: c["state"] for c in payments.circuits(db, tenant.id, CLI)} == {"only": "closed"}


def test_a_timeout_keeps_the_payment_on_that_gateway_and_its_key(db, owner, tenant, gateway, backup):
    """The gateway charged but answered too late: the retry must not charge again, anywhere."""
    customer = setup_shop(
        db, tenant.id, payment_backoff_seconds=1, circuit_failures=1, circuit_reset_seconds=1
    )
    payments.set_gateways(db, tenant.id, CLI, [http("first", gateway, timeout=0.3), http("second", backup)])
    gateway.plan = ["timeout"]
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    s = state(owner, order["order_id"])
    assert s["pinned"] == "first" and s["order"] == "payment_pending"
    time.sleep(1.2)  # the late answer lands at the gateway, and the circuit half-opens
    wait_due(owner, order["order_id"])
    run(db, tenant.id)
    assert state(owner, order["order_id"])["order"] == "paid"
    keys = {a[4] for a in attempts(owner, order["order_id"])}
    assert len(keys) == 1 and not backup.calls
    assert sum(gateway.charged.values()) == 1 and max(gateway.captures.values()) == 1


def test_a_crash_between_the_gateways_answer_and_recording_it_reuses_the_key(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    order = order_and_charge(db, tenant.id, customer)
    # What a worker does up to the crash: claim, record the attempt, call the gateway; then it dies.
    with db.tenant(tenant.id) as conn:
        [row] = conn.execute(payments.CLAIM, {"lease": 0.2, "worker": "dead", "limit": 5}).fetchall()
    pid = str(row[0])
    payments._record(
        db,
        tenant.id,
        row[1],
        f"payment:{pid}:1:start",
        lambda o: o.attempt_started(pid, 1, "main", f"{pid}:main", datetime.now(UTC)),
    )
    from core.payments import gateways as gw

    charged = gw.charge(gw.build(http("main", gateway)), f"{pid}:main", row[3], "USD", "order-x")
    assert charged.outcome == "succeeded"
    time.sleep(0.3)  # the dead worker's lease runs out

    run(db, tenant.id)

    assert state(owner, order["order_id"])["order"] == "paid"
    assert [a[2] for a in attempts(owner, order["order_id"])] == ["succeeded"]
    assert max(gateway.captures.values()) == 1 and len(gateway.captures) == 1


def test_staff_retry_a_failed_payment_which_reserves_the_stock_again(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id, stock=2)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["decline"]
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    assert state(owner, order["order_id"])["order"] == "payment_failed"

    retried = payments.retry_payment(db, tenant.id, Actor("cleo", "clerk"), order["number"], key="retry-1")
    assert retried["status"] == "payment_pending" and reserved(owner, tenant.id) == 2
    assert payments.retry_payment(db, tenant.id, CLI, order["number"], key="retry-1") == retried
    run(db, tenant.id)
    assert state(owner, order["order_id"])["order"] == "paid"
    allocations = owner.execute(
        "SELECT warehouse, quantity, state FROM order_allocations WHERE order_id = %s", [order["order_id"]]
    ).fetchall()
    assert allocations == [("MAIN", 2, "reserved")]


def test_a_retry_without_the_stock_says_what_is_short_and_writes_nothing(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id, stock=2)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["decline"]
    order = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)
    place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])  # someone else takes one
    before = snapshot(owner, tenant.id)
    with pytest.raises(ValidationError, match=r"not enough stock of MUG \(wanted 2, available 1\)"):
        payments.retry_payment(db, tenant.id, CLI, order["order_id"])
    assert snapshot(owner, tenant.id) == before
    with pytest.raises(IllegalTransition, match="is reserved"):
        payments.retry_payment(db, tenant.id, CLI, _any_reserved(owner, tenant.id))


def _any_reserved(owner, tid) -> str:
    return str(
        owner.execute("SELECT id FROM orders WHERE tenant_id = %s AND status = 'reserved'", [tid]).fetchone()[
            0
        ]
    )


def test_a_pending_charge_is_neither_expired_nor_cancelled(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id, reservation_minutes=1)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    order = place_order(
        db,
        tenant.id,
        CLI,
        customer_id=customer,
        lines=[("MUG", 1)],
        at=datetime.now(UTC) - timedelta(hours=1),
    )
    payments.request_payment(db, tenant.id, CLI, order["order_id"])
    assert expire_reservations(db, tenant.id, SYSTEM) == []
    from core.orders.handlers import cancel_order

    with pytest.raises(IllegalTransition, match="payment_pending"):
        cancel_order(db, tenant.id, CLI, order["order_id"])
    assert reserved(owner, tenant.id) == 1


def test_two_workers_never_attempt_the_same_payment(db, owner, tenant):
    g = FakeGateway(slow=0.02)
    try:
        customer = setup_shop(db, tenant.id, stock=40)
        payments.set_gateways(db, tenant.id, CLI, [http("main", g)])
        orders = [order_and_charge(db, tenant.id, customer, qty=1) for _ in range(30)]
        g.plan = ["slow"] * 30
        done: dict[str, int] = {}

        def work(worker: str) -> None:
            for _ in range(3):
                done[worker] = (
                    done.get(worker, 0)
                    + payments.process_payments(db, worker, LEASE, only=[tenant.id]).processed
                )

        threads = [threading.Thread(target=work, args=(w,)) for w in ("w1", "w2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for o in orders:
            assert [a[2] for a in attempts(owner, o["order_id"])] == ["succeeded"]
        authorized = [key for path, key in g.calls if path == "/authorize"]
        assert len(authorized) == len(set(authorized)) == 30
        assert sum(done.values()) == 30 and min(done.values()) > 0, done  # both took a share
    finally:
        g.close()


def test_the_simulated_gateway_declines_and_fails_at_its_set_rates(db, owner, tenant):
    customer = setup_shop(db, tenant.id, stock=50, payment_attempt_limit=1)
    payments.set_gateways(
        db, tenant.id, CLI, [{"name": "sim", "kind": "simulated", "decline_rate": 0.5, "seed": 3}]
    )
    orders = [order_and_charge(db, tenant.id, customer, qty=1) for _ in range(20)]
    run(db, tenant.id)
    outcomes = [state(owner, o["order_id"])["order"] for o in orders]
    assert (
        3 <= outcomes.count("payment_failed") <= 17
        and outcomes.count("paid") + outcomes.count("payment_failed") == 20
    )


def test_gateway_settings_are_checked_and_tokens_stay_out_of_the_log(db, owner, tenant):
    before = snapshot(owner, tenant.id)
    bad = [
        ([{"name": "x", "kind": "carrier-pigeon"}], "kind"),
        ([{"name": "Bad Name!", "kind": "simulated"}], "name"),
        ([{"name": "x", "kind": "http", "url": "ftp://example.com"}], "url"),
        ([{"name": "x", "kind": "simulated", "decline_rate": 2}], "decline_rate"),
        ([{"name": "x"}, {"name": "x"}], "own name"),
        ("not a list", "list"),
    ]
    for gateways, words in bad:
        with pytest.raises(ValidationError, match=words):
            payments.set_gateways(db, tenant.id, CLI, gateways)
    with pytest.raises(PermissionDenied):
        payments.set_gateways(db, tenant.id, Actor("m", "manager"), [{"name": "x"}])
    assert snapshot(owner, tenant.id) == before

    payments.set_gateways(
        db,
        tenant.id,
        CLI,
        [{"name": "live", "kind": "http", "url": "http://127.0.0.1:9"}],
        tokens={"live": "s3cr3t"},
    )
    logged = owner.execute("SELECT data::text FROM events WHERE tenant_id = %s", [tenant.id]).fetchall()
    assert not any("s3cr3t" in row[0] for row in logged)
    assert payments.gateway_settings(db, tenant.id, CLI)["gateways"][0]["token_set"] is True


def test_charging_needs_a_gateway_a_reserved_order_and_the_right_role(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    with pytest.raises(ValidationError, match="no payment gateway"):
        payments.request_payment(db, tenant.id, CLI, order["order_id"])
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    with pytest.raises(PermissionDenied):
        payments.request_payment(db, tenant.id, Actor("ana", "analyst"), order["order_id"])
    with pytest.raises(PermissionDenied):
        payments.list_payments(db, tenant.id, Actor("cleo", "clerk"))
    payments.request_payment(db, tenant.id, CLI, order["order_id"])
    with pytest.raises(IllegalTransition, match="payment_pending"):
        payments.request_payment(db, tenant.id, CLI, order["order_id"])


def test_the_payments_read_model_rebuilds_equal(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id, payment_backoff_seconds=1, circuit_failures=10)
    payments.set_gateways(db, tenant.id, CLI, [http("main", gateway)])
    gateway.plan = ["5xx", "decline"]
    first = order_and_charge(db, tenant.id, customer)
    run(db, tenant.id)  # the first charge meets the 5xx and waits for its retry
    second = order_and_charge(db, tenant.id, customer, qty=1)
    run(db, tenant.id)  # the second meets the decline
    assert state(owner, second["order_id"])["payment"] == "failed"
    wait_due(owner, first["order_id"])
    run(db, tenant.id)

    def rows():
        return [
            owner.execute(f"SELECT * FROM {t} WHERE tenant_id = %s ORDER BY 1, 2, 3", [tenant.id]).fetchall()
            for t in ("payments", "payment_attempts")
        ]

    live = rows()
    projections.rebuild(db, tenant.id, projections.registry()["payments"])
    assert rows() == live and len(live[1]) == 3


# --- refunds go back through the gateway that took the money ---------------------------------------------


def refunds(owner, order_id) -> list[tuple]:
    return owner.execute(
        "SELECT status, gateway, amount, attempts, last_error, next_attempt_at FROM refunds"
        " WHERE order_id = %s ORDER BY created_at",
        [order_id],
    ).fetchall()


def paid_through(db, owner, tid, customer, gateway, qty: int = 2) -> dict:
    payments.set_gateways(db, tid, CLI, [http("main", gateway)])
    order = order_and_charge(db, tid, customer, qty)
    run(db, tid)
    assert state(owner, order["order_id"])["order"] == "paid"
    return order


def run_refunds(db, tid, worker: str = "test-worker") -> int:
    report = refunds_service.process_refunds(db, worker, LEASE, only=[tid])
    assert not report.problems, report.problems
    return report.processed


def test_cancelling_a_gateway_paid_order_refunds_it_at_that_gateway_once(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    order = paid_through(db, owner, tenant.id, customer, gateway)
    total = owner.execute("SELECT total FROM orders WHERE id = %s", [order["order_id"]]).fetchone()[0]

    cancel_order(db, tenant.id, CLI, order["order_id"], reason="changed my mind")
    [(status, gw_name, amount, attempts, _, _)] = refunds(owner, order["order_id"])
    assert (status, gw_name, amount, attempts) == ("pending", "main", total, 0)  # written with the cancel

    assert run_refunds(db, tenant.id) == 1
    [(status, _, _, attempts, error, _)] = refunds(owner, order["order_id"])
    assert (status, attempts, error) == ("succeeded", 1, None)
    [capture] = [c for c in gateway.captures]  # one capture, refunded exactly once
    assert sum(gateway.refunds.values()) == 1
    refund_calls = [k for p, k in gateway.calls if p == "/refund"]
    assert len(refund_calls) == 1 and refund_calls[0].startswith("refund:") and capture
    assert run_refunds(db, tenant.id) == 0  # nothing left to do
    types = [
        r[0]
        for r in owner.execute(
            "SELECT event_type FROM events WHERE tenant_id = %s AND stream_id = %s ORDER BY version",
            [tenant.id, f"order-{order['order_id']}"],
        )
    ]
    assert types[-3:] == ["OrderCancelled", "RefundIssued", "RefundSent"]


def test_a_transient_refund_failure_is_retried_with_the_same_key_and_refunds_once(db, owner, tenant):
    g = FakeGateway(slow=0.6)
    try:
        customer = setup_shop(db, tenant.id, payment_backoff_seconds=1)
        payments.set_gateways(db, tenant.id, CLI, [http("main", g, timeout=0.3)])
        order = order_and_charge(db, tenant.id, customer)
        run(db, tenant.id)
        cancel_order(db, tenant.id, CLI, order["order_id"])
        g.refund_plan = ["timeout"]  # the gateway refunds, but the answer comes too late

        run_refunds(db, tenant.id)
        [(status, _, _, attempts, error, due)] = refunds(owner, order["order_id"])
        assert (status, attempts) == ("pending", 1) and error and due is not None
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.7)  # backoff; slow call done
        run_refunds(db, tenant.id)

        [(status, _, _, attempts, _, _)] = refunds(owner, order["order_id"])
        assert (status, attempts) == ("succeeded", 2)
        keys = [k for p, k in g.calls if p == "/refund"]
        assert len(keys) == 2 and keys[0] == keys[1]  # the same idempotency key both times
        assert sum(g.refunds.values()) == 1  # the money went back once
    finally:
        g.close()


def test_a_declined_refund_is_not_retried_and_shows_its_error(db, owner, tenant, gateway):
    customer = setup_shop(db, tenant.id)
    order = paid_through(db, owner, tenant.id, customer, gateway)
    cancel_order(db, tenant.id, CLI, order["order_id"])
    gateway.refund_plan = ["decline"]

    run_refunds(db, tenant.id)

    [(status, _, _, attempts, error, due)] = refunds(owner, order["order_id"])
    assert (status, attempts, due) == ("failed", 1, None) and "insufficient_funds" in error
    assert run_refunds(db, tenant.id) == 0
    [listed] = refunds_service.list_refunds(db, tenant.id, CLI, status="failed")
    assert listed["order_number"] == order["number"] and "insufficient_funds" in listed["last_error"]
    with pytest.raises(PermissionDenied):
        refunds_service.list_refunds(db, tenant.id, Actor("cleo", "clerk"))


def test_an_order_paid_by_hand_is_refunded_by_hand(db, owner, tenant):
    customer = setup_shop(db, tenant.id)
    order = place_order(db, tenant.id, CLI, customer_id=customer, lines=[("MUG", 1)])
    pay_order(db, tenant.id, CLI, order["order_id"])
    cancel_order(db, tenant.id, CLI, order["order_id"])
    assert refunds(owner, order["order_id"]) == []  # no gateway holds that money


def test_refunds_rebuild_equal_and_stay_in_their_tenant(db, owner, tenant, other_tenant, gateway):
    customer = setup_shop(db, tenant.id, payment_backoff_seconds=1)
    first = paid_through(db, owner, tenant.id, customer, gateway)
    second = order_and_charge(db, tenant.id, customer, qty=1)
    run(db, tenant.id)
    gateway.refund_plan = ["5xx"]
    cancel_order(db, tenant.id, CLI, first["order_id"])
    cancel_order(db, tenant.id, CLI, second["order_id"])
    run_refunds(db, tenant.id)

    def rows():
        return owner.execute("SELECT * FROM refunds WHERE tenant_id = %s ORDER BY id", [tenant.id]).fetchall()

    live = rows()
    assert sorted(r[9] for r in live) == ["pending", "succeeded"]  # one met the 5xx
    projections.rebuild(db, tenant.id, projections.registry()["payments"])
    assert rows() == live
    assert refunds_service.list_refunds(db, other_tenant.id, CLI) == []


def test_saving_a_gateway_replaces_it_in_place_or_adds_it_last_and_removing_needs_a_known_name(db, tenant):
    sim = {"name": "sim", "kind": "simulated"}
    payments.set_gateways(db, tenant.id, CLI, [sim, {"name": "backup", "kind": "simulated"}])
    payments.save_gateway(db, tenant.id, CLI, {"name": "sim", "kind": "http", "url": "http://127.0.0.1:9/"})
    payments.save_gateway(db, tenant.id, CLI, {"name": "third", "kind": "simulated"}, token="t0k")
    listed = payments.gateway_settings(db, tenant.id, CLI)["gateways"]
    assert [(g["name"], g["kind"], g["token_set"]) for g in listed] == [
        ("sim", "http", False),
        ("backup", "simulated", False),
        ("third", "simulated", True),
    ]
    payments.remove_gateway(db, tenant.id, CLI, "backup")
    assert [g["name"] for g in payments.gateway_settings(db, tenant.id, CLI)["gateways"]] == ["sim", "third"]
    with pytest.raises(NotFound):
        payments.remove_gateway(db, tenant.id, CLI, "nope")
    with pytest.raises(PermissionDenied):
        payments.save_gateway(db, tenant.id, Actor("mia", "manager"), sim)
