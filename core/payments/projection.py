"""The payments read model (payments, payment_attempts, refunds), folded inline from order events.

The worker's lease on a payment (lease_until, leased_by) is not an event: the claim sets it and the
attempt's outcome clears it, so an idle payment looks the same live and rebuilt.
"""

from __future__ import annotations

import json

from core import eventstore as es
from core.projections import Projection

REQUESTED = (
    "INSERT INTO payments (tenant_id, id, order_id, order_number, amount, currency, status, attempts,"
    " next_attempt_at, created_at, updated_at)"
    " SELECT oms_current_tenant(), %(payment_id)s, o.id, o.number, %(amount)s, o.currency, 'pending', 0,"
    " %(at)s, %(at)s, %(at)s FROM orders o WHERE o.id = %(order_id)s"
)
STARTED = (
    "WITH p AS (UPDATE payments SET attempts = %(attempt)s, in_flight = %(in_flight)s::jsonb,"
    " updated_at = %(at)s WHERE id = %(payment_id)s)"
    " INSERT INTO payment_attempts (tenant_id, payment_id, attempt, gateway, idempotency_key, outcome,"
    " started_at) VALUES (oms_current_tenant(), %(payment_id)s, %(attempt)s, %(gateway)s,"
    " %(idempotency_key)s, 'started', %(at)s)"
)
FAILED_ATTEMPT = (
    "WITH p AS (UPDATE payments SET in_flight = NULL, lease_until = NULL, leased_by = NULL,"
    " next_attempt_at = %(next_attempt_at)s, last_error = %(error)s, updated_at = %(at)s,"
    " pinned_gateway = CASE WHEN %(uncertain)s THEN %(gateway)s ELSE pinned_gateway END"
    " WHERE id = %(payment_id)s)"
    " UPDATE payment_attempts SET outcome = %(outcome)s, code = %(code)s, message = %(message)s,"
    " finished_at = %(at)s WHERE payment_id = %(payment_id)s AND attempt = %(attempt)s"
)
GAVE_UP = (
    "UPDATE payments SET status = 'failed', next_attempt_at = NULL, in_flight = NULL, lease_until = NULL,"
    " leased_by = NULL, updated_at = %(at)s WHERE id = %(payment_id)s"
)
SUCCEEDED = (
    "WITH p AS (UPDATE payments SET status = 'succeeded', next_attempt_at = NULL, in_flight = NULL,"
    " lease_until = NULL, leased_by = NULL, gateway = %(gateway)s, reference = %(reference)s,"
    " last_error = NULL, updated_at = %(at)s WHERE id = %(payment_id)s)"
    " UPDATE payment_attempts SET outcome = 'succeeded', finished_at = %(at)s"
    " WHERE payment_id = %(payment_id)s AND outcome = 'started'"
)


# A refund of an order paid through a gateway goes back through that gateway, against its capture.
REFUND_ISSUED = (
    "INSERT INTO refunds (tenant_id, id, order_id, order_number, payment_id, gateway, capture, amount,"
    " currency, status, next_attempt_at, created_at, updated_at)"
    " SELECT oms_current_tenant(), %(refund_id)s, p.order_id, p.order_number, p.id, p.gateway, p.reference,"
    " %(amount)s, p.currency, 'pending', %(at)s, %(at)s, %(at)s FROM payments p"
    " WHERE p.order_id = %(order_id)s AND p.status = 'succeeded' AND p.gateway IS NOT NULL"
    " ORDER BY p.updated_at DESC LIMIT 1"
)
REFUND_SENT = (
    "UPDATE refunds SET status = 'succeeded', attempts = %(attempt)s, reference = %(reference)s,"
    " next_attempt_at = NULL, last_error = NULL, lease_until = NULL, leased_by = NULL, updated_at = %(at)s"
    " WHERE id = %(refund_id)s"
)
REFUND_ATTEMPT_FAILED = (
    "UPDATE refunds SET attempts = %(attempt)s, last_error = %(error)s,"
    " next_attempt_at = %(next_attempt_at)s::timestamptz,"
    " status = CASE WHEN %(next_attempt_at)s::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,"
    " lease_until = NULL, leased_by = NULL, updated_at = %(at)s WHERE id = %(refund_id)s"
)


class PaymentsProjection(Projection):
    name = "payments"
    tables = ("payments", "payment_attempts", "refunds")
    kind = "inline"

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d = event.data
        params = {**d, "at": d.get("at") or event.recorded_at}
        match event.event_type:
            case "RefundIssued":  # the refund's id is its event's: one refund per decision
                conn.execute(REFUND_ISSUED, {**params, "refund_id": event.event_id})
            case "RefundSent":
                conn.execute(REFUND_SENT, params)
            case "RefundAttemptFailed":
                error = f"{d['gateway']}: {d['code']} {d['message']}".strip()
                conn.execute(
                    REFUND_ATTEMPT_FAILED,
                    {**params, "next_attempt_at": d.get("next_attempt_at"), "error": error[:500]},
                )
        if "payment_id" not in d:
            return
        match event.event_type:
            case "PaymentRequested":
                conn.execute(REQUESTED, params)
            case "PaymentAttemptStarted":
                in_flight = {k: d[k] for k in ("attempt", "gateway", "idempotency_key")}
                conn.execute(STARTED, {**params, "in_flight": json.dumps(in_flight)})
            case "PaymentAttemptFailed":
                error = f"{d['gateway']}: {d['code']} {d['message']}".strip()
                conn.execute(
                    FAILED_ATTEMPT,
                    {**params, "next_attempt_at": d.get("next_attempt_at"), "error": error[:500]},
                )
            case "PaymentFailed":
                conn.execute(GAVE_UP, params)
            case "OrderPaid":
                gateway = d["method"].removeprefix("gateway:")
                conn.execute(SUCCEEDED, {**params, "gateway": gateway})


PAYMENTS = PaymentsProjection()
