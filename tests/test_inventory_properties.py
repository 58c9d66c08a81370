"""Invariants 1, 2 and 8 under random sequences of commands (hypothesis, stateful).

Each example is a fresh tenant with 3 SKUs, 2 warehouses and 2 customers. Rules receive, adjust,
transfer, place, pay, ship, deliver, cancel, return and expire (and repeat a command by its key).
A small model of the shop predicts every outcome: which commands succeed, which are refused (and
then must write nothing), on hand and reserved per SKU and warehouse, and each order's status.

After every step (cheap, as the owner): 0 <= reserved <= on hand everywhere, stock.reserved equals
the 'reserved' order_allocations, and stock and statuses equal the model. At the end of each example
(slow): every inline read model is snapshotted, rebuilt from the event log with
core.projections.rebuild, and must come out identical.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from conftest import new_tenant
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core import catalog, customers, inventory
from core.commands import CLI, SYSTEM
from core.errors import OmsError, ValidationError
from core.orders.handlers import (
    cancel_order,
    deliver_order,
    expire_reservations,
    pay_order,
    place_order,
    return_items,
    ship_order,
)
from core.orders.model import IllegalTransition, OutOfStock
from core.projections import rebuild, registry

SKUS = {"RED": 1250, "BLUE": 800, "GREEN": 333}
WAREHOUSES = {"EAST": 1, "WEST": 2}  # code -> priority (lower first)
T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
RESERVATION = timedelta(minutes=30)  # the tenant default
READ_MODELS = (
    "products",
    "warehouses",
    "customers",
    "stock",
    "stock_movements",
    "orders",
    "order_lines",
    "order_allocations",
    "shipments",
)
SHIPPABLE = ("paid", "partially_shipped")
RETURNABLE = ("delivered", "partially_refunded")
# The next step of an open order: advance() drives orders through these.
ADVANCE = {
    "reserved": "pay",
    "paid": "ship",
    "partially_shipped": "ship",
    "shipped": "deliver",
    "delivered": "return",
    "partially_refunded": "return",
}

sku_st = st.sampled_from(sorted(SKUS))
wh_st = st.sampled_from(sorted(WAREHOUSES))
# An order: (aim, index). Aimed picks choose among orders the action is legal for, when there are
# any, so sequences get deep into the lifecycle; the others choose any order, mostly illegal ones.
pick_st = st.tuples(st.booleans(), st.integers(0, 50))
INITIAL_STOCK = {
    ("RED", "EAST"): 6,
    ("RED", "WEST"): 6,
    ("BLUE", "EAST"): 4,
    ("BLUE", "WEST"): 6,
    ("GREEN", "WEST"): 12,
}


class ShopMachine(RuleBasedStateMachine):
    db = None  # set by the test: hypothesis builds the machine itself
    owner_url = None

    def __init__(self):
        super().__init__()
        self.owner = psycopg.connect(self.owner_url, autocommit=True)
        self.tid = new_tenant(self.db, "prop").id
        for code, priority in WAREHOUSES.items():
            catalog.add_warehouse(self.db, self.tid, CLI, code=code, name=code.title(), priority=priority)
        for sku, price in SKUS.items():
            catalog.add_product(self.db, self.tid, CLI, sku=sku, name=f"{sku.title()} mug", price=price)
        self.customers = [
            customers.add_customer(self.db, self.tid, CLI, name=n)["id"] for n in ("Ada", "Bob")
        ]
        self.clock = T0
        self.keys = 0
        self.on_hand = {(s, w): 0 for s in SKUS for w in WAREHOUSES}
        self.reserved = dict.fromkeys(self.on_hand, 0)
        self.orders: list[dict] = []  # model: id, status, lines, returned, allocations, reserved_until
        for (sku, wh), qty in INITIAL_STOCK.items():
            inventory.receive(self.db, self.tid, CLI, sku=sku, warehouse=wh, quantity=qty)
            self.on_hand[(sku, wh)] = qty
        self.last: tuple | None = None  # (callable taking a key, key, first result) for repeats

    # -- helpers ----------------------------------------------------------------------------------

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def tick(self, minutes: int = 1) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def writes(self) -> tuple:
        return self.owner.execute(
            "SELECT (SELECT count(*) FROM events WHERE tenant_id = %(t)s),"
            " (SELECT count(*) FROM command_log WHERE tenant_id = %(t)s),"
            " (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY s::text), '')) FROM stock s"
            "  WHERE tenant_id = %(t)s),"
            " (SELECT md5(coalesce(string_agg(o::text, '|' ORDER BY o::text), '')) FROM orders o"
            "  WHERE tenant_id = %(t)s)",
            {"t": self.tid},
        ).fetchone()

    def run(self, command, expect_ok: bool, refusal=(ValidationError, IllegalTransition)):
        """Run command(key). If the model says it must succeed, it must; if not, it must be refused
        with one of `refusal` and write nothing."""
        key = self.key()
        before = self.writes()
        try:
            result = command(key)
        except refusal as exc:
            assert not expect_ok, f"refused though the model allows it: {exc}"
            assert self.writes() == before, f"refused command wrote something: {exc}"
            return None
        assert expect_ok, f"accepted though the model refuses it: {result}"
        self.last = (command, key, result)
        return result

    def order(self, pick: tuple[bool, int], *legal: str) -> dict:
        aim, n = pick
        candidates = [o for o in self.orders if o["status"] in legal] if aim else []
        candidates = candidates or self.orders
        return candidates[n % len(candidates)]

    def available(self, sku: str, wh: str) -> int:
        return self.on_hand[(sku, wh)] - self.reserved[(sku, wh)]

    def release(self, o: dict) -> None:
        for a in o["allocations"]:
            if a["state"] == "reserved":
                self.reserved[(a["sku"], a["warehouse"])] -= a["quantity"]
                a["state"] = "released"

    # -- stock rules ------------------------------------------------------------------------------

    @rule(sku=sku_st, wh=wh_st, qty=st.integers(1, 20))
    def receive(self, sku, wh, qty):
        self.run(
            lambda k: inventory.receive(self.db, self.tid, CLI, sku=sku, warehouse=wh, quantity=qty, key=k),
            True,
        )
        self.on_hand[(sku, wh)] += qty

    @rule(sku=sku_st, wh=wh_st, change=st.integers(-10, 10).filter(bool))
    def adjust(self, sku, wh, change):
        ok = self.available(sku, wh) + change >= 0
        cmd = lambda k: inventory.adjust(  # noqa: E731
            self.db, self.tid, CLI, sku=sku, warehouse=wh, change=change, reason="stock count", key=k
        )
        if self.run(cmd, ok) is not None:
            self.on_hand[(sku, wh)] += change

    @rule(sku=sku_st, source=wh_st, qty=st.integers(1, 10))
    def transfer(self, sku, source, qty):
        dest = next(w for w in WAREHOUSES if w != source)
        ok = self.available(sku, source) >= qty
        cmd = lambda k: inventory.transfer(  # noqa: E731
            self.db, self.tid, CLI, sku=sku, source=source, destination=dest, quantity=qty, key=k
        )
        if self.run(cmd, ok) is not None:
            self.on_hand[(sku, source)] -= qty
            self.on_hand[(sku, dest)] += qty

    # -- order rules ------------------------------------------------------------------------------

    @rule(
        customer=st.integers(0, 1),
        lines=st.lists(
            st.tuples(sku_st, st.integers(1, 4)), min_size=1, max_size=2, unique_by=lambda x: x[0]
        ),
    )
    def place(self, customer, lines):
        at = self.tick()
        coverable = all(sum(self.available(s, w) for w in WAREHOUSES) >= q for s, q in lines)
        key = self.key()
        before = self.writes()
        try:
            result = place_order(
                self.db, self.tid, CLI, customer_id=self.customers[customer], lines=lines, key=key, at=at
            )
        except OutOfStock as exc:
            assert not coverable, f"rejected though every line is in stock: {exc}"
            short = {s["sku"]: s for s in exc.short}
            for sku, qty in lines:
                total = sum(self.available(sku, w) for w in WAREHOUSES)
                assert (sku in short) == (total < qty)
                if sku in short:
                    assert short[sku]["available"] == total and short[sku]["requested"] == qty
            assert self.writes()[2] == before[2], "a rejected order moved stock"
            oid = self.owner.execute(
                "SELECT id FROM orders WHERE tenant_id = %s AND number = %s", [self.tid, exc.number]
            ).fetchone()[0]
            self.orders.append({"id": str(oid), "status": "rejected", "lines": lines, "allocations": []})
            return
        assert coverable, f"reserved though a line is short: {result}"
        self.check_allocation(lines, result["allocations"])
        for a in result["allocations"]:
            self.reserved[(a["sku"], a["warehouse"])] += a["quantity"]
        self.orders.append(
            {
                "id": result["order_id"],
                "status": "reserved",
                "lines": lines,
                "returned": [0] * len(lines),
                "allocations": [{**a, "state": "reserved"} for a in result["allocations"]],
                "reserved_until": at + RESERVATION,
            }
        )
        self.last = (
            lambda k: place_order(
                self.db, self.tid, CLI, customer_id=self.customers[customer], lines=lines, key=k, at=at
            ),
            key,
            result,
        )

    def check_allocation(self, lines, allocations) -> None:
        """Whole lines, within what each warehouse had; a line splits only when no warehouse covers it,
        and a whole line goes to the first warehouse by priority that covers it."""
        for sku, qty in lines:
            mine = [a for a in allocations if a["sku"] == sku]
            assert sum(a["quantity"] for a in mine) == qty
            assert len({a["warehouse"] for a in mine}) == len(mine)
            for a in mine:
                assert 0 < a["quantity"] <= self.available(sku, a["warehouse"])
            covering = [w for w in sorted(WAREHOUSES, key=WAREHOUSES.get) if self.available(sku, w) >= qty]
            if covering:
                assert [a["warehouse"] for a in mine] == [covering[0]], (sku, qty, mine, covering)
        assert {a["sku"] for a in allocations} == {s for s, _ in lines}

    @precondition(lambda self: self.orders)
    @rule(pick=pick_st)
    def pay(self, pick):
        o = self.order(pick, "reserved")
        at = self.tick()
        if self.run(
            lambda k: pay_order(self.db, self.tid, CLI, o["id"], key=k, at=at), o["status"] == "reserved"
        ):
            o["status"] = "paid"

    @precondition(lambda self: self.orders)
    @rule(pick=pick_st, wh=st.sampled_from([None, *sorted(WAREHOUSES)]))
    def ship(self, pick, wh):
        o = self.order(pick, *SHIPPABLE)
        at = self.tick()
        pending = {a["warehouse"] for a in o["allocations"] if a["state"] == "reserved"}
        ok = o["status"] in SHIPPABLE and (wh is None or wh in pending)
        cmd = lambda k: ship_order(  # noqa: E731
            self.db, self.tid, CLI, o["id"], carrier="DHL", tracking=f"T{k}", warehouse=wh, key=k, at=at
        )
        if self.run(cmd, ok) is None:
            return
        for a in o["allocations"]:
            if a["state"] == "reserved" and (wh is None or a["warehouse"] == wh):
                self.on_hand[(a["sku"], a["warehouse"])] -= a["quantity"]
                self.reserved[(a["sku"], a["warehouse"])] -= a["quantity"]
                a["state"] = "shipped"
        left = any(a["state"] == "reserved" for a in o["allocations"])
        o["status"] = "partially_shipped" if left else "shipped"

    @precondition(lambda self: self.orders)
    @rule(pick=pick_st)
    def deliver(self, pick):
        o = self.order(pick, "shipped")
        at = self.tick()
        if self.run(
            lambda k: deliver_order(self.db, self.tid, CLI, o["id"], key=k, at=at), o["status"] == "shipped"
        ):
            o["status"] = "delivered"

    @precondition(lambda self: self.orders)
    @rule(pick=pick_st)
    def cancel(self, pick):
        o = self.order(pick, "reserved", "paid")
        at = self.tick()
        ok = o["status"] in ("reserved", "paid")
        if self.run(lambda k: cancel_order(self.db, self.tid, CLI, o["id"], key=k, at=at), ok):
            self.release(o)
            o["status"] = "cancelled"

    @precondition(lambda self: self.orders)
    @rule(pick=pick_st, line=st.integers(0, 2), qty=st.integers(1, 4), wh=wh_st)
    def return_(self, pick, line, qty, wh):
        o = self.order(pick, *RETURNABLE)
        at = self.tick()
        line_no = line % len(o["lines"]) + 1
        if o["status"] in RETURNABLE:
            ok = qty <= o["lines"][line_no - 1][1] - o["returned"][line_no - 1]
        else:
            ok = False
        cmd = lambda k: return_items(  # noqa: E731
            self.db, self.tid, CLI, o["id"], items={line_no: qty}, warehouse=wh, key=k, at=at
        )
        if self.run(cmd, ok) is None:
            return
        o["returned"][line_no - 1] += qty
        self.on_hand[(o["lines"][line_no - 1][0], wh)] += qty
        all_back = all(r == q for r, (_, q) in zip(o["returned"], o["lines"], strict=True))
        o["status"] = "refunded" if all_back else "partially_refunded"

    @precondition(lambda self: any(o["status"] in ADVANCE for o in self.orders))
    @rule(n=st.integers(0, 50), line=st.integers(0, 2), qty=st.integers(1, 4), wh=wh_st)
    def advance(self, n, line, qty, wh):
        """An open order's next step (pay, ship, deliver, return): sequences reach the deep states."""
        open_orders = [o for o in self.orders if o["status"] in ADVANCE]
        o = open_orders[n % len(open_orders)]
        step = ADVANCE[o["status"]]
        peers = [x for x in self.orders if ADVANCE.get(x["status"]) == step]
        pick = (True, peers.index(o))
        if step == "pay":
            self.pay(pick)
        elif step == "ship":
            self.ship(pick, None)
        elif step == "deliver":
            self.deliver(pick)
        else:
            self.return_(pick, line, qty, wh)

    @rule(minutes=st.integers(0, 20))
    def expire(self, minutes):
        now = self.tick(minutes)
        due = {o["id"] for o in self.orders if o["status"] == "reserved" and o["reserved_until"] <= now}
        before = self.writes()
        expired = expire_reservations(self.db, self.tid, SYSTEM, now=now)
        assert {e["order_id"] for e in expired} == due
        assert all(e["status"] == "expired" for e in expired)
        if not due:
            assert self.writes() == before
        for o in self.orders:
            if o["id"] in due:
                self.release(o)
                o["status"] = "expired"

    @precondition(lambda self: self.last is not None)
    @rule()
    def repeat_last(self):
        """The last successful command again, with its key: the first result, nothing written."""
        command, key, first = self.last
        before = self.writes()
        again = command(key)
        assert json.loads(json.dumps(again, default=str)) == json.loads(json.dumps(first, default=str))
        assert self.writes() == before

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def stock_is_never_oversold_and_matches_the_model(self):
        rows = {
            (s, w): (o, r)
            for s, w, o, r in self.owner.execute(
                "SELECT sku, warehouse, on_hand, reserved FROM stock WHERE tenant_id = %s", [self.tid]
            )
        }
        for key, (on_hand, reserved) in rows.items():
            assert 0 <= reserved <= on_hand, f"{key}: reserved {reserved}, on hand {on_hand}"
        allocated = {
            (s, w): int(q)
            for s, w, q in self.owner.execute(
                "SELECT sku, warehouse, sum(quantity) FROM order_allocations"
                " WHERE tenant_id = %s AND state = 'reserved' GROUP BY 1, 2",
                [self.tid],
            )
        }
        for key in set(rows) | set(allocated):
            assert rows.get(key, (0, 0))[1] == allocated.get(key, 0), f"{key}: stock.reserved != allocations"
        for key in self.on_hand:
            expected = (self.on_hand[key], self.reserved[key])
            assert rows.get(key, (0, 0)) == expected, (
                f"{key}: stock {rows.get(key)} but the model says {expected}"
            )

    @invariant()
    def order_statuses_match_the_model(self):
        if not self.orders:
            return
        live = dict(
            (str(i), s)
            for i, s in self.owner.execute("SELECT id, status FROM orders WHERE tenant_id = %s", [self.tid])
        )
        assert live == {o["id"]: o["status"] for o in self.orders}

    def read_models(self) -> dict[str, list[str]]:
        return {
            t: [
                r[0]
                for r in self.owner.execute(
                    f"SELECT x::text FROM {t} x WHERE tenant_id = %s ORDER BY 1", [self.tid]
                )
            ]
            for t in READ_MODELS
        }

    def teardown(self):
        try:
            live = self.read_models()
            rebuilt_tables = set()
            for projection in registry().values():
                if projection.kind == "inline" and projection.rebuildable:
                    rebuild(self.db, self.tid, projection)
                    rebuilt_tables |= set(projection.tables)
            assert set(READ_MODELS) <= rebuilt_tables, (
                f"no inline projection rebuilds {set(READ_MODELS) - rebuilt_tables}"
            )
            rebuilt = self.read_models()
            for table in READ_MODELS:
                assert rebuilt[table] == live[table], (
                    f"{table}: the fold of the events differs from the live rows"
                )
        finally:
            self.owner.close()


