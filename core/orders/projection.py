"""The order read models (orders, order_lines, order_allocations, shipments), folded inline."""

from __future__ import annotations

import json

from core import eventstore as es
from core.projections import Projection

# An order placed, in one statement: its row, its lines and (when reserved) its allocations. Lines and
# allocations travel as the event's own JSON arrays, unpacked by the server.
PLACE = (
    "WITH ins_order AS (INSERT INTO orders (tenant_id, id, number, customer_id, customer_name, channel,"
    " status, currency, subtotal, shipping_fee, tax, total, placed_at, reserved_until, closed_at, updated_at,"
    " version)"
    " VALUES (oms_current_tenant(), %(order_id)s, %(number)s, %(customer_id)s, %(customer_name)s,"
    " %(channel)s, %(status)s, %(currency)s, %(subtotal)s, %(shipping_fee)s, %(tax)s, %(total)s, %(at)s,"
    " %(reserved_until)s, %(closed_at)s, %(at)s, %(version)s)),"
    " ins_lines AS (INSERT INTO order_lines (tenant_id, order_id, line_no, sku, name, quantity, unit_price,"
    " line_total) SELECT oms_current_tenant(), %(order_id)s, u.line_no, u.sku, u.name, u.quantity,"
    " u.unit_price, u.quantity * u.unit_price FROM jsonb_to_recordset(%(lines)s::jsonb)"
    " AS u (line_no int, sku text, name text, quantity int, unit_price bigint))"
    " INSERT INTO order_allocations (tenant_id, order_id, sku, warehouse, quantity, state)"
    " SELECT oms_current_tenant(), %(order_id)s, u.sku, u.warehouse, u.quantity, 'reserved'"
    " FROM jsonb_to_recordset(%(allocations)s::jsonb) AS u (sku text, warehouse text, quantity int)"
)
ALLOCATE = (
    "INSERT INTO order_allocations (tenant_id, order_id, sku, warehouse, quantity, state)"
    " SELECT oms_current_tenant(), %s, u.sku, u.warehouse, u.quantity, 'reserved'"
    " FROM jsonb_to_recordset(%s::jsonb) AS u (sku text, warehouse text, quantity int)"
    # Reserved again after a failed payment released the same SKUs and warehouses.
    " ON CONFLICT (tenant_id, order_id, sku, warehouse)"
    " DO UPDATE SET quantity = excluded.quantity, state = 'reserved'"
)
# Each later event sets the status it leads to and, where it has one, its own timestamp column.
STATUS = (
    "UPDATE orders SET status = %(status)s, updated_at = %(at)s, version = %(version)s,"
    " reserved_until = CASE WHEN %(type)s = 'OrderReserved' THEN %(reserved_until)s::timestamptz"
    "                       WHEN %(type)s IN ('OrderCancelled', 'ReservationExpired', 'OrderPaid',"
    "                                         'PaymentFailed')"
    "                       THEN NULL"
    "                       ELSE reserved_until END,"
    " paid_amount = paid_amount + %(paid)s, refunded_amount = refunded_amount + %(refunded)s,"
    " paid_at = CASE WHEN %(type)s = 'OrderPaid' THEN %(at)s ELSE paid_at END,"
    " shipped_at = CASE WHEN %(type)s = 'OrderShipped' THEN %(at)s ELSE shipped_at END,"
    " delivered_at = CASE WHEN %(type)s = 'OrderDelivered' THEN %(at)s ELSE delivered_at END,"
    " closed_at = CASE WHEN %(status)s IN ('rejected', 'cancelled', 'expired', 'refunded') THEN %(at)s"
    "                  ELSE closed_at END"
    " WHERE id = %(order_id)s"
)
RELEASE = "UPDATE order_allocations SET state = 'released' WHERE order_id = %s AND state = 'reserved'"
SHIP = (
    "UPDATE order_allocations SET state = 'shipped'"
    " WHERE order_id = %s AND warehouse = %s AND state = 'reserved'"
)
SHIPMENT = (
    "INSERT INTO shipments (tenant_id, order_id, warehouse, carrier, tracking, shipped_at)"
    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s)"
)
RETURNED = (
    "UPDATE order_lines SET returned_quantity = returned_quantity + %s WHERE order_id = %s AND line_no = %s"
)


class OrdersProjection(Projection):
    name = "orders"
    tables = ("orders", "order_lines", "order_allocations", "shipments")
    kind = "inline"

    def apply_all(self, conn, events) -> None:
        events = list(events)
        for n, event in enumerate(events):
            # An order placed and reserved (or rejected) in one append is written once, in its final state.
            nxt = events[n + 1] if n + 1 < len(events) else None
            if event.event_type == "OrderPlaced" and nxt is not None and nxt.event_type in OUTCOMES:
                self._place(conn, event, nxt)
            elif not (n and events[n - 1].event_type == "OrderPlaced" and event.event_type in OUTCOMES):
                self.apply(conn, event)

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d = event.data
        oid = d.get("order_id")
        if not oid or not event.event_type.startswith(
            ("Order", "Reservation", "Return", "Refund", "Payment")
        ):
            return
        if event.event_type == "OrderPlaced":
            self._place(conn, event, None)
            return
        conn.execute(STATUS, _status(event))
        match event.event_type:
            case "OrderReserved":
                self._allocate(conn, d)
            case "OrderCancelled" | "ReservationExpired" | "PaymentFailed":
                conn.execute(RELEASE, [oid])
            case "OrderShipped":
                conn.execute(SHIP, [oid, d["warehouse"]])
                conn.execute(
                    SHIPMENT,
                    [oid, d["warehouse"], d["carrier"], d["tracking"], d.get("at") or event.recorded_at],
                )
            case "ReturnReceived":
                with conn.cursor() as cur:
                    cur.executemany(RETURNED, [(i["quantity"], oid, i["line_no"]) for i in d["items"]])

    @staticmethod
    def _allocate(conn, d: dict) -> None:
        conn.execute(ALLOCATE, [d["order_id"], _json(d["allocations"])])

    def _place(self, conn, placed: es.RecordedEvent, outcome: es.RecordedEvent | None) -> None:
        d = placed.data
        final = outcome or placed
        at = d.get("at") or placed.recorded_at
        status = final.data["status"]
        params = {
            **d,
            "at": at,
            "version": final.version,
            "status": status,
            "reserved_until": final.data.get("reserved_until"),
            "closed_at": at if status == "rejected" else None,
            "lines": _json(d["lines"]),
            "allocations": _json(
                outcome.data["allocations"]
                if outcome is not None and outcome.event_type == "OrderReserved"
                else []
            ),
        }
        conn.execute(PLACE, params)


OUTCOMES = ("OrderReserved", "OrderRejected")


def _json(value: object) -> str:
    """JSON text for a ::jsonb parameter: cheaper to send than columns of arrays."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _status(event: es.RecordedEvent) -> dict:
    d = event.data
    return {
        "status": d["status"],
        "at": d.get("at") or event.recorded_at,
        "version": event.version,
        "type": event.event_type,
        "reserved_until": d.get("reserved_until"),
        "order_id": d["order_id"],
        "paid": d["amount"] if event.event_type == "OrderPaid" else 0,
        "refunded": d["amount"] if event.event_type == "RefundIssued" else 0,
    }


ORDERS = OrdersProjection()
