"""Refunds paid back through the gateway that took the money.

Cancelling a paid order or taking back returned items issues a refund (RefundIssued, core/orders);
when the order was paid through a gateway, that event's transaction also writes a refunds row
(core/payments/projection.py), so the refund cannot be lost. The worker claims due rows with a
lease and calls the gateway's refund with one idempotency key per refund, the same on every
attempt: a worker killed after the gateway's answer and before recording it leaves the lease to run
out, and the next call gets the first answer back instead of refunding twice. RefundSent or
RefundAttemptFailed records each outcome on the order's stream; transient failures back off like
charges, a decline or the last attempt leaves the refund failed for the staff to settle by hand.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from core.batch import BatchReport
from core.commands import Actor, require
from core.db import Database
from core.errors import OmsError, ValidationError
from core.orders.handlers import resolve_order_id
from core.payments import gateways as gw
from core.payments.service import GATEWAY_TOKENS, POLICY, _record, _rows, backoff

log = logging.getLogger("oms.refunds")

DUE_TENANTS = "SELECT tenant_id FROM oms_platform_tenants_with_due_refunds()"
CLAIM = (
    "UPDATE refunds r SET lease_until = now() + make_interval(secs => %(lease)s), leased_by = %(worker)s"
    " FROM (SELECT id FROM refunds WHERE status = 'pending' AND next_attempt_at <= now()"
    " AND (lease_until IS NULL OR lease_until < now()) ORDER BY next_attempt_at LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED) due WHERE r.id = due.id"
    " RETURNING r.id, r.order_id, r.gateway, r.capture, r.amount, r.attempts"
)
POSTPONE = (
    "UPDATE refunds SET next_attempt_at = %s, last_error = %s, lease_until = NULL, leased_by = NULL"
    " WHERE id = %s"
)
LIST = (
    "SELECT id, order_id, order_number, gateway, amount, currency, status, attempts, next_attempt_at,"
    " reference, last_error, created_at, updated_at FROM refunds"
    " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
    " AND (%(order)s::uuid IS NULL OR order_id = %(order)s) ORDER BY updated_at DESC LIMIT %(limit)s"
)
RETRY_LATER = timedelta(minutes=5)  # a gateway taken out of the settings may be put back


def refund_key(refund_id: object) -> str:
    """The idempotency key the gateway sees on every attempt of one refund."""
    return f"refund:{refund_id}"


def process_refunds(
    db: Database, worker: str, lease_seconds: float, limit: int = 20, only: list | None = None
) -> BatchReport:
    """One attempt on each due refund of every tenant (or of `only` these), each claimed by one worker."""
    report = BatchReport()
    with db.connection() as conn:
        due = [r[0] for r in conn.execute(DUE_TENANTS) if only is None or r[0] in only]
    for tenant_id in due:
        with db.tenant(tenant_id) as conn:
            attempt_limit, base, _failures, _reset, configs = conn.execute(POLICY).fetchone()
            tokens = {name.removeprefix("gateway:"): value for name, value in conn.execute(GATEWAY_TOKENS)}
            claimed = conn.execute(
                CLAIM, {"lease": lease_seconds, "worker": worker, "limit": limit}
            ).fetchall()
        by_name = {c["name"]: c for c in configs}
        for row in claimed:
            try:
                _attempt(db, tenant_id, row, by_name, tokens, attempt_limit, base)
                report.processed += 1
            except OmsError as exc:
                log.info("refund %s skipped: %s", row[0], exc)
            except Exception as exc:
                log.exception("refund %s failed", row[0])
                report.problem(f"refund {row[0]}: {type(exc).__name__}: {exc}"[:300])
    return report


def _attempt(db, tenant_id, row, configs: dict, tokens: dict, limit: int, base: int) -> None:
    refund_id, order_id, name, capture, amount, attempts = row
    rid, attempt = str(refund_id), attempts + 1
    if name not in configs:  # the money went through this gateway; only it can pay it back
        with db.tenant(tenant_id) as conn:
            why = f"the gateway {name} that took the payment is no longer set up"
            conn.execute(POSTPONE, [datetime.now(UTC) + RETRY_LATER, why, refund_id])
        return
    adapter = gw.build(configs[name], tokens.get(name, ""))
    try:
        result = adapter.refund(refund_key(rid), capture, amount)
    except Exception as exc:  # an adapter bug must not lose the refund: try again later
        log.exception("gateway %s raised on a refund", name)
        result = gw.GatewayResult("transient", code="error", message=str(exc)[:200])
    done = datetime.now(UTC)
    outcome_key = f"refund:{rid}:{attempt}:outcome"
    if result.outcome == "succeeded":
        _record(
            db,
            tenant_id,
            order_id,
            outcome_key,
            lambda o: o.refund_sent(rid, attempt, name, result.reference, done),
        )
        return
    final = result.outcome == "declined" or attempt >= limit
    next_at = None if final else done + backoff(base, attempt, rid)
    _record(
        db,
        tenant_id,
        order_id,
        outcome_key,
        lambda o: o.refund_attempt_failed(rid, attempt, name, result.code, result.message, done, next_at),
    )


def list_refunds(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    status: str | None = None,
    order: object = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Refunds through the gateways, newest first: pending, paid back, or failed (settle by hand)."""
    require(actor, "payments.view" if order is None else "orders.view")
    if status not in (None, "pending", "succeeded", "failed"):
        raise ValidationError("status must be pending, succeeded or failed")
    with db.tenant(tenant_id) as conn:
        oid = resolve_order_id(conn, order) if order is not None else None
        return _rows(
            conn.execute(LIST, {"status": status, "order": oid, "limit": max(1, min(int(limit), 1000))})
        )
