"""The order aggregate: plain Python that folds its events and decides the next ones.

placed -> reserved (or rejected) -> paid -> partially_shipped -> shipped -> delivered
-> partially_refunded -> refunded; cancelled before shipment; expired when an unpaid reservation
runs out. Paying through the gateways goes reserved -> payment_pending -> paid, or -> payment_failed
(reservations released) when the attempts run out; staff may retry, which reserves the stock again.
An action the current state does not allow is an IllegalTransition naming that state.
Every order event carries the status it leads to, so the read model never re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import OmsError, ValidationError

CHANNELS = ("web", "pos", "marketplace", "phone")
OPEN_FOR_PAYMENT = ("reserved",)
# A pending gateway charge cannot be cancelled: its outcome is not known yet.
CANCELLABLE = ("placed", "reserved", "paid", "payment_failed")
SHIPPABLE = ("paid", "partially_shipped")
RETURNABLE = ("delivered", "partially_refunded")


class IllegalTransition(OmsError):
    def __init__(self, number: int | None, status: str | None, action: str):
        self.status = status
        super().__init__(f"order #{number} is {status or 'not placed'}: it cannot be {action}")


class OutOfStock(OmsError):
    """The order was rejected whole: some line cannot be covered. Nothing was reserved."""

    def __init__(self, number: int, short: list[dict[str, Any]]):
        self.number, self.short = number, short
        lines = ", ".join(f"{s['sku']} (wanted {s['requested']}, available {s['available']})" for s in short)
        super().__init__(f"out of stock, order #{number} rejected: {lines}")


@dataclass(frozen=True)
class WarehouseStock:
    warehouse: str
    priority: int
    available: int


def allocate(
    wanted: dict[str, int], stock: dict[str, list[WarehouseStock]], strategy: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decide where each SKU's units come from: (allocations, shortages); one of them is empty.

    'priority' walks warehouses by priority; 'most_available' by available units. A line comes
    from the first warehouse that covers it whole, and is split across warehouses only when none does.
    """
    allocations: list[dict[str, Any]] = []
    short: list[dict[str, Any]] = []
    for sku, qty in wanted.items():
        rows = [w for w in stock.get(sku, []) if w.available > 0]
        if strategy == "most_available":
            rows.sort(key=lambda w: (-w.available, w.priority, w.warehouse))
        else:
            rows.sort(key=lambda w: (w.priority, w.warehouse))
        total = sum(w.available for w in rows)
        if total < qty:
            short.append({"sku": sku, "requested": qty, "available": total})
            continue
        whole = next((w for w in rows if w.available >= qty), None)
        if whole:
            allocations.append({"sku": sku, "warehouse": whole.warehouse, "quantity": qty})
            continue
        left = qty
        for w in rows:
            take = min(left, w.available)
            allocations.append({"sku": sku, "warehouse": w.warehouse, "quantity": take})
            left -= take
            if not left:
                break
    return ([], short) if short else (allocations, [])


