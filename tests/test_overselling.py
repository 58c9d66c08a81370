"""Invariant 1, zero overselling: concurrent buyers never reserve more than is on hand, an order is
reserved whole or rejected whole, and allocation follows the tenant's strategy.

Every check of the outcome reads the database as the owner (no row security, no app code in between):
the stock rows, the order_allocations read model and the orders themselves must all agree.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from core import catalog, customers, inventory, tenants
from core.commands import CLI
from core.orders.handlers import place_order
from core.orders.model import OutOfStock

BUYERS = 64
HOT = "HOT-1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# -- setup helpers ---------------------------------------------------------------------------------


def add_warehouses(db, tid, *specs: tuple[str, int]) -> None:
    for code, priority in specs:
        catalog.add_warehouse(db, tid, CLI, code=code, name=f"Warehouse {code}", priority=priority)


def add_customers(db, tid, n: int) -> list[str]:
    return [customers.add_customer(db, tid, CLI, name=f"Buyer {i}")["id"] for i in range(n)]


def stocked_sku(db, tid, sku: str, split: dict[str, int], price: int = 1000) -> None:
    catalog.add_product(db, tid, CLI, sku=sku, name=f"Product {sku}", price=price)
    for code, qty in split.items():
        if qty:
            inventory.receive(db, tid, CLI, sku=sku, warehouse=code, quantity=qty)


@pytest.fixture
def hot_shop(db, tenant):
    """One SKU with 100 units: 60 in EAST (priority 1) and 40 in WEST (priority 2)."""
    add_warehouses(db, tenant.id, ("EAST", 1), ("WEST", 2))
    stocked_sku(db, tenant.id, HOT, {"EAST": 60, "WEST": 40})
    return tenant


# -- checks as the owner ---------------------------------------------------------------------------


def stock_rows(owner, tid) -> dict[tuple[str, str], tuple[int, int]]:
    rows = owner.execute(
        "SELECT sku, warehouse, on_hand, reserved FROM stock WHERE tenant_id = %s", [tid]
    ).fetchall()
    return {(sku, wh): (on_hand, reserved) for sku, wh, on_hand, reserved in rows}


def assert_stock_consistent(owner, tid) -> dict[tuple[str, str], tuple[int, int]]:
    """No row negative or over-reserved, and stock.reserved equals the reserved allocations."""
    rows = stock_rows(owner, tid)
    for (sku, wh), (on_hand, reserved) in rows.items():
        assert on_hand >= 0, f"{sku}@{wh}: on hand went negative ({on_hand})"
        assert 0 <= reserved <= on_hand, f"{sku}@{wh}: reserved {reserved} with {on_hand} on hand"
    allocated = dict(
        ((sku, wh), int(total))
        for sku, wh, total in owner.execute(
            "SELECT sku, warehouse, sum(quantity) FROM order_allocations"
            " WHERE tenant_id = %s AND state = 'reserved' GROUP BY sku, warehouse",
            [tid],
        )
    )
    for key, (_, reserved) in rows.items():
        assert allocated.get(key, 0) == reserved, f"{key}: allocations {allocated.get(key, 0)} != {reserved}"
    assert set(allocated) <= set(rows), "reserved allocations for a SKU/warehouse without a stock row"
    return rows


def orders_by_status(owner, tid) -> Counter:
    return Counter(
        dict(owner.execute("SELECT status, count(*) FROM orders WHERE tenant_id = %s GROUP BY 1", [tid]))
    )


def assert_orders_whole(owner, tid) -> None:
    """Each reserved order's allocations cover each of its lines exactly; a rejected one has none."""
    lines = defaultdict(dict)
    for oid, sku, qty in owner.execute(
        "SELECT order_id, sku, quantity FROM order_lines WHERE tenant_id = %s", [tid]
    ):
        lines[oid][sku] = qty
    allocated = defaultdict(Counter)
    for oid, sku, qty in owner.execute(
        "SELECT order_id, sku, quantity FROM order_allocations WHERE tenant_id = %s", [tid]
    ):
        allocated[oid][sku] += qty
    for oid, status in owner.execute("SELECT id, status FROM orders WHERE tenant_id = %s", [tid]):
        if status == "reserved":
            assert dict(allocated[oid]) == lines[oid], (
                f"order {oid} reserved {allocated[oid]} of {lines[oid]}"
            )
        else:
            assert status == "rejected", f"order {oid} is {status}: only reserved or rejected expected here"
            assert not allocated[oid], f"rejected order {oid} holds allocations {allocated[oid]}"


