"""Invariant 8: every command refuses bad input with core.errors.ValidationError or NotFound, one clear
sentence, and writes nothing. Another tenant's ids look exactly like ids that never existed.

"Writes nothing" compares the content of every table the commands touch (all tenants), as the owner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from conftest import snapshot

from core import catalog, customers, inventory, tenants
from core.commands import CLI, SYSTEM
from core.db import Database
from core.errors import NotFound, OmsError, ValidationError
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
from core.orders.queries import order_detail

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAIVE = datetime(2025, 3, 1, 12, 0)


@dataclass
class Shop:
    db: Database
    tid: uuid.UUID
    customer: str
    reserved: str  # order ids in three states, all of RED from EAST
    paid: str
    delivered: str
    reserved_total: int
    their_tid: uuid.UUID
    their_customer: str
    their_order: str
    their_number: int


@pytest.fixture
def shop(db) -> Shop:
    """Mine: EAST, WEST, SHUT (inactive); RED (active), OLD (inactive); RED 10 in EAST, OLD 3 in EAST;
    orders #1001 reserved (2 RED), #1002 delivered (1 RED), #1003 paid (1 RED).
    Theirs: product THEIRS, warehouse FAR, a customer and five orders (#1001-#1005)."""
    tid = tenants.create_tenant(db, f"mine {uuid.uuid4().hex[:8]}").id
    for code, priority in (("EAST", 1), ("WEST", 2), ("SHUT", 3)):
        catalog.add_warehouse(db, tid, CLI, code=code, name=f"Warehouse {code}", priority=priority)
    catalog.add_product(db, tid, CLI, sku="RED", name="Red mug", price=1250)
    catalog.add_product(db, tid, CLI, sku="OLD", name="Old mug", price=900)
    inventory.receive(db, tid, CLI, sku="RED", warehouse="EAST", quantity=10)
    inventory.receive(db, tid, CLI, sku="OLD", warehouse="EAST", quantity=3)
    catalog.set_product_active(db, tid, CLI, "OLD", False)
    catalog.set_warehouse_active(db, tid, CLI, "SHUT", False)
    customer = customers.add_customer(db, tid, CLI, name="Ada")["id"]

    def order(qty: int) -> dict:
        return place_order(db, tid, CLI, customer_id=customer, lines=[("RED", qty)], at=T0)

    reserved = order(2)
    delivered = order(1)["order_id"]
    pay_order(db, tid, CLI, delivered, at=T0)
    ship_order(db, tid, CLI, delivered, carrier="DHL", tracking="T1", at=T0)
    deliver_order(db, tid, CLI, delivered, at=T0)
    paid = order(1)["order_id"]
    pay_order(db, tid, CLI, paid, at=T0)

    their = tenants.create_tenant(db, f"theirs {uuid.uuid4().hex[:8]}").id
    catalog.add_warehouse(db, their, CLI, code="FAR", name="Far away")
    catalog.add_product(db, their, CLI, sku="THEIRS", name="Their mug", price=100)
    inventory.receive(db, their, CLI, sku="THEIRS", warehouse="FAR", quantity=50)
    their_customer = customers.add_customer(db, their, CLI, name="Bob")["id"]
    theirs = [
        place_order(db, their, CLI, customer_id=their_customer, lines=[("THEIRS", 1)], at=T0)
        for _ in range(5)
    ]
    return Shop(
        db,
        tid,
        customer,
        reserved["order_id"],
        paid,
        delivered,
        reserved["total"],
        their,
        their_customer,
        theirs[-1]["order_id"],
        theirs[-1]["number"],
    )


def refused(owner, shop, run, errors, match: str | None) -> str:
    """Run a bad command: it must raise one of `errors` matching `match`, and write nothing."""
    before = snapshot(owner, shop.tid, shop.their_tid)
    with pytest.raises(errors, match=match) as caught:
        run()
    assert snapshot(owner, shop.tid, shop.their_tid) == before, "a refused command wrote something"
    message = str(caught.value)
    assert 0 < len(message) <= 300, f"not one clear sentence: {message[:400]!r}"
    for leak in ("Traceback", "psycopg", "pydantic", "SELECT", "INSERT", "UPDATE"):
        assert leak not in message, f"internal detail in the message: {message!r}"
    return message


# -- cases: (id, command on the shop, expected error types, regex the message must match) -----------

V = ValidationError
NF = NotFound
EITHER = (ValidationError, NotFound)


def rcv(**kw):
    return lambda s: inventory.receive(
        s.db, s.tid, CLI, **{"sku": "RED", "warehouse": "EAST", "quantity": 1, **kw}
    )


def adj(**kw):
    base = {"sku": "RED", "warehouse": "EAST", "change": 1, "reason": "count"}
    return lambda s: inventory.adjust(s.db, s.tid, CLI, **{**base, **kw})


def xfer(**kw):
    base = {"sku": "RED", "source": "EAST", "destination": "WEST", "quantity": 1}
    return lambda s: inventory.transfer(s.db, s.tid, CLI, **{**base, **kw})


def reorder(**kw):
    base = {"sku": "RED", "warehouse": "EAST", "reorder_point": 1}
    return lambda s: inventory.set_reorder_point(s.db, s.tid, CLI, **{**base, **kw})


def place(lines=(("RED", 1),), **kw):
    def run(s):
        args = {"customer_id": s.customer, "lines": lines, "at": T0, **kw}
        return place_order(s.db, s.tid, CLI, **args)

    return run


def pay(order=None, **kw):
    return lambda s: pay_order(s.db, s.tid, CLI, s.reserved if order is None else order, **{"at": T0, **kw})


def ship(**kw):
    base = {"carrier": "DHL", "tracking": "T2", "at": T0}
    return lambda s: ship_order(s.db, s.tid, CLI, s.paid, **{**base, **kw})


def cancel(**kw):
    return lambda s: cancel_order(s.db, s.tid, CLI, s.reserved, **{"at": T0, **kw})


def ret(items=None, **kw):
    base = {"items": {1: 1} if items is None else items, "warehouse": "EAST", "at": T0}
    return lambda s: return_items(s.db, s.tid, CLI, s.delivered, **{**base, **kw})


def product(**kw):
    return lambda s: catalog.add_product(
        s.db, s.tid, CLI, **{"sku": "NEW", "name": "New", "price": 100, **kw}
    )


def warehouse(**kw):
    return lambda s: catalog.add_warehouse(s.db, s.tid, CLI, **{"code": "NORTH", "name": "North", **kw})


def customer(**kw):
    return lambda s: customers.add_customer(s.db, s.tid, CLI, **{"name": "Grace", **kw})


def settings(**kw):
    return lambda s: tenants.change_settings(s.db, s.tid, CLI, **kw)


BAD_QUANTITIES = [0, -1, 10**9, 2.0, True, "3", None]

CASES: list[tuple[str, object, object, str]] = []
CASES += [(f"receive-quantity-{q!r}", rcv(quantity=q), V, "quantity") for q in BAD_QUANTITIES]
CASES += [(f"transfer-quantity-{q!r}", xfer(quantity=q), V, "quantity") for q in BAD_QUANTITIES]
CASES += [
    (f"adjust-change-{q!r}", adj(change=q), V, "change") for q in [0, -(10**9), 10**9, 2.0, True, "3", None]
]
CASES += [
    (f"reorder-{q!r}", reorder(reorder_point=q), V, "reorder_point") for q in [-1, 10**9, 2.0, True, "3"]
]
CASES += [(f"place-quantity-{q!r}", place(lines=[("RED", q)]), V, "quantity") for q in BAD_QUANTITIES]
CASES += [(f"return-quantity-{q!r}", ret(items={1: q}), V, "quantit") for q in [0, -1, 10**9, 2.0, True, "1"]]
CASES += [
    ("return-line-0", ret(items={0: 1}), V, "no line 0"),
    ("return-line-99", ret(items={99: 1}), V, "no line 99"),
    ("return-line-text", ret(items={"1": 1}), V, "whole numbers"),
    ("return-line-bool", ret(items={True: 1}), V, "whole numbers"),
    ("return-empty", ret(items={}), V, "at least one line"),
    ("return-not-a-dict", ret(items=[(1, 1)]), V, "at least one line"),
    ("return-more-than-delivered", ret(items={1: 2}), V, "1 unit\\(s\\) left to return, not 2"),
]
CASES += [
    (f"pay-amount-{a!r}", pay(amount=a), V, "amount|does not match")
    for a in [0, -5, 2.5, True, "100", 10**20]
]
CASES += [
    (
        "pay-amount-one-short",
        lambda s: pay_order(s.db, s.tid, CLI, s.reserved, amount=s.reserved_total - 1, at=T0),
        V,
        "does not match",
    ),
    (
        "pay-amount-one-over",
        lambda s: pay_order(s.db, s.tid, CLI, s.reserved, amount=s.reserved_total + 1, at=T0),
        V,
        "does not match",
    ),
]
CASES += [
    (f"shipping-fee-{f!r}", place(shipping_fee=f), V, "shipping_fee") for f in [-1, 2.5, True, 10**12, "5"]
]
CASES += [(f"price-{p!r}", product(price=p), V, "price") for p in [-1, 2.5, True, 10**12, "5", None]]
CASES += [(f"priority-{p!r}", warehouse(priority=p), V, "priority") for p in [-1, 2.5, True, 10**6, "1"]]
CASES += [
    ("strategy-unknown", settings(allocation_strategy="random"), V, "allocation_strategy"),
    ("strategy-empty", settings(allocation_strategy=""), V, "allocation_strategy"),
    ("settings-nothing", settings(), V, "nothing to change"),
    ("settings-unknown-only", settings(colour="red"), V, "nothing to change|colour"),
]
CASES += [
    (f"reservation-minutes-{m!r}", settings(reservation_minutes=m), V, "reservation_minutes")
    for m in [0, -1, True, 1.5, 10**6]
]
CASES += [(f"tax-{t!r}", settings(tax_rate_bp=t), V, "tax_rate_bp") for t in [-1, 10_001, True, 1.5, "5"]]

# Unknown, inactive and malformed references.
CASES += [
    ("receive-unknown-sku", rcv(sku="NOPE"), NF, "no product with SKU NOPE"),
    ("adjust-unknown-sku", adj(sku="NOPE"), NF, "no product with SKU NOPE"),
    ("transfer-unknown-sku", xfer(sku="NOPE"), NF, "no product with SKU NOPE"),
    ("reorder-unknown-sku", reorder(sku="NOPE"), NF, "no product with SKU NOPE"),
    ("place-unknown-sku", place(lines=[("RED", 1), ("NOPE", 1)]), V, "unknown SKU: NOPE"),
    (
        "deactivate-unknown-sku",
        lambda s: catalog.set_product_active(s.db, s.tid, CLI, "NOPE", False),
        NF,
        "NOPE",
    ),
    ("receive-unknown-warehouse", rcv(warehouse="NOWHERE"), NF, "no warehouse with code NOWHERE"),
    ("adjust-unknown-warehouse", adj(warehouse="NOWHERE"), NF, "no warehouse with code NOWHERE"),
    ("transfer-unknown-source", xfer(source="NOWHERE"), NF, "no warehouse with code NOWHERE"),
    ("transfer-unknown-destination", xfer(destination="NOWHERE"), NF, "no warehouse with code NOWHERE"),
    ("return-unknown-warehouse", ret(warehouse="NOWHERE"), V, "NOWHERE"),
    ("ship-unknown-warehouse", ship(warehouse="NOWHERE"), V, "nothing to ship from NOWHERE"),
    ("ship-unallocated-warehouse", ship(warehouse="WEST"), V, "nothing to ship from WEST"),
    ("receive-inactive-sku", rcv(sku="OLD"), V, "OLD is inactive"),
    ("transfer-inactive-sku", xfer(sku="OLD", quantity=1), V, "OLD is inactive"),
    ("place-inactive-sku", place(lines=[("RED", 1), ("OLD", 1)]), V, "inactive SKU: OLD"),
    ("receive-inactive-warehouse", rcv(warehouse="SHUT"), V, "SHUT is inactive"),
    ("transfer-inactive-destination", xfer(destination="SHUT"), V, "SHUT is inactive"),
    ("return-inactive-warehouse", ret(warehouse="SHUT"), V, "SHUT"),
    ("place-unknown-customer", place(customer_id=str(uuid.uuid4())), NF, "no active customer"),
    ("place-malformed-customer", place(customer_id="not-a-uuid"), V, "not a valid customer id"),
    ("place-empty-customer", place(customer_id=""), V, "not a valid customer id"),
    ("place-numeric-customer", place(customer_id=12345), V, "not a valid customer id"),
    ("place-none-customer", place(customer_id=None), V, "not a valid customer id"),
    ("pay-malformed-order", pay(order="not-an-order"), V, "not a valid order id"),
    ("pay-empty-order", pay(order=""), V, "not a valid order id"),
    ("pay-hash-only", pay(order="#"), V, "not a valid order id"),
    ("pay-hash-letters", pay(order="#12ab"), V, "not a valid order id"),
    ("pay-unknown-order-id", pay(order=str(uuid.uuid4())), NF, "no order"),
    ("pay-unknown-order-number", pay(order="#99999"), NF, "no order #99999"),
    ("pay-huge-order-number", pay(order="9" * 40), EITHER, "order"),
    (
        "tenant-malformed",
        lambda s: inventory.receive(s.db, "not-a-tenant", CLI, sku="RED", warehouse="EAST", quantity=1),
        V,
        "not a valid tenant id",
    ),
]

# Order shape.
CASES += [
    ("duplicate-lines", place(lines=[("RED", 1), ("RED", 2)]), V, "repeated: RED"),
    ("duplicate-lines-by-case", place(lines=[("red", 1), (" RED ", 1)]), V, "repeated: RED"),
    ("empty-order", place(lines=[]), V, "lines"),
    ("lines-none", place(lines=None), V, "lines"),
    ("line-none", place(lines=[None]), V, "lines"),
    ("line-one-element", place(lines=[("RED",)]), V, "lines|quantity"),
    ("lines-a-string", place(lines="RED"), V, "lines"),
    ("line-dict-without-quantity", place(lines=[{"sku": "RED"}]), V, "quantity"),
    ("line-bad-sku", place(lines=[("bad sku!", 1)]), V, "sku"),
    ("lines-101", place(lines=[(f"S{i}", 1) for i in range(101)]), V, "100"),
    ("channel-unknown", place(channel="fax"), V, "channel"),
]

# Stock rules.
CASES += [
    ("adjust-below-reserved", adj(change=-7), V, "6 available"),  # 9 on hand, 3 reserved
    ("adjust-below-zero-new-row", adj(warehouse="WEST", change=-1), V, "0 available"),
    ("transfer-reserved-units", xfer(quantity=7), V, "6 available"),
    ("transfer-from-a-warehouse-without-the-sku", xfer(source="WEST", destination="EAST"), V, "0 available"),
    ("transfer-same-warehouse", xfer(destination="EAST"), V, "two different warehouses"),
    (
        "transfer-same-warehouse-by-case",
        xfer(source=" east", destination="EAST "),
        V,
        "two different warehouses",
    ),
    ("add-duplicate-sku", product(sku="red"), V, "RED already exists"),
    ("add-duplicate-warehouse", warehouse(code="east"), V, "EAST already exists"),
    ("bad-sku", product(sku="bad sku!"), V, "sku"),
    ("empty-sku", product(sku=""), V, "sku"),
    ("long-sku", product(sku="A" * 10_000), V, "sku"),
    ("bad-warehouse-code", warehouse(code="no/slash"), V, "code"),
    ("bad-email", customer(email="not-an-email"), V, "email"),
    ("bad-phone", customer(phone="call me maybe"), V, "phone"),
]

# Naive datetimes: business time must carry a zone.
CASES += [
    ("naive-place", place(at=NAIVE), V, "time zone"),
    ("naive-pay", pay(at=NAIVE), V, "time zone"),
    ("naive-ship", ship(at=NAIVE), V, "time zone"),
    ("naive-deliver", lambda s: deliver_order(s.db, s.tid, CLI, s.paid, at=NAIVE), V, "time zone"),
    ("naive-cancel", cancel(at=NAIVE), V, "time zone"),
    ("naive-return", ret(at=NAIVE), V, "time zone"),
    ("naive-expire", lambda s: expire_order(s.db, s.tid, SYSTEM, s.reserved, now=NAIVE), V, "time zone"),
    ("naive-expire-sweep", lambda s: expire_reservations(s.db, s.tid, SYSTEM, now=NAIVE), V, "time zone"),
]

# Idempotency keys.
CASES += [
    (f"key-{name}", rcv(key=k), V, "idempotency key")
    for name, k in [
        ("empty", ""),
        ("201-chars", "k" * 201),
        ("newline", "a\nb"),
        ("nul", "a\x00b"),
        ("int", 42),
    ]
]


@pytest.mark.parametrize(("run", "errors", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_written(owner, shop, run, errors, match):
    refused(owner, shop, lambda: run(shop), errors, match)


# -- hostile strings --------------------------------------------------------------------------------

HOSTILE = {
    "10kB": "x" * 10_000,
    "nul": "a\x00b",
    "escape": "a\x1b[31mred",
    "newline": "two\nlines",
    "carriage-return": "a\rb",
    "tab": "a\tb",
    "bell": "a\x07b",
    "rtl-override": "abc\u202edcba",
    "zero-width-space": "a\u200bb",
}

# Every free-text field a command takes: (id, field name in the message, command taking the text).
TEXT_FIELDS = [
    ("product-name", "name", lambda s, v: catalog.add_product(s.db, s.tid, CLI, sku="NEW", name=v, price=1)),
    (
        "product-category",
        "category",
        lambda s, v: catalog.add_product(s.db, s.tid, CLI, sku="NEW", name="ok", category=v, price=1),
    ),
    ("warehouse-name", "name", lambda s, v: catalog.add_warehouse(s.db, s.tid, CLI, code="NORTH", name=v)),
    (
        "warehouse-region",
        "region",
        lambda s, v: catalog.add_warehouse(s.db, s.tid, CLI, code="NORTH", name="North", region=v),
    ),
    ("customer-name", "name", lambda s, v: customers.add_customer(s.db, s.tid, CLI, name=v)),
    (
        "customer-email",
        "email",
        lambda s, v: customers.add_customer(s.db, s.tid, CLI, name="G", email=f"g{v}@ex.com"),
    ),
    (
        "customer-phone",
        "phone",
        lambda s, v: customers.add_customer(s.db, s.tid, CLI, name="G", phone=f"+1 555{v}"),
    ),
    ("adjust-reason", "reason", lambda s, v: adj(reason=v)(s)),
    ("cancel-reason", "reason", lambda s, v: cancel(reason=v)(s)),
    ("ship-carrier", "carrier", lambda s, v: ship(carrier=v)(s)),
    ("ship-tracking", "tracking", lambda s, v: ship(tracking=v)(s)),
    ("pay-method", "method", lambda s, v: pay(method=v)(s)),
    ("pay-reference", "reference", lambda s, v: pay(reference=v)(s)),
    ("idempotency-key", "idempotency key", lambda s, v: rcv(key=v)(s)),
    ("order-reference", "order", lambda s, v: pay(order=v)(s)),
]


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize(("field", "run"), [f[1:] for f in TEXT_FIELDS], ids=[f[0] for f in TEXT_FIELDS])
def test_hostile_text_is_refused_naming_the_field(owner, shop, field, run, value):
    message = refused(owner, shop, lambda: run(shop, value), (ValidationError, NotFound), None)
    assert field in message, f"the message does not say which field is wrong: {message!r}"


ROUND_TRIP = {
    "sql-quotes": "Robert'); DROP TABLE products;--",
    "quotes-and-backslash": 'O\'Brien "the \\ one" 100% _x_',
    "accents": "Café Größe ñandú",
    "emoji": "Mug ☕ 🎉",
    "flag": "🇫🇷 Paris",
    "heart-with-variation-selector": "I ❤️ mugs",
    "skin-tone": "Thumbs 👍🏽",
    "zwj-profession": "Dev 👩‍💻",
    "zwj-family": "Family 👨‍👩‍👧",
    "cjk": "马克杯",
    "rtl-script": "كوب",
    "exactly-200": "é" * 200,
}


@pytest.mark.parametrize("text", list(ROUND_TRIP.values()), ids=list(ROUND_TRIP))
def test_names_round_trip_exactly(db, owner, shop, text):
    catalog.add_product(db, shop.tid, CLI, sku="RT-1", name=text, category=text[:100], price=1)
    added = customers.add_customer(db, shop.tid, CLI, name=text)
    catalog.add_warehouse(db, shop.tid, CLI, code="RT", name=text, region=text[:100])

    (row,) = catalog.list_products(db, shop.tid, CLI, search="RT-1")
    assert (row["name"], row["category"]) == (text, text[:100])
    listed = customers.list_customers(db, shop.tid, CLI, limit=1000)
    assert next(c for c in listed if str(c["id"]) == added["id"])["name"] == text
    stored = owner.execute(
        "SELECT name FROM customers WHERE tenant_id = %s AND id = %s", [shop.tid, added["id"]]
    ).fetchone()[0]
    assert stored == text
    assert next(w for w in catalog.list_warehouses(db, shop.tid, CLI) if w["code"] == "RT")["name"] == text
    event = owner.execute(
        "SELECT data->>'name' FROM events WHERE tenant_id = %s AND event_type = 'ProductAdded'"
        " AND data->>'sku' = 'RT-1'",
        [shop.tid],
    ).fetchone()[0]
    assert event == text
    # Ordering it carries the name onto the order line unchanged.
    inventory.receive(db, shop.tid, CLI, sku="RT-1", warehouse="EAST", quantity=1)
    oid = place_order(db, shop.tid, CLI, customer_id=added["id"], lines=[("RT-1", 1)], at=T0)["order_id"]
    detail = order_detail(db, shop.tid, CLI, oid)
    assert (detail["customer_name"], detail["lines"][0]["name"]) == (text, text)


# -- another tenant's ids look like ids that never existed ------------------------------------------

# (id, command taking a reference, their reference, a reference that never existed)
FOREIGN = [
    ("receive-their-sku", lambda s, r: rcv(sku=r)(s), lambda s: "THEIRS", lambda s: "NEVER"),
    ("adjust-their-sku", lambda s, r: adj(sku=r)(s), lambda s: "THEIRS", lambda s: "NEVER"),
    ("place-their-sku", lambda s, r: place(lines=[(r, 1)])(s), lambda s: "THEIRS", lambda s: "NEVER"),
    ("receive-their-warehouse", lambda s, r: rcv(warehouse=r)(s), lambda s: "FAR", lambda s: "NEAR"),
    ("return-to-their-warehouse", lambda s, r: ret(warehouse=r)(s), lambda s: "FAR", lambda s: "NEAR"),
    (
        "place-their-customer",
        lambda s, r: place(customer_id=r)(s),
        lambda s: s.their_customer,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "pay-their-order-id",
        lambda s, r: pay(order=r)(s),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "pay-their-order-number",
        lambda s, r: pay(order=r)(s),
        lambda s: f"#{s.their_number}",
        lambda s: "#1999",
    ),
    (
        "ship-their-order",
        lambda s, r: ship_order(s.db, s.tid, CLI, r, carrier="c", tracking="t", at=T0),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "cancel-their-order",
        lambda s, r: cancel_order(s.db, s.tid, CLI, r, at=T0),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "cancel-their-order-number",
        lambda s, r: cancel_order(s.db, s.tid, CLI, r, at=T0),
        lambda s: str(s.their_number),
        lambda s: "1999",
    ),
    (
        "deliver-their-order",
        lambda s, r: deliver_order(s.db, s.tid, CLI, r, at=T0),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "return-their-order",
        lambda s, r: return_items(s.db, s.tid, CLI, r, items={1: 1}, warehouse="EAST", at=T0),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "expire-their-order",
        lambda s, r: expire_order(s.db, s.tid, SYSTEM, r, now=T0),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "view-their-order",
        lambda s, r: order_detail(s.db, s.tid, CLI, r),
        lambda s: s.their_order,
        lambda s: str(uuid.uuid4()),
    ),
    (
        "view-their-order-number",
        lambda s, r: order_detail(s.db, s.tid, CLI, r),
        lambda s: f"#{s.their_number}",
        lambda s: "#1999",
    ),
]


@pytest.mark.parametrize(("run", "theirs", "never"), [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
def test_another_tenants_id_looks_exactly_like_an_unknown_one(owner, shop, run, theirs, never):
    their_ref, never_ref = theirs(shop), never(shop)
    outcomes = []
    for ref in (their_ref, never_ref):
        before = snapshot(owner, shop.tid, shop.their_tid)
        with pytest.raises(OmsError) as caught:
            run(shop, ref)
        assert snapshot(owner, shop.tid, shop.their_tid) == before
        assert isinstance(caught.value, (NotFound, ValidationError)), repr(caught.value)
        outcomes.append((type(caught.value), str(caught.value).replace(ref.lstrip("#"), "<ref>")))
    assert outcomes[0] == outcomes[1], f"their id is told apart from an unknown one: {outcomes}"
    assert "<ref>" in outcomes[0][1]
    # And their data is untouched and unseen: their order is as it was.
    status = owner.execute("SELECT status FROM orders WHERE id = %s", [shop.their_order]).fetchone()[0]
    assert status == "reserved"


def test_an_unknown_setting_is_named_and_nothing_changes(db, tenant):
    before = tenants.get_settings(db, tenant.id)
    with pytest.raises(ValidationError, match="colour"):
        tenants.change_settings(db, tenant.id, CLI, colour="red")
    assert tenants.get_settings(db, tenant.id) == before