@pytest.mark.timeout(600)
def test_random_command_sequences_keep_stock_and_read_models_consistent(db, owner_url):
    ShopMachine.db, ShopMachine.owner_url = db, owner_url
    run_state_machine_as_test(
        ShopMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_machine_refuses_what_it_should(db, owner_url):
    """A fixed sequence through the machine: the model and the checks are live, not vacuous."""
    ShopMachine.db, ShopMachine.owner_url = db, owner_url
    m = ShopMachine()
    try:
        m.receive("GREEN", "EAST", 2)
        m.place(0, [("RED", 9)])  # RED: 6 in EAST, 6 in WEST; nobody covers 9: split 6 + 3, EAST first
        assert m.orders[-1]["status"] == "reserved"
        assert sorted((a["warehouse"], a["quantity"]) for a in m.orders[-1]["allocations"]) == [
            ("EAST", 6),
            ("WEST", 3),
        ]
        m.place(1, [("RED", 2), ("BLUE", 11)])  # RED fits in WEST, BLUE (10) is short: rejected whole
        assert m.orders[-1]["status"] == "rejected"
        m.adjust("RED", "WEST", -4)  # 3 of 6 reserved: refused, and the machine expects that
        m.transfer("RED", "EAST", 1)  # all of EAST reserved: refused
        m.pay((False, 0))
        m.ship((False, 0), "WEST")
        m.ship((False, 0), None)
        m.deliver((False, 0))
        m.return_((False, 0), 0, 9, "EAST")
        assert m.orders[0]["status"] == "refunded"
        m.place(0, [("RED", 1)])
        m.expire(31)
        assert m.orders[-1]["status"] == "expired"
        m.repeat_last()
        m.stock_is_never_oversold_and_matches_the_model()
        m.order_statuses_match_the_model()
        with pytest.raises(AssertionError, match="refused though the model allows it"):
            m.run(lambda k: (_ for _ in ()).throw(ValidationError("x")), True)
        with pytest.raises(OmsError):
            pay_order(db, m.tid, CLI, m.orders[0]["id"])
    finally:
        m.teardown()