# -- running concurrent buyers ---------------------------------------------------------------------


class Buyers:
    """Run `buy(i)` for each buyer at once (a barrier releases them together) and collect outcomes."""

    def __init__(self, n: int):
        self.n = n
        self.barrier = threading.Barrier(n)
        self.lock = threading.Lock()
        self.reserved: list[dict] = []  # place_order results
        self.rejected: list[OutOfStock] = []
        self.errors: list[BaseException] = []

    def run(self, buy) -> None:
        def worker(i: int) -> None:
            try:
                self.barrier.wait(timeout=60)
                buy(i)
            except BaseException as exc:  # anything but OutOfStock is a failure of the test
                with self.lock:
                    self.errors.append(exc)

        with ThreadPoolExecutor(max_workers=self.n) as pool:
            list(pool.map(worker, range(self.n)))
        assert not self.errors, f"{len(self.errors)} buyers failed otherwise: {self.errors[:3]!r}"

    def place(self, db, tid, customer_id, lines) -> bool:
        """One order: True if reserved, False if rejected with OutOfStock."""
        try:
            result = place_order(db, tid, CLI, customer_id=customer_id, lines=lines, at=T0)
        except OutOfStock as exc:
            with self.lock:
                self.rejected.append(exc)
            return False
        assert result["status"] == "reserved", result
        with self.lock:
            self.reserved.append(result)
        return True


def units(result: dict, sku: str | None = None) -> int:
    return sum(a["quantity"] for a in result["allocations"] if sku is None or a["sku"] == sku)


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_customer", [False, True], ids=["own-customer", "same-customer"])
def test_64_buyers_of_two_units_reserve_exactly_100(db, owner, hot_shop, shared_customer):
    """128 units wanted, 100 there: exactly 50 orders reserved, 14 rejected with OutOfStock."""
    tid = hot_shop.id
    people = add_customers(db, tid, 1 if shared_customer else BUYERS)
    buyers = Buyers(BUYERS)
    buyers.run(lambda i: buyers.place(db, tid, people[i % len(people)], [(HOT, 2)]))

    assert len(buyers.reserved) == 50
    assert len(buyers.rejected) == 14
    assert sum(units(r) for r in buyers.reserved) == 100
    for exc in buyers.rejected:
        assert exc.short and exc.short[0]["sku"] == HOT and exc.short[0]["requested"] == 2
        assert exc.short[0]["available"] < 2
        assert "out of stock" in str(exc)

    rows = assert_stock_consistent(owner, tid)
    assert rows == {(HOT, "EAST"): (60, 60), (HOT, "WEST"): (40, 40)}
    assert orders_by_status(owner, tid) == Counter(reserved=50, rejected=14)
    assert_orders_whole(owner, tid)


