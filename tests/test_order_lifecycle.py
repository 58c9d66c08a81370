"""The order state machine end to end: every legal path, every illegal transition refused with the
current state named, idempotent commands (invariant 4) and permissions checked in core/.

Outcomes are read as the owner, straight from the tables: order rows, allocations, shipments, stock,
events and the command log. "Writes nothing" compares the content of every table before and after.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from conftest import snapshot

from core import catalog, customers, inventory, tenants
from core.commands import CLI, SYSTEM, Actor
from core.db import Database, app_url
from core.errors import Conflict, PermissionDenied, ValidationError
from core.orders.handlers import (
    cancel_order,
    deliver_order,
    expire_order,
    expire_reservations,
    pay_order,
    place_order,
    return_items,
    ship_order,
)
from core.orders.model import IllegalTransition, OutOfStock

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
LATER = T0 + timedelta(days=2)


@dataclass
class Shop:
    """A tenant with RED (12.50) and BLUE (8.00); EAST (priority 1) holds 5 RED and 10 BLUE, WEST 5 RED."""

    db: Database
    tid: object
    customer: str

    def place(self, lines, **kw) -> dict:
        kw.setdefault("at", T0)
        return place_order(self.db, self.tid, CLI, customer_id=self.customer, lines=lines, **kw)

    def pay(self, oid, **kw) -> dict:
        return pay_order(self.db, self.tid, CLI, oid, at=T1, **kw)

    def ship(self, oid, **kw) -> dict:
        kw.setdefault("carrier", "DHL")
        kw.setdefault("tracking", "TRK-1")
        return ship_order(self.db, self.tid, CLI, oid, at=T1, **kw)

    def deliver(self, oid, **kw) -> dict:
        return deliver_order(self.db, self.tid, CLI, oid, at=T1, **kw)

    def cancel(self, oid, **kw) -> dict:
        return cancel_order(self.db, self.tid, CLI, oid, at=T1, **kw)

    def return_(self, oid, items, warehouse="EAST", **kw) -> dict:
        return return_items(self.db, self.tid, CLI, oid, items=items, warehouse=warehouse, at=T1, **kw)

    def expire(self, oid, **kw) -> dict:
        kw.setdefault("now", LATER)
        return expire_order(self.db, self.tid, CLI, oid, **kw)


@pytest.fixture
def shop(db, tenant) -> Shop:
    tid = tenant.id
    catalog.add_warehouse(db, tid, CLI, code="EAST", name="East", priority=1)
    catalog.add_warehouse(db, tid, CLI, code="WEST", name="West", priority=2)
    catalog.add_product(db, tid, CLI, sku="RED", name="Red mug", price=1250)
    catalog.add_product(db, tid, CLI, sku="BLUE", name="Blue mug", price=800)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="EAST", quantity=5)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="WEST", quantity=5)
    inventory.receive(db, tid, CLI, sku="BLUE", warehouse="EAST", quantity=10)
    customer = customers.add_customer(db, tid, CLI, name="Ada Lovelace", email="ada@example.com")["id"]
    return Shop(db, tid, customer)


def order_row(owner, oid) -> dict:
    cur = owner.execute("SELECT * FROM orders WHERE id = %s", [oid])
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def stock(owner, tid) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (s, w): (o, r)
        for s, w, o, r in owner.execute(
            "SELECT sku, warehouse, on_hand, reserved FROM stock WHERE tenant_id = %s", [tid]
        )
    }


def allocations(owner, oid) -> list[tuple]:
    return owner.execute(
        "SELECT sku, warehouse, quantity, state FROM order_allocations WHERE order_id = %s ORDER BY 1, 2",
        [oid],
    ).fetchall()


def shipments(owner, oid) -> list[tuple]:
    return owner.execute(
        "SELECT warehouse, carrier, tracking FROM shipments WHERE order_id = %s ORDER BY warehouse", [oid]
    ).fetchall()


def order_events(owner, oid) -> list[str]:
    return [
        r[0]
        for r in owner.execute(
            "SELECT event_type FROM events WHERE stream_id = %s ORDER BY version", [f"order-{oid}"]
        )
    ]


def order_id_by_number(owner, tid, number: int) -> str:
    return str(
        owner.execute("SELECT id FROM orders WHERE tenant_id = %s AND number = %s", [tid, number]).fetchone()[
            0
        ]
    )


# -- legal paths -----------------------------------------------------------------------------------


def test_place_pay_ship_deliver_return_in_two_parts_ends_refunded(db, owner, shop):
    tenants.change_settings(db, shop.tid, CLI, tax_rate_bp=1000)
    placed = shop.place([("RED", 2), ("BLUE", 3)], shipping_fee=500, channel="phone")
    oid = placed["order_id"]
    assert placed["status"] == "reserved"
    assert placed["total"] == 2 * 1250 + 3 * 800 + 490 + 500
    row = order_row(owner, oid)
    assert (row["status"], row["subtotal"], row["tax"], row["shipping_fee"], row["total"]) == (
        "reserved",
        4900,
        490,
        500,
        5890,
    )
    assert row["channel"] == "phone" and row["reserved_until"] == T0 + timedelta(minutes=30)
    assert stock(owner, shop.tid)[("RED", "EAST")] == (5, 2)
    assert stock(owner, shop.tid)[("BLUE", "EAST")] == (10, 3)

    assert shop.pay(oid)["status"] == "paid"
    row = order_row(owner, oid)
    assert (row["status"], row["paid_amount"], row["paid_at"], row["reserved_until"]) == (
        "paid",
        5890,
        T1,
        None,
    )

    assert shop.ship(oid, carrier="UPS", tracking="1Z999")["status"] == "shipped"
    assert shipments(owner, oid) == [("EAST", "UPS", "1Z999")]
    assert stock(owner, shop.tid)[("RED", "EAST")] == (3, 0)
    assert stock(owner, shop.tid)[("BLUE", "EAST")] == (7, 0)
    assert {a[3] for a in allocations(owner, oid)} == {"shipped"}

    assert shop.deliver(oid)["status"] == "delivered"
    assert order_row(owner, oid)["delivered_at"] == T1

    first = shop.return_(oid, {1: 1}, warehouse="WEST")
    assert first["status"] == "partially_refunded"
    assert stock(owner, shop.tid)[("RED", "WEST")] == (6, 0), "a return restocks the chosen warehouse"
    assert order_row(owner, oid)["refunded_amount"] == 1250 + 125

    rest = shop.return_(oid, {1: 1, 2: 3}, warehouse="EAST")
    assert rest["status"] == "refunded"
    row = order_row(owner, oid)
    assert row["status"] == "refunded"
    assert row["refunded_amount"] == row["subtotal"] + row["tax"]
    assert row["closed_at"] is not None
    assert stock(owner, shop.tid)[("RED", "EAST")] == (4, 0)
    assert stock(owner, shop.tid)[("BLUE", "EAST")] == (10, 0)
    returned = owner.execute(
        "SELECT line_no, returned_quantity FROM order_lines WHERE order_id = %s ORDER BY 1", [oid]
    ).fetchall()
    assert returned == [(1, 2), (2, 3)]
    assert order_events(owner, oid) == [
        "OrderPlaced",
        "OrderReserved",
        "OrderPaid",
        "OrderShipped",
        "OrderDelivered",
        "ReturnReceived",
        "RefundIssued",
        "ReturnReceived",
        "RefundIssued",
    ]


def test_returning_everything_in_parts_refunds_as_much_as_returning_it_at_once(db, owner, shop):
    """Tax is refunded pro rata per return; the parts of a full return must add up to the whole,
    not lose a minor unit to rounding on every partial return."""
    tenants.change_settings(db, shop.tid, CLI, tax_rate_bp=1000)
    catalog.add_product(db, shop.tid, CLI, sku="ODD", name="Odd price", price=333)
    inventory.receive(db, shop.tid, CLI, sku="ODD", warehouse="EAST", quantity=6)
    whole, parts = (shop.place([("ODD", 3)])["order_id"] for _ in range(2))
    for oid in (whole, parts):
        shop.pay(oid)
        shop.ship(oid)
        shop.deliver(oid)
    shop.return_(whole, {1: 3})
    for _ in range(3):
        shop.return_(parts, {1: 1})
    at_once, in_parts = order_row(owner, whole), order_row(owner, parts)
    assert at_once["status"] == in_parts["status"] == "refunded"
    assert at_once["refunded_amount"] == at_once["subtotal"] + at_once["tax"] == 999 + 100
    assert in_parts["refunded_amount"] == at_once["refunded_amount"], (
        f"three single-unit returns refunded {in_parts['refunded_amount']}, one return of all three "
        f"refunded {at_once['refunded_amount']}"
    )


def test_cancel_before_payment_releases_every_reservation_without_refund(owner, shop):
    oid = shop.place([("RED", 8), ("BLUE", 2)])["order_id"]  # RED splits: EAST 5 + WEST 3
    assert stock(owner, shop.tid)[("RED", "WEST")] == (5, 3)
    result = shop.cancel(oid, reason="changed my mind")
    assert result["status"] == "cancelled" and result["events"] == ["OrderCancelled"]
    row = order_row(owner, oid)
    assert (row["status"], row["paid_amount"], row["refunded_amount"]) == ("cancelled", 0, 0)
    assert row["closed_at"] == T1
    assert stock(owner, shop.tid) == {
        ("RED", "EAST"): (5, 0),
        ("RED", "WEST"): (5, 0),
        ("BLUE", "EAST"): (10, 0),
    }
    assert {a[3] for a in allocations(owner, oid)} == {"released"}


def test_cancel_after_payment_releases_and_refunds_what_was_paid(owner, shop):
    placed = shop.place([("RED", 6)], shipping_fee=700)
    oid = placed["order_id"]
    shop.pay(oid)
    result = shop.cancel(oid)
    assert result["status"] == "cancelled"
    assert result["events"] == ["OrderCancelled", "RefundIssued"]
    row = order_row(owner, oid)
    assert row["paid_amount"] == placed["total"] == 6 * 1250 + 700
    assert row["refunded_amount"] == row["paid_amount"], "a cancelled paid order refunds all of it"
    assert stock(owner, shop.tid)[("RED", "EAST")] == (5, 0)
    assert stock(owner, shop.tid)[("RED", "WEST")] == (5, 0)


def test_ship_per_warehouse_partially_shipped_then_shipped(owner, shop):
    oid = shop.place([("RED", 8)])["order_id"]
    assert sorted(a[:3] for a in allocations(owner, oid)) == [("RED", "EAST", 5), ("RED", "WEST", 3)]
    shop.pay(oid)

    first = shop.ship(oid, warehouse="WEST", carrier="DPD", tracking="W-1")
    assert first["status"] == "partially_shipped"
    assert order_row(owner, oid)["status"] == "partially_shipped"
    assert shipments(owner, oid) == [("WEST", "DPD", "W-1")]
    assert stock(owner, shop.tid)[("RED", "WEST")] == (2, 0)
    assert stock(owner, shop.tid)[("RED", "EAST")] == (5, 5)
    with pytest.raises(ValidationError, match="nothing to ship from WEST"):
        shop.ship(oid, warehouse="WEST")

    second = shop.ship(oid, warehouse="east", carrier="UPS", tracking="E-1")
    assert second["status"] == "shipped"
    assert shipments(owner, oid) == [("EAST", "UPS", "E-1"), ("WEST", "DPD", "W-1")]
    assert stock(owner, shop.tid)[("RED", "EAST")] == (0, 0)
    assert {a[3] for a in allocations(owner, oid)} == {"shipped"}
    assert shop.deliver(oid)["status"] == "delivered"


def test_ship_without_warehouse_ships_every_warehouse_with_one_shipment_each(owner, shop):
    oid = shop.place([("RED", 7), ("BLUE", 1)])["order_id"]
    shop.pay(oid)
    result = shop.ship(oid, carrier="DHL", tracking="ALL-1")
    assert result["status"] == "shipped"
    assert result["events"] == ["OrderShipped", "OrderShipped"]
    assert shipments(owner, oid) == [("EAST", "DHL", "ALL-1"), ("WEST", "DHL", "ALL-1")]
    assert stock(owner, shop.tid) == {
        ("RED", "EAST"): (0, 0),
        ("RED", "WEST"): (3, 0),
        ("BLUE", "EAST"): (9, 0),
    }


def test_expire_reservations_releases_unpaid_orders_once_due_and_never_paid_ones(db, owner, shop):
    tenants.change_settings(db, shop.tid, CLI, reservation_minutes=15)
    due = shop.place([("RED", 2)])["order_id"]
    paid = shop.place([("RED", 2)])["order_id"]
    shop.pay(paid)
    later = shop.place([("BLUE", 4)], at=T0 + timedelta(minutes=10))["order_id"]
    cancelled = shop.place([("BLUE", 1)])["order_id"]
    shop.cancel(cancelled)

    before = snapshot(owner, shop.tid)
    assert expire_reservations(db, shop.tid, SYSTEM, now=T0 + timedelta(minutes=14, seconds=59)) == []
    assert snapshot(owner, shop.tid) == before, "nothing is due yet: nothing written"
    with pytest.raises(ValidationError, match="holds until"):
        shop.expire(due, now=T0 + timedelta(minutes=14))
    assert snapshot(owner, shop.tid) == before

    expired = expire_reservations(db, shop.tid, SYSTEM, now=T0 + timedelta(minutes=15))
    assert [e["order_id"] for e in expired] == [due]
    assert [e["status"] for e in expired] == ["expired"]
    statuses = {oid: order_row(owner, oid)["status"] for oid in (due, paid, later, cancelled)}
    assert statuses == {due: "expired", paid: "paid", later: "reserved", cancelled: "cancelled"}
    assert stock(owner, shop.tid)[("RED", "EAST")] == (5, 2), "the paid order keeps its 2 units"
    assert {a[3] for a in allocations(owner, due)} == {"released"}
    assert order_events(owner, due)[-1] == "ReservationExpired"

    expired = expire_reservations(db, shop.tid, SYSTEM, now=LATER)
    assert [e["order_id"] for e in expired] == [later]
    assert order_row(owner, paid)["status"] == "paid"
    assert stock(owner, shop.tid)[("BLUE", "EAST")] == (10, 0)
    assert expire_reservations(db, shop.tid, SYSTEM, now=LATER) == []
    with pytest.raises(IllegalTransition, match="is expired"):
        shop.pay(due)


# -- every transition, legal and illegal ------------------------------------------------------------


def reach(owner, shop: Shop, status: str) -> str:
    """An order in `status`, by the legal path there."""
    if status == "rejected":
        with pytest.raises(OutOfStock) as caught:
            shop.place([("RED", 11)])
        return order_id_by_number(owner, shop.tid, caught.value.number)
    if status == "partially_shipped":
        oid = shop.place([("RED", 8)])["order_id"]
        shop.pay(oid)
        shop.ship(oid, warehouse="WEST")
        return oid
    oid = shop.place([("RED", 2)])["order_id"]
    steps = {
        "reserved": [],
        "cancelled": [shop.cancel],
        "expired": [shop.expire],
        "paid": [shop.pay],
        "shipped": [shop.pay, shop.ship],
        "delivered": [shop.pay, shop.ship, shop.deliver],
        "partially_refunded": [shop.pay, shop.ship, shop.deliver, lambda o: shop.return_(o, {1: 1})],
        "refunded": [shop.pay, shop.ship, shop.deliver, lambda o: shop.return_(o, {1: 2})],
    }[status]
    for step in steps:
        step(oid)
    assert order_row(owner, oid)["status"] == status
    return oid


ACTIONS = {
    "pay": lambda s, oid: s.pay(oid),
    "ship": lambda s, oid: s.ship(oid),
    "deliver": lambda s, oid: s.deliver(oid),
    "cancel": lambda s, oid: s.cancel(oid),
    "return": lambda s, oid: s.return_(oid, {1: 1}),
    # A fresh key: expire_order's default key is per order, so a second call would be a replay.
    "expire": lambda s, oid: s.expire(oid, key=f"expire-again-{uuid.uuid4()}"),
}
# What each state allows, and where it leads (orders reached by reach(): line 1 has 2 units).
ALLOWED = {
    "reserved": {"pay": "paid", "cancel": "cancelled", "expire": "expired"},
    "rejected": {},
    "paid": {"ship": "shipped", "cancel": "cancelled"},
    "partially_shipped": {"ship": "shipped"},
    "shipped": {"deliver": "delivered"},
    "delivered": {"return": "partially_refunded"},
    "partially_refunded": {"return": "refunded"},
    "refunded": {},
    "cancelled": {},
    "expired": {},
}
ILLEGAL = [(s, a) for s in ALLOWED for a in ACTIONS if a not in ALLOWED[s]]
LEGAL = [(s, a) for s in ALLOWED for a in ALLOWED[s]]


@pytest.mark.parametrize(("status", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_illegal_transition_is_refused_naming_the_current_state(owner, shop, status, action):
    oid = reach(owner, shop, status)
    number = order_row(owner, oid)["number"]
    before = snapshot(owner, shop.tid)
    with pytest.raises(IllegalTransition) as caught:
        ACTIONS[action](shop, oid)
    assert caught.value.status == status
    message = str(caught.value)
    assert f"is {status}" in message and f"#{number}" in message, message
    assert snapshot(owner, shop.tid) == before
    assert order_row(owner, oid)["status"] == status


@pytest.mark.parametrize(("status", "action"), LEGAL, ids=[f"{s}-{a}" for s, a in LEGAL])
def test_legal_transition_is_taken(owner, shop, status, action):
    oid = reach(owner, shop, status)
    result = ACTIONS[action](shop, oid)
    assert result["status"] == ALLOWED[status][action]
    assert order_row(owner, oid)["status"] == ALLOWED[status][action]


def test_illegal_transition_by_order_number_names_the_state_too(owner, shop):
    oid = reach(owner, shop, "cancelled")
    number = order_row(owner, oid)["number"]
    with pytest.raises(IllegalTransition, match=f"#{number} is cancelled"):
        shop.pay(f"#{number}")
    with pytest.raises(IllegalTransition, match=f"#{number} is cancelled"):
        shop.ship(str(number))


# -- idempotency ------------------------------------------------------------------------------------


def _place_rejected(s: Shop, oid, key):
    with pytest.raises(OutOfStock) as caught:
        s.place([("RED", 50)], key=key)
    return {"rejected": caught.value.number, "short": caught.value.short}


# name -> (state the order must be in, or None; the command run with the key)
COMMANDS = {
    "receive": (
        None,
        lambda s, o, k: inventory.receive(s.db, s.tid, CLI, sku="RED", warehouse="WEST", quantity=3, key=k),
    ),
    "adjust": (
        None,
        lambda s, o, k: inventory.adjust(
            s.db, s.tid, CLI, sku="RED", warehouse="EAST", change=-1, reason="broken", key=k
        ),
    ),
    "transfer": (
        None,
        lambda s, o, k: inventory.transfer(
            s.db, s.tid, CLI, sku="BLUE", source="EAST", destination="WEST", quantity=2, key=k
        ),
    ),
    "set_reorder_point": (
        None,
        lambda s, o, k: inventory.set_reorder_point(
            s.db, s.tid, CLI, sku="RED", warehouse="EAST", reorder_point=2, key=k
        ),
    ),
    "add_product": (
        None,
        lambda s, o, k: catalog.add_product(s.db, s.tid, CLI, sku="NEW", name="New", price=5, key=k),
    ),
    "add_warehouse": (
        None,
        lambda s, o, k: catalog.add_warehouse(s.db, s.tid, CLI, code="NORTH", name="North", key=k),
    ),
    "add_customer": (None, lambda s, o, k: customers.add_customer(s.db, s.tid, CLI, name="Grace", key=k)),
    "change_settings": (
        None,
        lambda s, o, k: tenants.change_settings(s.db, s.tid, CLI, tax_rate_bp=700, key=k),
    ),
    "place": (None, lambda s, o, k: s.place([("RED", 1), ("BLUE", 1)], key=k)),
    "place_rejected": (None, _place_rejected),
    "pay": ("reserved", lambda s, o, k: s.pay(o, key=k)),
    "ship": ("paid", lambda s, o, k: s.ship(o, key=k)),
    "deliver": ("shipped", lambda s, o, k: s.deliver(o, key=k)),
    "cancel": ("paid", lambda s, o, k: s.cancel(o, key=k)),
    "return": ("delivered", lambda s, o, k: s.return_(o, {1: 1}, key=k)),
    "expire": ("reserved", lambda s, o, k: s.expire(o, key=k)),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_repeating_a_command_with_its_key_returns_the_first_result_and_writes_nothing(owner, shop, name):
    state, run = COMMANDS[name]
    oid = reach(owner, shop, state) if state else None
    start = snapshot(owner, shop.tid)
    first = run(shop, oid, f"key-{name}")
    after_first = snapshot(owner, shop.tid)
    assert after_first != start, "the first run must have written something"
    assert after_first["command_log"][0] == start["command_log"][0] + 1
    for _ in range(2):
        assert run(shop, oid, f"key-{name}") == first
        assert snapshot(owner, shop.tid) == after_first


def test_a_pay_key_repeated_after_the_order_shipped_returns_the_payment(owner, shop):
    oid = reach(owner, shop, "reserved")
    paid = shop.pay(oid, key="pay-once")
    shop.ship(oid)
    shop.deliver(oid)
    before = snapshot(owner, shop.tid)
    assert shop.pay(oid, key="pay-once") == paid
    assert snapshot(owner, shop.tid) == before
    row = order_row(owner, oid)
    assert (row["status"], row["paid_amount"]) == ("delivered", row["total"])
    # Without the key the same payment is refused: the key, not luck, made the repeat safe.
    with pytest.raises(IllegalTransition, match="is delivered"):
        shop.pay(oid)


def test_repeats_that_would_now_be_illegal_return_the_first_result(db, owner, shop):
    oid = reach(owner, shop, "reserved")
    cancelled = shop.cancel(oid, key="cancel-1")
    placed = shop.place([("RED", 10)], key="take-all")  # every RED unit: a new order would be rejected
    received = inventory.receive(db, shop.tid, CLI, sku="BLUE", warehouse="EAST", quantity=1, key="rcv-1")
    catalog.set_product_active(db, shop.tid, CLI, "BLUE", False)
    before = snapshot(owner, shop.tid)

    assert shop.cancel(oid, key="cancel-1") == cancelled
    assert shop.place([("RED", 10)], key="take-all") == placed
    again = inventory.receive(db, shop.tid, CLI, sku="BLUE", warehouse="EAST", quantity=1, key="rcv-1")
    assert again == received and again["on_hand"] == 11
    assert snapshot(owner, shop.tid) == before
    with pytest.raises(ValidationError, match="inactive"):  # the same receive under a new key
        inventory.receive(db, shop.tid, CLI, sku="BLUE", warehouse="EAST", quantity=1, key="rcv-2")


def test_a_rejected_order_repeated_after_restocking_stays_the_same_rejection(db, owner, shop):
    with pytest.raises(OutOfStock) as first:
        shop.place([("RED", 12)], key="too-many")
    inventory.receive(db, shop.tid, CLI, sku="RED", warehouse="EAST", quantity=100)
    before = snapshot(owner, shop.tid)
    with pytest.raises(OutOfStock) as again:
        shop.place([("RED", 12)], key="too-many")
    assert (again.value.number, again.value.short) == (first.value.number, first.value.short)
    assert snapshot(owner, shop.tid) == before


KEY_REUSE = [
    # (first command, second command): a key names one command; any other use of it is a Conflict.
    ("pay", "cancel"),
    ("place", "add_customer"),
    ("receive", "adjust"),
    ("receive", "transfer"),
    ("ship", "deliver"),
    ("add_customer", "change_settings"),
]


@pytest.mark.parametrize(("first", "second"), KEY_REUSE, ids=[f"{a}-then-{b}" for a, b in KEY_REUSE])
def test_a_key_reused_for_a_different_command_is_a_conflict(owner, shop, first, second):
    # One order able to take either command: paid for pay/cancel... set up per pair.
    state_first, run_first = COMMANDS[first]
    state_second, run_second = COMMANDS[second]
    oid = reach(owner, shop, state_first) if state_first else None
    run_first(shop, oid, "shared-key")
    if state_second and state_second != order_row(owner, oid)["status"]:
        oid = reach(owner, shop, state_second)
    before = snapshot(owner, shop.tid)
    with pytest.raises(Conflict, match="idempotency key"):
        run_second(shop, oid, "shared-key")
    assert snapshot(owner, shop.tid) == before


def test_the_same_key_sent_concurrently_places_one_order(db, owner, shop):
    barrier = threading.Barrier(8)

    def send(_):
        barrier.wait(timeout=30)
        return shop.place([("RED", 3)], key="double-click")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(8)))
    assert all(r == results[0] for r in results)
    assert owner.execute("SELECT count(*) FROM orders WHERE tenant_id = %s", [shop.tid]).fetchone()[0] == 1
    assert (
        owner.execute(
            "SELECT count(*) FROM events WHERE tenant_id = %s AND event_type = 'OrderReserved'", [shop.tid]
        ).fetchone()[0]
        == 1
    )
    assert stock(owner, shop.tid)[("RED", "EAST")] == (5, 3)


def test_a_failed_command_leaves_its_pooled_connection_usable(owner, shop):
    """Commands run in pipeline mode on pooled connections; a command that fails (here: a repeated
    key, a rejected order, an unknown order) must not leave its connection unable to run the next one."""
    single = Database(app_url(), application_name="oms-test-single", max_size=1)  # every call, one connection
    try:
        s = Shop(single, shop.tid, shop.customer)
        failures = [
            lambda: inventory.receive(
                single, s.tid, CLI, sku="BLUE", warehouse="WEST", quantity=1, key="twice"
            ),
            lambda: inventory.receive(
                single, s.tid, CLI, sku="BLUE", warehouse="WEST", quantity=1, key="twice"
            ),
            lambda: s.place([("RED", 99)]),
            lambda: s.pay(str(uuid.uuid4())),
            lambda: inventory.adjust(single, s.tid, CLI, sku="RED", warehouse="EAST", change=-99, reason="x"),
        ]
        for attempt in failures:
            try:
                attempt()
            except Exception as exc:
                if "prepared statement" in str(exc):
                    raise
        for n in range(6):
            row = inventory.receive(single, s.tid, CLI, sku="BLUE", warehouse="EAST", quantity=1)
            assert row["on_hand"] == 11 + n
            oid = s.place([("BLUE", 1)])["order_id"]
            assert s.pay(oid)["status"] == "paid"
    finally:
        single.close()


def test_keys_are_per_tenant(db, owner, tenant, other_tenant):
    mine = customers.add_customer(db, tenant.id, CLI, name="Mine", key="same-key")
    theirs = customers.add_customer(db, other_tenant.id, CLI, name="Theirs", key="same-key")
    assert mine["id"] != theirs["id"] and (mine["name"], theirs["name"]) == ("Mine", "Theirs")
    for t, name in ((tenant, "Mine"), (other_tenant, "Theirs")):
        names = owner.execute("SELECT name FROM customers WHERE tenant_id = %s", [t.id]).fetchall()
        assert names == [(name,)]


# -- permissions ------------------------------------------------------------------------------------

ANALYST = Actor("ann", "analyst")
CLERK = Actor("cal", "clerk")
MANAGER = Actor("mo", "manager")

DENIED = [
    (
        "analyst",
        "place",
        lambda s, o: place_order(s.db, s.tid, ANALYST, customer_id=s.customer, lines=[("RED", 1)]),
    ),
    ("analyst", "pay", lambda s, o: pay_order(s.db, s.tid, ANALYST, o)),
    ("analyst", "ship", lambda s, o: ship_order(s.db, s.tid, ANALYST, o, carrier="DHL", tracking="X")),
    ("analyst", "cancel", lambda s, o: cancel_order(s.db, s.tid, ANALYST, o)),
    (
        "analyst",
        "receive",
        lambda s, o: inventory.receive(s.db, s.tid, ANALYST, sku="RED", warehouse="EAST", quantity=1),
    ),
    ("analyst", "add_customer", lambda s, o: customers.add_customer(s.db, s.tid, ANALYST, name="X")),
    ("clerk", "change_settings", lambda s, o: tenants.change_settings(s.db, s.tid, CLERK, tax_rate_bp=1)),
    (
        "clerk",
        "add_warehouse",
        lambda s, o: catalog.add_warehouse(s.db, s.tid, CLERK, code="SOUTH", name="South"),
    ),
    (
        "clerk",
        "deactivate_warehouse",
        lambda s, o: catalog.set_warehouse_active(s.db, s.tid, CLERK, "EAST", False),
    ),
    (
        "clerk",
        "add_product",
        lambda s, o: catalog.add_product(s.db, s.tid, CLERK, sku="X1", name="X", price=1),
    ),
    ("clerk", "expire", lambda s, o: expire_order(s.db, s.tid, CLERK, o, now=LATER)),
    (
        "manager",
        "add_warehouse",
        lambda s, o: catalog.add_warehouse(s.db, s.tid, MANAGER, code="SOUTH", name="South"),
    ),
    (
        "manager",
        "change_settings",
        lambda s, o: tenants.change_settings(s.db, s.tid, MANAGER, reservation_minutes=5),
    ),
]


@pytest.mark.parametrize(("role", "command", "run"), DENIED, ids=[f"{r}-{c}" for r, c, _ in DENIED])
def test_a_role_without_permission_is_refused_in_core_and_nothing_is_written(owner, shop, role, command, run):
    oid = reach(owner, shop, "paid" if command == "ship" else "reserved")
    before = snapshot(owner, shop.tid)
    with pytest.raises(PermissionDenied) as caught:
        run(shop, oid)
    assert f"a {role} may not" in str(caught.value)
    assert snapshot(owner, shop.tid) == before


def test_a_clerk_runs_the_daily_order_work(db, owner, shop):
    oid = place_order(db, shop.tid, CLERK, customer_id=shop.customer, lines=[("RED", 2)], at=T0)["order_id"]
    pay_order(db, shop.tid, CLERK, oid, at=T1)
    ship_order(db, shop.tid, CLERK, oid, carrier="DHL", tracking="C-1", at=T1)
    deliver_order(db, shop.tid, CLERK, oid, at=T1)
    assert (
        return_items(db, shop.tid, CLERK, oid, items={1: 2}, warehouse="EAST", at=T1)["status"] == "refunded"
    )
    inventory.receive(db, shop.tid, CLERK, sku="BLUE", warehouse="WEST", quantity=1)
    assert catalog.add_product(db, shop.tid, MANAGER, sku="MGR", name="Manager's", price=1)["sku"] == "MGR"
    assert [r["sku"] for r in inventory.stock_levels(db, shop.tid, ANALYST, sku="BLUE")] == ["BLUE", "BLUE"]
    actors = {
        r[0]
        for r in owner.execute("SELECT metadata->>'actor' FROM events WHERE stream_id = %s", [f"order-{oid}"])
    }
    assert actors == {"cal"}, "events name who acted"
