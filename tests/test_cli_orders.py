"""The `oms` CLI end to end on the test database: catalog, stock, customers and the order lifecycle, with
--json output checked field by field, and every bad input ending in one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from core.cli import app

pytestmark = pytest.mark.usefixtures("owner_url")

runner = CliRunner()


def oms(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: object):
    result = oms(*args)
    assert result.exit_code == 0, f"oms {' '.join(map(str, args))}: {result.output}"
    return result


def ok_json(*args: object):
    return json.loads(ok(*args, "--json").stdout)


def fails(*args: object, says: str) -> str:
    """The command exits non-zero with exactly one line on stderr, naming what is wrong; no traceback."""
    result = oms(*args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    assert says in err, err
    return err


def new_shop(label: str = "cli") -> dict:
    """A tenant made through the CLI, with two warehouses, two products, stock and a customer."""
    slug = f"{label}-{uuid.uuid4().hex[:8]}"
    created = ok_json("tenant", "create", f"{label} shop", "--slug", slug, "--currency", "USD")
    assert created["slug"] == slug
    t = ("--tenant", slug)
    ok("warehouse", "add", *t, "--code", "east", "--name", "East DC", "--region", "us-east", "--priority", 10)
    ok("warehouse", "add", *t, "--code", "WEST", "--name", "West DC", "--priority", 20)
    text = ok("product", "add", *t, "--sku", "mug-1", "--name", "Enamel mug", "--category", "Kitchen",
              "--price", 1250).stdout  # fmt: skip
    assert "USD 12.50" in text
    ok("product", "add", *t, "--sku", "TEA-1", "--name", "Green tea", "--price", 799)
    assert (
        ok_json("stock", "receive", *t, "--sku", "MUG-1", "--warehouse", "EAST", "--quantity", 5)["on_hand"]
        == 5
    )
    ok("stock", "receive", *t, "--sku", "MUG-1", "--warehouse", "WEST", "--quantity", 3)
    ok("stock", "receive", *t, "--sku", "TEA-1", "--warehouse", "WEST", "--quantity", 10)
    customer = ok_json(
        "customer", "add", *t, "--name", "Ada Lovelace", "--email", "ada@example.com", "--notify-sms"
    )
    assert customer["notify_sms"] is True and customer["notify_email"] is True
    return {"slug": slug, "t": t, "customer": customer["id"], "id": created["id"]}


@pytest.fixture
def shop() -> dict:
    return new_shop()


def stock(shop: dict, sku: str) -> dict[str, dict]:
    return {r["warehouse"]: r for r in ok_json("stock", "show", *shop["t"], "--sku", sku)}


def test_order_lifecycle_through_the_cli(shop):
    t = shop["t"]
    placed = ok_json(
        "order", "place", *t, "--customer", shop["customer"], "--line", "mug-1:2", "--line", "TEA-1:1",
        "--channel", "phone", "--shipping-fee", 495,
    )  # fmt: skip
    assert placed["status"] == "reserved"
    assert placed["number"] >= 1001
    assert placed["currency"] == "USD"
    assert placed["total"] == 2 * 1250 + 799 + 495
    assert placed["short"] == []
    assert uuid.UUID(placed["order_id"])
    assert sorted((a["sku"], a["warehouse"], a["quantity"]) for a in placed["allocations"]) == [
        ("MUG-1", "EAST", 2),
        ("TEA-1", "WEST", 1),
    ]
    assert stock(shop, "MUG-1")["EAST"]["reserved"] == 2
    number = placed["number"]

    paid = ok_json("order", "pay", *t, f"#{number}")
    assert paid["status"] == "paid" and paid["events"] == ["OrderPaid"]
    shipped = ok_json(
        "order", "ship", *t, number, "--carrier", "UPS", "--tracking", "1Z999", "--warehouse", "EAST"
    )
    assert shipped["status"] == "partially_shipped"
    text = ok("order", "ship", *t, placed["order_id"], "--carrier", "UPS", "--tracking", "1Z998").stdout
    assert f"order #{number} is shipped" in text
    assert ok_json("order", "deliver", *t, number)["status"] == "delivered"
    returned = ok_json("order", "return", *t, number, "--line", "1:1", "--warehouse", "west")
    assert returned["status"] == "partially_refunded"
    assert stock(shop, "MUG-1")["WEST"]["on_hand"] == 4

    detail = ok_json("order", "show", *t, number)
    assert detail["number"] == number and detail["status"] == "partially_refunded"
    assert detail["refunded_amount"] == 1250
    assert [x["sku"] for x in detail["lines"]] == ["MUG-1", "TEA-1"]
    assert detail["lines"][0]["returned_quantity"] == 1
    assert {(a["warehouse"], a["state"]) for a in detail["allocations"]} == {
        ("EAST", "shipped"),
        ("WEST", "shipped"),
    }
    assert sorted(s["warehouse"] for s in detail["shipments"]) == ["EAST", "WEST"]
    assert [e["type"] for e in detail["timeline"]] == [
        "OrderPlaced",
        "OrderReserved",
        "OrderPaid",
        "OrderShipped",
        "OrderShipped",
        "OrderDelivered",
        "ReturnReceived",
        "RefundIssued",
    ]
    assert [e["version"] for e in detail["timeline"]] == list(range(1, 9))

    shown = ok("order", "show", *t, f"#{number}").stdout
    assert f"Order #{number}" in shown and "USD 37.94" in shown and "RefundIssued" in shown

    # A second order, cancelled, to filter against.
    other = ok_json("order", "place", *t, "--customer", "ada@example.com", "--line", "TEA-1:2")
    cancelled = ok_json("order", "cancel", *t, other["number"], "--reason", "changed mind")
    assert cancelled["status"] == "cancelled"
    assert stock(shop, "TEA-1")["WEST"]["reserved"] == 0

    def numbers(*filters: object) -> list[int]:
        return [r["number"] for r in ok_json("order", "list", *t, *filters)["rows"]]

    assert numbers() == [other["number"], number]
    assert numbers("--status", "partially_refunded") == [number]
    assert numbers("--status", "cancelled,refunded") == [other["number"]]
    assert numbers("--channel", "phone") == [number]
    assert numbers("--channel", "pos") == []
    assert numbers("--customer", shop["customer"]) == [other["number"], number]
    assert numbers("--search", f"#{number}") == [number]
    assert numbers("--search", "lovelace") == [other["number"], number]
    today = datetime.now(UTC).date()
    assert len(numbers("--from", today - timedelta(days=1), "--to", today + timedelta(days=1))) == 2
    assert numbers("--to", today - timedelta(days=2)) == []
    page = ok_json("order", "list", *t, "--page-size", 1)
    assert page["has_next"] is True and len(page["rows"]) == 1
    listed = ok("order", "list", *t).stdout
    assert f"#{number}" in listed and "USD 37.94" in listed


def test_stock_commands(shop):
    t = shop["t"]
    row = ok_json(
        "stock", "adjust", *t, "--sku", "MUG-1", "--warehouse", "EAST", "--change", -2, "--reason", "broken"
    )
    assert row["on_hand"] == 3
    moved = ok_json(
        "stock", "transfer", *t, "--sku", "MUG-1", "--from", "EAST", "--to", "WEST", "--quantity", 1
    )
    assert moved["from"]["on_hand"] == 2 and moved["to"]["on_hand"] == 4
    assert (
        ok_json("stock", "reorder", *t, "--sku", "MUG-1", "--warehouse", "EAST", "--point", 2)["low"] is True
    )
    low = ok_json("stock", "show", *t, "--low")
    assert [(r["sku"], r["warehouse"]) for r in low] == [("MUG-1", "EAST")]
    assert {r["warehouse"] for r in ok_json("stock", "show", *t, "--warehouse", "west")} == {"WEST"}
    assert "LOW" in ok("stock", "show", *t).stdout
    fails("stock", "adjust", *t, "--sku", "MUG-1", "--warehouse", "EAST", "--change", -9, "--reason", "x",
          says="cannot take away 9")  # fmt: skip
    fails("stock", "receive", *t, "--sku", "MUG-1", "--warehouse", "EAST", "--quantity", -5, says="quantity")
    fails("stock", "receive", *t, "--sku", "NOPE", "--warehouse", "EAST", "--quantity", 1, says="no product")
    products = ok_json("product", "list", *t, "--search", "mug")
    assert [(p["sku"], p["price"]) for p in products] == [("MUG-1", 1250)]
    assert [w["code"] for w in ok_json("warehouse", "list", *t)] == ["EAST", "WEST"]
    customers = ok_json("customer", "list", *t, "--search", "ada@")
    assert [c["name"] for c in customers] == ["Ada Lovelace"]


def test_settings(shop):
    t = shop["t"]
    assert ok_json("settings", "show", *t)["allocation_strategy"] == "priority"
    changed = ok_json("settings", "set", *t, "--allocation-strategy", "most_available", "--tax-rate-bp", 825)
    assert changed["allocation_strategy"] == "most_available" and changed["tax_rate_bp"] == 825
    assert "8.25%" in ok("settings", "show", *t).stdout
    fails("settings", "set", *t, "--reservation-minutes", 0, says="reservation_minutes")
    fails("settings", "set", *t, says="nothing to change")


def test_bad_input_is_one_line_and_non_zero(shop):
    t, c = shop["t"], shop["customer"]
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1", says="SKU:QTY")
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1:two", says="SKU:QTY")
    fails("order", "place", *t, "--customer", c, "--line", ":2", says="SKU:QTY")
    fails("order", "place", *t, "--customer", c, says="at least one --line")
    fails("order", "place", *t, "--customer", c, "--line", "NOPE-9:1", says="unknown SKU: NOPE-9")
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1:-1", says="quantity")
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1:0", says="quantity")
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1:1", "--line", "mug-1:2", says="MUG-1")
    fails("order", "place", *t, "--customer", c, "--line", "MUG-1:1", "--channel", "fax", says="channel")
    fails("order", "place", *t, "--customer", "nobody@example.com", "--line", "MUG-1:1", says="no customer")
    fails(
        "order", "place", "--tenant", "no-such-shop", "--customer", c, "--line", "MUG-1:1", says="no tenant"
    )
    fails("order", "show", *t, 999999, says="no order #999999")
    fails("order", "pay", *t, "#999999", says="no order #999999")
    fails("order", "show", *t, "not-an-order", says="not a valid order id")
    fails("order", "cancel", *t, str(uuid.uuid4()), says="no order")
    fails("order", "list", *t, "--status", "lost", says="unknown status")
    fails("order", "list", *t, "--from", "31/01/2026", says="--from must be a date")
    fails("product", "add", *t, "--sku", "BAD SKU", "--name", "x", "--price", 1, says="sku")
    fails("product", "add", *t, "--sku", "MUG-1", "--name", "again", "--price", 1, says="already exists")
    placed = ok_json("order", "place", *t, "--customer", c, "--line", "MUG-1:1")
    fails("order", "ship", *t, placed["number"], "--carrier", "UPS", "--tracking", "1", says="is reserved")
    fails("order", "pay", *t, placed["number"], "--amount", 1, says="does not match")
    fails("order", "return", *t, placed["number"], "--line", "1", "--warehouse", "EAST", says="LINE_NO:QTY")
    fails("order", "return", *t, placed["number"], "--line", "1:1", "--warehouse", "EAST", says="is reserved")
    # Nothing above wrote anything: only the one order reserves stock.
    assert stock(shop, "MUG-1")["EAST"]["reserved"] == 1
    assert len(ok_json("order", "list", *shop["t"])["rows"]) == 1


def test_out_of_stock_names_the_short_lines_and_reserves_nothing(shop):
    t, c = shop["t"], shop["customer"]
    err = fails(
        "order", "place", *t, "--customer", c, "--line", "MUG-1:9", "--line", "TEA-1:1", says="out of stock"
    )
    assert "MUG-1 (wanted 9, available 8)" in err and "TEA-1" not in err
    result = oms("order", "place", *t, "--customer", c, "--line", "MUG-1:20", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "rejected" and body["short"] == [
        {"sku": "MUG-1", "requested": 20, "available": 8}
    ]
    assert "MUG-1" in body["error"]
    assert all(r["reserved"] == 0 for r in stock(shop, "MUG-1").values())
    statuses = [r["status"] for r in ok_json("order", "list", *t)["rows"]]
    assert statuses == ["rejected", "rejected"]
    # Split across warehouses when no single one covers the line.
    split = ok_json("order", "place", *t, "--customer", c, "--line", "MUG-1:7")
    assert sorted((a["warehouse"], a["quantity"]) for a in split["allocations"]) == [("EAST", 5), ("WEST", 2)]


def test_idempotency_key_returns_the_first_order(shop):
    t, c = shop["t"], shop["customer"]
    args = ("order", "place", *t, "--customer", c, "--line", "MUG-1:1", "--idempotency-key", "checkout-42")
    first, again = ok_json(*args), ok_json(*args)
    assert again == first
    assert stock(shop, "MUG-1")["EAST"]["reserved"] == 1
    assert len(ok_json("order", "list", *t)["rows"]) == 1
    pay = ("order", "pay", *t, first["number"], "--idempotency-key", "pay-42")
    assert ok_json(*pay) == ok_json(*pay)
    # The same key for another command is refused, not replayed.
    fails(
        "order",
        "cancel",
        *t,
        first["number"],
        "--idempotency-key",
        "pay-42",
        says="was already used to pay order",
    )


def test_another_tenants_orders_are_not_found(shop):
    other = new_shop("other")
    theirs = ok_json("order", "place", *other["t"], "--customer", other["customer"], "--line", "MUG-1:1")
    mine = new_shop("mine")  # no orders at all, so their number names nothing here
    for ref in (theirs["number"], f"#{theirs['number']}", theirs["order_id"]):
        fails("order", "show", *mine["t"], ref, says="no order")
        fails("order", "pay", *mine["t"], ref, says="no order")
        fails("order", "cancel", *mine["t"], ref, says="no order")
    fails(
        "order",
        "place",
        *mine["t"],
        "--customer",
        other["customer"],
        "--line",
        "MUG-1:1",
        says="no active customer",
    )
    assert ok_json("order", "show", *other["t"], theirs["number"])["status"] == "reserved"


def test_expire_releases_reservations_that_ran_out(shop, db):
    from core.commands import CLI
    from core.orders.handlers import place_order

    placed = place_order(
        db,
        shop["id"],
        CLI,
        customer_id=shop["customer"],
        lines=[("MUG-1", 2)],
        at=datetime.now(UTC) - timedelta(hours=2),
    )
    ok_json("order", "place", *shop["t"], "--customer", shop["customer"], "--line", "MUG-1:1")  # still holds
    assert stock(shop, "MUG-1")["EAST"]["reserved"] == 3
    expired = ok_json("order", "expire", *shop["t"])
    assert [r["number"] for r in expired] == [placed["number"]]
    assert stock(shop, "MUG-1")["EAST"]["reserved"] == 1
    assert ok_json("order", "show", *shop["t"], placed["number"])["status"] == "expired"
    assert "expired 0 reservation(s)" in ok("order", "expire", *shop["t"]).stdout