def test_64_buyers_of_one_unit_until_sold_out(db, owner, hot_shop):
    """Each buyer keeps buying one unit until told it is out of stock: exactly 100 orders succeed,
    every buyer ends with OutOfStock, and the last units of both warehouses are fought over."""
    tid = hot_shop.id
    people = add_customers(db, tid, BUYERS)
    buyers = Buyers(BUYERS)
    endings = Counter()

    def buy(i: int) -> None:
        for _ in range(200):
            if not buyers.place(db, tid, people[i], [(HOT, 1)]):
                with buyers.lock:
                    endings[i] += 1
                return
        raise AssertionError(f"buyer {i} was never told the stock ran out")

    buyers.run(buy)
    assert len(buyers.reserved) == 100
    assert sum(units(r) for r in buyers.reserved) == 100
    assert endings == Counter(dict.fromkeys(range(BUYERS), 1)), "every buyer ends with exactly one OutOfStock"
    assert len(buyers.rejected) == BUYERS
    by_warehouse = Counter()
    for r in buyers.reserved:
        for a in r["allocations"]:
            by_warehouse[a["warehouse"]] += a["quantity"]
    assert by_warehouse == Counter(EAST=60, WEST=40)

    assert stock_rows(owner, tid) == {(HOT, "EAST"): (60, 60), (HOT, "WEST"): (40, 40)}
    assert_stock_consistent(owner, tid)
    assert orders_by_status(owner, tid) == Counter(reserved=100, rejected=BUYERS)
    assert_orders_whole(owner, tid)


@pytest.mark.parametrize("strategy", ["priority", "most_available"])
def test_64_buyers_of_one_to_three_units_never_oversell(db, owner, hot_shop, strategy):
    """Buyers want 1 to 3 units; when told 'out of stock' they try a single unit, and stop once even
    that is refused. Orders that straddle the warehouses' last units must split; all 100 units go."""
    tid = hot_shop.id
    tenants.change_settings(db, tid, CLI, allocation_strategy=strategy)
    people = add_customers(db, tid, BUYERS)
    buyers = Buyers(BUYERS)
    wanted_total = Counter()

    def buy(i: int) -> None:
        rng = random.Random(i)
        qty = rng.randint(1, 3)
        for _ in range(200):
            if buyers.place(db, tid, people[i], [(HOT, qty)]):
                with buyers.lock:
                    wanted_total[qty] += 1
                qty = rng.randint(1, 3)
            elif qty == 1:
                return
            else:
                qty = 1
        raise AssertionError(f"buyer {i} was never told the stock ran out")

    buyers.run(buy)
    assert sum(units(r) for r in buyers.reserved) == 100
    assert sum(q * n for q, n in wanted_total.items()) == 100
    for r in buyers.reserved:
        assert units(r) in (1, 2, 3)
        assert len({a["warehouse"] for a in r["allocations"]}) == len(r["allocations"])
    for exc in buyers.rejected:
        assert exc.short[0]["available"] < exc.short[0]["requested"]

    assert stock_rows(owner, tid) == {(HOT, "EAST"): (60, 60), (HOT, "WEST"): (40, 40)}
    assert_stock_consistent(owner, tid)
    assert_orders_whole(owner, tid)
    counts = orders_by_status(owner, tid)
    assert counts["reserved"] == len(buyers.reserved)
    assert counts["rejected"] == len(buyers.rejected)
    assert set(counts) <= {"reserved", "rejected"}


def test_concurrent_two_line_orders_are_reserved_whole_or_not_at_all(db, owner, hot_shop):
    """64 buyers want one HOT (plenty) and one RARE (10 units): the 10 that get RARE get HOT too;
    the other 54 are rejected and hold no HOT either."""
    tid = hot_shop.id
    stocked_sku(db, tid, "RARE", {"EAST": 4, "WEST": 6})
    people = add_customers(db, tid, BUYERS)
    buyers = Buyers(BUYERS)
    buyers.run(lambda i: buyers.place(db, tid, people[i], [(HOT, 1), ("RARE", 1)]))

    assert len(buyers.reserved) == 10
    assert len(buyers.rejected) == 54
    for r in buyers.reserved:
        assert units(r, HOT) == 1 and units(r, "RARE") == 1
    for exc in buyers.rejected:
        assert [s["sku"] for s in exc.short] == ["RARE"], exc.short

    rows = assert_stock_consistent(owner, tid)
    assert sum(reserved for (sku, _), (_, reserved) in rows.items() if sku == HOT) == 10
    assert sum(reserved for (sku, _), (_, reserved) in rows.items() if sku == "RARE") == 10
    assert rows[("RARE", "EAST")] == (4, 4) and rows[("RARE", "WEST")] == (6, 6)
    assert_orders_whole(owner, tid)
    assert orders_by_status(owner, tid) == Counter(reserved=10, rejected=54)


