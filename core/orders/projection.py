"""The order read models (orders, order_lines, order_allocations, shipments), folded inline."""

from __future__ import annotations

from core import eventstore as es
from core.projections import Projection

PLACE = (
    "INSERT INTO orders (tenant_id, id, number, customer_id, customer_name, channel, status, currency,"
    " subtotal, shipping_fee, tax, total, placed_at, updated_at, version)"
    " VALUES (oms_current_tenant(), %(order_id)s, %(number)s, %(customer_id)s, %(customer_name)s,"
    " %(channel)s, %(status)s, %(currency)s, %(subtotal)s, %(shipping_fee)s, %(tax)s, %(total)s, %(at)s,"
    " %(at)s, %(version)s)"
)
LINE = (
    "INSERT INTO order_lines (tenant_id, order_id, line_no, sku, name, quantity, unit_price, line_total)"
    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s, %s, %s)"
)
ALLOCATE = (
    "INSERT INTO order_allocations (tenant_id, order_id, sku, warehouse, quantity, state)"
    " VALUES (oms_current_tenant(), %s, %s, %s, %s, 'reserved')"
)
# Each later event sets the status it leads to and, where it has one, its own timestamp column.
STATUS = (
    "UPDATE orders SET status = %(status)s, updated_at = %(at)s, version = %(version)s,"
    " reserved_until = CASE WHEN %(type)s = 'OrderReserved' THEN %(reserved_until)s::timestamptz"
    "                       WHEN %(type)s IN ('OrderCancelled', 'ReservationExpired', 'OrderPaid') THEN NULL"
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

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d = event.data
        oid = d.get("order_id")
        if not event.event_type.startswith(("Order", "Reservation", "Return", "Refund")) or not oid:
            return
        at = d.get("at") or event.recorded_at
        if event.event_type == "OrderPlaced":
            conn.execute(PLACE, {**d, "at": at, "version": event.version})
            with conn.cursor() as cur:
                cur.executemany(
                    LINE,
                    [
                        (
                            oid,
                            x["line_no"],
                            x["sku"],
                            x["name"],
                            x["quantity"],
                            x["unit_price"],
                            x["quantity"] * x["unit_price"],
                        )
                        for x in d["lines"]
                    ],
                )
            return
        conn.execute(
            STATUS,
            {
                "status": d["status"],
                "at": at,
                "version": event.version,
                "type": event.event_type,
                "reserved_until": d.get("reserved_until"),
                "order_id": oid,
                "paid": d["amount"] if event.event_type == "OrderPaid" else 0,
                "refunded": d["amount"] if event.event_type == "RefundIssued" else 0,
            },
        )
        with conn.cursor() as cur:
            match event.event_type:
                case "OrderReserved":
                    cur.executemany(
                        ALLOCATE, [(oid, a["sku"], a["warehouse"], a["quantity"]) for a in d["allocations"]]
                    )
                case "OrderCancelled" | "ReservationExpired":
                    cur.execute(RELEASE, [oid])
                case "OrderShipped":
                    cur.execute(SHIP, [oid, d["warehouse"]])
                    cur.execute(SHIPMENT, [oid, d["warehouse"], d["carrier"], d["tracking"], at])
                case "ReturnReceived":
                    cur.executemany(RETURNED, [(i["quantity"], oid, i["line_no"]) for i in d["items"]])


ORDERS = OrdersProjection()