@dataclass
class Order:
    id: str | None = None
    number: int | None = None
    status: str | None = None
    version: int = 0
    total: int = 0
    subtotal: int = 0
    tax: int = 0
    paid: int = 0
    refunded: int = 0
    reserved_until: datetime | None = None
    payment_id: str | None = None  # the gateway charge in progress or last tried
    customer_id: str | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    allocations: list[dict[str, Any]] = field(default_factory=list)  # with "state"

    @classmethod
    def load(cls, events: list[Any]) -> Order:
        order = cls()
        for e in events:
            order.apply(e.event_type, e.data)
            order.version = e.version
        return order

    def apply(self, event_type: str, d: dict[str, Any]) -> None:
        self.status = d.get("status", self.status)
        match event_type:
            case "OrderPlaced":
                self.id, self.number, self.lines = d["order_id"], d["number"], [dict(x) for x in d["lines"]]
                self.customer_id = d["customer_id"]
                self.total, self.subtotal, self.tax = d["total"], d["subtotal"], d["tax"]
                for line in self.lines:
                    line.setdefault("returned", 0)
            case "OrderReserved":
                self.allocations = [{**a, "state": "reserved"} for a in d["allocations"]]
                self.reserved_until = datetime.fromisoformat(d["reserved_until"])
            case "OrderPaid":
                self.paid += d["amount"]
            case "OrderShipped":
                for a in self.allocations:
                    if a["warehouse"] == d["warehouse"] and a["state"] == "reserved":
                        a["state"] = "shipped"
            case "PaymentRequested":
                self.payment_id = d["payment_id"]
            case "OrderCancelled" | "ReservationExpired" | "PaymentFailed":
                for a in self.allocations:
                    if a["state"] == "reserved":
                        a["state"] = "released"
            case "ReturnReceived":
                for item in d["items"]:
                    self.lines[item["line_no"] - 1]["returned"] += item["quantity"]
            case "RefundIssued":
                self.refunded += d["amount"]

    def _require(self, allowed: tuple[str, ...], action: str) -> None:
        if self.status not in allowed:
            raise IllegalTransition(self.number, self.status, action)

    def _reserved(self) -> list[dict[str, Any]]:
        return [
            {k: a[k] for k in ("sku", "warehouse", "quantity")}
            for a in self.allocations
            if a["state"] == "reserved"
        ]

    # Decisions: each returns the events [(type, data)] the action causes, or raises.

    @staticmethod
    def place(
        *,
        order_id: str,
        number: int,
        customer: dict[str, Any],
        channel: str,
        currency: str,
        lines: list[dict[str, Any]],
        shipping_fee: int,
        tax_rate_bp: int,
        at: datetime,
        allocations: list[dict[str, Any]],
        short: list[dict[str, Any]],
        reserved_until: datetime,
    ) -> list[tuple[str, dict[str, Any]]]:
        subtotal = sum(x["quantity"] * x["unit_price"] for x in lines)
        tax = (subtotal * tax_rate_bp + 5000) // 10000
        placed = {
            "order_id": order_id,
            "number": number,
            "customer_id": str(customer["id"]),
            "customer_name": customer["name"],
            "channel": channel,
            "currency": currency,
            "lines": [{"line_no": i, **x} for i, x in enumerate(lines, 1)],
            "subtotal": subtotal,
            "shipping_fee": shipping_fee,
            "tax": tax,
            "total": subtotal + shipping_fee + tax,
            "status": "placed",
            "at": at.isoformat(),
        }
        if short:
            outcome = (
                "OrderRejected",
                {"order_id": order_id, "short": short, "status": "rejected", "at": at.isoformat()},
            )
        else:
            outcome = (
                "OrderReserved",
                {
                    "order_id": order_id,
                    "allocations": allocations,
                    "reserved_until": reserved_until.isoformat(),
                    "status": "reserved",
                    "at": at.isoformat(),
                },
            )
        return [("OrderPlaced", placed), outcome]

    def pay(
        self, amount: int, method: str, reference: str, at: datetime, payment_id: str | None = None
    ) -> list[tuple[str, dict]]:
        """Record a payment: taken by hand (from reserved) or the gateway charge (payment_id) succeeded."""
        if payment_id is None:
            self._require(OPEN_FOR_PAYMENT, "paid")
        else:
            self._require_payment(payment_id, "paid")
        if amount != self.total:
            raise ValidationError(
                f"order #{self.number} totals {self.total} minor units; a payment of {amount} does not match"
            )
        return [
            (
                "OrderPaid",
                {
                    "order_id": self.id,
                    "amount": amount,
                    "method": method,
                    "reference": reference,
                    **({"payment_id": payment_id} if payment_id else {}),
                    "status": "paid",
                    "at": at.isoformat(),
                },
            )
        ]

    def request_payment(self, payment_id: str, at: datetime) -> list[tuple[str, dict]]:
        """Hand the charge to the gateways; the reservation holds until the outcome is known."""
        self._require(OPEN_FOR_PAYMENT, "charged")
        return [
            (
                "PaymentRequested",
                {
                    "order_id": self.id,
                    "payment_id": payment_id,
                    "amount": self.total,
                    "status": "payment_pending",
                    "at": at.isoformat(),
                },
            )
        ]

    def _require_payment(self, payment_id: str, action: str) -> None:
        self._require(("payment_pending",), action)
        if payment_id != self.payment_id:
            raise ValidationError(f"order #{self.number} is not being charged by payment {payment_id}")

    def attempt_started(
        self, payment_id: str, attempt: int, gateway: str, key: str, at: datetime
    ) -> list[tuple[str, dict]]:
        """An attempt's gateway and idempotency key, fixed before the gateway is called."""
        self._require_payment(payment_id, "charged")
        return [
            (
                "PaymentAttemptStarted",
                {
                    "order_id": self.id,
                    "payment_id": payment_id,
                    "attempt": attempt,
                    "gateway": gateway,
                    "idempotency_key": key,
                    "status": "payment_pending",
                    "at": at.isoformat(),
                },
            )
        ]

    def refund_sent(
        self, refund_id: str, attempt: int, gateway: str, reference: str, at: datetime
    ) -> list[tuple[str, dict]]:
        """The gateway paid a refund back. The order keeps its status: that changed when the refund
        was issued."""
        data = {"order_id": self.id, "refund_id": refund_id, "attempt": attempt, "gateway": gateway}
        data["status"] = self.status
        return [("RefundSent", {**data, "reference": reference, "at": at.isoformat()})]

    def refund_attempt_failed(
        self,
        refund_id: str,
        attempt: int,
        gateway: str,
        code: str,
        message: str,
        at: datetime,
        next_attempt_at: datetime | None,
    ) -> list[tuple[str, dict]]:
        """A refund the gateway did not pay back; without a next attempt it is left to the staff."""
        data = {"order_id": self.id, "refund_id": refund_id, "attempt": attempt, "gateway": gateway}
        data |= {"status": self.status, "code": code, "message": message, "at": at.isoformat()}
        if next_attempt_at is not None:
            data["next_attempt_at"] = next_attempt_at.isoformat()
        return [("RefundAttemptFailed", data)]

    def attempt_failed(
        self,
        payment_id: str,
        attempt: int,
        gateway: str,
        outcome: str,
        code: str,
        message: str,
        at: datetime,
        next_attempt_at: datetime | None,
        uncertain: bool = False,
    ) -> list[tuple[str, dict]]:
        """A declined or failed attempt. Without a next attempt the charge has failed: the
        reservations are released. uncertain: the gateway may have acted (a timeout), so the
        payment stays with that gateway and its idempotency key."""
        self._require_payment(payment_id, "charged")
        failed = {
            "order_id": self.id,
            "payment_id": payment_id,
            "attempt": attempt,
            "gateway": gateway,
            "outcome": outcome,
            "code": code,
            "message": message,
            "uncertain": uncertain,
            "status": "payment_pending",
            "at": at.isoformat(),
        }
        if next_attempt_at is not None:
            failed["next_attempt_at"] = next_attempt_at.isoformat()
            return [("PaymentAttemptFailed", failed)]
        reason = f"declined by {gateway}: {code}" if outcome == "declined" else "every attempt failed"
        return [
            ("PaymentAttemptFailed", failed),
            (
                "PaymentFailed",
                {
                    "order_id": self.id,
                    "payment_id": payment_id,
                    "reason": reason,
                    "released": self._reserved(),
                    "status": "payment_failed",
                    "at": at.isoformat(),
                },
            ),
        ]

    def retry_payment(
        self, payment_id: str, allocations: list[dict[str, Any]], reserved_until: datetime, at: datetime
    ) -> list[tuple[str, dict]]:
        """Staff retry a failed charge: reserve the stock again, then charge again."""
        self._require(("payment_failed",), "charged again")
        reserved = (
            "OrderReserved",
            {
                "order_id": self.id,
                "allocations": allocations,
                "reserved_until": reserved_until.isoformat(),
                "status": "reserved",
                "at": at.isoformat(),
            },
        )
        self.status = "reserved"
        return [reserved, *self.request_payment(payment_id, at)]

    def ship(
        self, warehouse: str | None, carrier: str, tracking: str, at: datetime
    ) -> list[tuple[str, dict]]:
        self._require(SHIPPABLE, "shipped")
        pending = sorted({a["warehouse"] for a in self._reserved()})
        if warehouse is not None and warehouse not in pending:
            raise ValidationError(
                f"order #{self.number} has nothing to ship from {warehouse}; "
                f"pending: {', '.join(pending) or 'none'}"
            )
        chosen = [warehouse] if warehouse else pending
        events = []
        for i, wh in enumerate(chosen):
            items = [
                {"sku": a["sku"], "quantity": a["quantity"]} for a in self._reserved() if a["warehouse"] == wh
            ]
            last = i == len(chosen) - 1 and set(chosen) == set(pending)
            events.append(
                (
                    "OrderShipped",
                    {
                        "order_id": self.id,
                        "warehouse": wh,
                        "carrier": carrier,
                        "tracking": tracking,
                        "items": items,
                        "status": "shipped" if last else "partially_shipped",
                        "at": at.isoformat(),
                    },
                )
            )
        return events

    def deliver(self, at: datetime) -> list[tuple[str, dict]]:
        self._require(("shipped",), "delivered")
        return [("OrderDelivered", {"order_id": self.id, "status": "delivered", "at": at.isoformat()})]

    def cancel(self, reason: str, at: datetime) -> list[tuple[str, dict]]:
        self._require(CANCELLABLE, "cancelled")
        events = [
            (
                "OrderCancelled",
                {
                    "order_id": self.id,
                    "reason": reason,
                    "released": self._reserved(),
                    "status": "cancelled",
                    "at": at.isoformat(),
                },
            )
        ]
        if self.paid - self.refunded > 0:
            events.append(
                (
                    "RefundIssued",
                    {
                        "order_id": self.id,
                        "amount": self.paid - self.refunded,
                        "reason": "order cancelled",
                        "status": "cancelled",
                        "at": at.isoformat(),
                    },
                )
            )
        return events

    def expire(self, now: datetime) -> list[tuple[str, dict]]:
        self._require(OPEN_FOR_PAYMENT, "expired")
        if self.reserved_until and now < self.reserved_until:
            raise ValidationError(
                f"order #{self.number}'s reservation holds until {self.reserved_until.isoformat()}"
            )
        return [
            (
                "ReservationExpired",
                {
                    "order_id": self.id,
                    "released": self._reserved(),
                    "status": "expired",
                    "at": now.isoformat(),
                },
            )
        ]

    def return_items(self, items: dict[int, int], warehouse: str, at: datetime) -> list[tuple[str, dict]]:
        """Take back units of delivered lines (line_no -> quantity) into a warehouse and refund them."""
        self._require(RETURNABLE, "returned")
        if not items:
            raise ValidationError("a return needs at least one line")
        returned = []
        refund_subtotal = 0
        for line_no, qty in sorted(items.items()):
            if not 1 <= line_no <= len(self.lines):
                raise ValidationError(f"order #{self.number} has no line {line_no}")
            line = self.lines[line_no - 1]
            left = line["quantity"] - line["returned"]
            if qty > left:
                raise ValidationError(
                    f"line {line_no} ({line['sku']}) has {left} unit(s) left to return, not {qty}"
                )
            returned.append({"line_no": line_no, "sku": line["sku"], "quantity": qty})
            refund_subtotal += qty * line["unit_price"]
        all_back = all(
            line["returned"] + items.get(line["line_no"], 0) == line["quantity"] for line in self.lines
        )
        status = "refunded" if all_back else "partially_refunded"
        # Tax is refunded as the change in the returned share of it, so returns in parts add up
        # to exactly what one return of everything would refund.
        before = sum(x["returned"] * x["unit_price"] for x in self.lines)
        after = before + refund_subtotal
        refund = refund_subtotal + (
            self.tax * after // self.subtotal - self.tax * before // self.subtotal if self.subtotal else 0
        )
        return [
            (
                "ReturnReceived",
                {
                    "order_id": self.id,
                    "items": returned,
                    "warehouse": warehouse,
                    "status": status,
                    "at": at.isoformat(),
                },
            ),
            (
                "RefundIssued",
                {
                    "order_id": self.id,
                    "amount": refund,
                    "reason": "items returned",
                    "status": status,
                    "at": at.isoformat(),
                },
            ),
        ]