def test_one_short_line_rejects_the_whole_order_and_reserves_nothing(db, owner, hot_shop):
    tid = hot_shop.id
    stocked_sku(db, tid, "SCARCE", {"EAST": 1, "WEST": 1})
    (buyer,) = add_customers(db, tid, 1)
    before = stock_rows(owner, tid)

    with pytest.raises(OutOfStock) as caught:
        place_order(db, tid, CLI, customer_id=buyer, lines=[(HOT, 5), ("SCARCE", 3)], at=T0)
    assert caught.value.short == [{"sku": "SCARCE", "requested": 3, "available": 2}]
    assert "SCARCE" in str(caught.value) and HOT not in str(caught.value)

    assert stock_rows(owner, tid) == before
    status, allocations = owner.execute(
        "SELECT o.status, (SELECT count(*) FROM order_allocations a"
        " WHERE a.tenant_id = o.tenant_id AND a.order_id = o.id)"
        " FROM orders o WHERE o.tenant_id = %s AND o.number = %s",
        [tid, caught.value.number],
    ).fetchone()
    assert (status, allocations) == ("rejected", 0)
    events = [
        r[0]
        for r in owner.execute(
            "SELECT event_type FROM events WHERE tenant_id = %s AND stream_id LIKE 'order-%%'"
            " ORDER BY position",
            [tid],
        )
    ]
    assert events == ["OrderPlaced", "OrderRejected"]

    # The same two lines succeed once the short one is covered (across both warehouses).
    inventory.receive(db, tid, CLI, sku="SCARCE", warehouse="WEST", quantity=1)
    result = place_order(db, tid, CLI, customer_id=buyer, lines=[(HOT, 5), ("SCARCE", 3)], at=T0)
    assert result["status"] == "reserved" and units(result, "SCARCE") == 3 and units(result, HOT) == 5
    assert_stock_consistent(owner, tid)


# -- allocation strategy ---------------------------------------------------------------------------


def allocations_of(result: dict) -> dict[str, int]:
    return {a["warehouse"]: a["quantity"] for a in result["allocations"]}


def test_priority_strategy_fills_the_first_warehouse_before_the_next(db, owner, tenant):
    tid = tenant.id
    # Codes sort the other way round from priorities, so an order by code would show.
    add_warehouses(db, tid, ("ZULU", 1), ("ALPHA", 2))
    stocked_sku(db, tid, "P1", {"ZULU": 30, "ALPHA": 30})
    (buyer,) = add_customers(db, tid, 1)

    results = [place_order(db, tid, CLI, customer_id=buyer, lines=[("P1", 10)], at=T0) for _ in range(4)]
    assert [allocations_of(r) for r in results] == [{"ZULU": 10}] * 3 + [{"ALPHA": 10}]
    assert stock_rows(owner, tid) == {("P1", "ZULU"): (30, 30), ("P1", "ALPHA"): (30, 10)}

    # A priority change takes effect for the next order.
    catalog.update_warehouse(db, tid, CLI, "ALPHA", priority=0)
    receive_more = inventory.receive(db, tid, CLI, sku="P1", warehouse="ZULU", quantity=50)
    assert receive_more["available"] == 50
    assert allocations_of(place_order(db, tid, CLI, customer_id=buyer, lines=[("P1", 5)], at=T0)) == {
        "ALPHA": 5
    }


def test_most_available_strategy_spreads_orders_over_warehouses(db, owner, tenant):
    tid = tenant.id
    add_warehouses(db, tid, ("EAST", 1), ("WEST", 2))
    stocked_sku(db, tid, "M1", {"EAST": 60, "WEST": 40})
    tenants.change_settings(db, tid, CLI, allocation_strategy="most_available")
    (buyer,) = add_customers(db, tid, 1)

    chosen = []
    for _ in range(8):
        result = place_order(db, tid, CLI, customer_id=buyer, lines=[("M1", 10)], at=T0)
        assert len(result["allocations"]) == 1, "10 units fit in either warehouse: no split"
        chosen.append(next(iter(allocations_of(result))))
        rows = stock_rows(owner, tid)
        east = rows[("M1", "EAST")][0] - rows[("M1", "EAST")][1]
        west = rows[("M1", "WEST")][0] - rows[("M1", "WEST")][1]
        assert abs(east - west) <= 10, f"most_available let the warehouses drift apart: {east} vs {west}"
    # 60/40 -> EAST, EAST (tie at 40/40 goes by priority), then alternating.
    assert chosen == ["EAST", "EAST", "EAST", "WEST", "EAST", "WEST", "EAST", "WEST"]
    assert stock_rows(owner, tid) == {("M1", "EAST"): (60, 50), ("M1", "WEST"): (40, 30)}

    # With the same stock, 'priority' would have taken all 80 from EAST first.
    tenants.change_settings(db, tid, CLI, allocation_strategy="priority")
    assert allocations_of(place_order(db, tid, CLI, customer_id=buyer, lines=[("M1", 5)], at=T0)) == {
        "EAST": 5
    }


@pytest.mark.parametrize("strategy", ["priority", "most_available"])
def test_a_line_splits_only_when_no_single_warehouse_covers_it(db, owner, tenant, strategy):
    tid = tenant.id
    add_warehouses(db, tid, ("EAST", 1), ("WEST", 2))
    stocked_sku(db, tid, "S1", {"EAST": 5, "WEST": 12})
    tenants.change_settings(db, tid, CLI, allocation_strategy=strategy)
    (buyer,) = add_customers(db, tid, 1)

    # 8 units: EAST (first by priority) cannot cover them, WEST can: all from WEST, no split.
    assert allocations_of(place_order(db, tid, CLI, customer_id=buyer, lines=[("S1", 8)], at=T0)) == {
        "WEST": 8
    }
    # Left: EAST 5, WEST 4. 9 units: nobody covers them: split, every unit reserved.
    split = place_order(db, tid, CLI, customer_id=buyer, lines=[("S1", 9)], at=T0)
    assert allocations_of(split) == {"EAST": 5, "WEST": 4}
    assert stock_rows(owner, tid) == {("S1", "EAST"): (5, 5), ("S1", "WEST"): (12, 12)}
    assert_stock_consistent(owner, tid)
    assert_orders_whole(owner, tid)


def test_inactive_warehouse_stock_is_never_allocated(db, owner, tenant):
    tid = tenant.id
    add_warehouses(db, tid, ("EAST", 1), ("WEST", 2))
    stocked_sku(db, tid, "I1", {"EAST": 10, "WEST": 3})
    (buyer,) = add_customers(db, tid, 1)
    catalog.set_warehouse_active(db, tid, CLI, "EAST", False)

    assert allocations_of(place_order(db, tid, CLI, customer_id=buyer, lines=[("I1", 3)], at=T0)) == {
        "WEST": 3
    }
    with pytest.raises(OutOfStock) as caught:
        place_order(db, tid, CLI, customer_id=buyer, lines=[("I1", 1)], at=T0)
    assert caught.value.short == [{"sku": "I1", "requested": 1, "available": 0}]
    assert stock_rows(owner, tid) == {("I1", "EAST"): (10, 0), ("I1", "WEST"): (3, 3)}
