"""Charging orders through the tenant's gateways: the commands, and the worker's attempt loop.

A charge is a payment row (folded from PaymentRequested) that the worker claims when due. Each
attempt is two events around one gateway call: PaymentAttemptStarted fixes the gateway and the
idempotency key before the call, and OrderPaid or PaymentAttemptFailed records the answer. A worker
killed between the two leaves the attempt in flight; whoever claims the payment next calls the same
gateway with the same key, so the gateway answers the first charge again instead of charging twice.

Transient failures are retried with exponential backoff and jitter up to the tenant's attempt limit;
a gateway that keeps failing opens its circuit (pybreaker) and the next gateway in priority order
is tried; a decline is final. When the attempts run out the order becomes payment_failed and its
stock is released (the outbox tells the customer and the staff).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker

from core import eventstore as es
from core.batch import BatchReport
from core.commands import Actor, Context, check_key, derived_id, execute, require
from core.db import Database, as_tenant_id
from core.errors import NotFound, OmsError, ValidationError
from core.orders.handlers import order_command, record_order, resolve_order_id
from core.orders.model import IllegalTransition, Order, WarehouseStock, allocate
from core.payments import gateways as gw
from core.tenants import SAVE_SECRET, SETTINGS

log = logging.getLogger("oms.payments")

MAX_BACKOFF = timedelta(hours=6)
JITTER = 0.25  # each delay is stretched by up to a quarter, so retries of many orders spread out

POLICY = (
    "SELECT payment_attempt_limit, payment_backoff_seconds, circuit_failures, circuit_reset_seconds, gateways"
    " FROM tenant_settings"
)
GATEWAY_TOKENS = "SELECT name, value FROM tenant_secrets WHERE name LIKE 'gateway:%%'"
# Claimed for one attempt: the lease keeps other workers off it until the outcome is recorded or
# the lease runs out (the worker died).
CLAIM = (
    "UPDATE payments p SET lease_until = now() + make_interval(secs => %(lease)s), leased_by = %(worker)s"
    " FROM (SELECT id FROM payments WHERE status = 'pending' AND next_attempt_at <= now()"
    " AND (lease_until IS NULL OR lease_until < now()) ORDER BY next_attempt_at LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED) due WHERE p.id = due.id"
    " RETURNING p.id, p.order_id, p.order_number, p.amount, p.currency, p.attempts, p.in_flight,"
    " p.pinned_gateway"
)
POSTPONE = (
    "UPDATE payments SET next_attempt_at = %s, last_error = %s, lease_until = NULL, leased_by = NULL"
    " WHERE id = %s"
)
PUBLISH_CIRCUIT = (
    "INSERT INTO gateway_circuits (tenant_id, gateway, state, failures, opened_at, updated_at)"
    " VALUES (oms_current_tenant(), %s, %s, %s, %s, now()) ON CONFLICT (tenant_id, gateway)"
    " DO UPDATE SET state = excluded.state, failures = excluded.failures, opened_at = excluded.opened_at,"
    " updated_at = now()"
)
RETRY_CONTEXT = (
    "SELECT (SELECT coalesce(json_agg(json_build_array(st.sku, st.warehouse, w.priority,"
    " st.on_hand - st.reserved)), '[]') FROM stock st"
    " JOIN warehouses w ON w.tenant_id = st.tenant_id AND w.code = st.warehouse"
    " WHERE st.sku = ANY(%s) AND w.active), allocation_strategy, reservation_minutes, gateways"
    " FROM tenant_settings"
)
DUE_TENANTS = "SELECT tenant_id FROM oms_platform_tenants_with_due_work() WHERE payments"
HAS_GATEWAYS = "SELECT jsonb_array_length(gateways) > 0 FROM tenant_settings"
LIST = (
    "SELECT p.id, p.order_id, p.order_number, p.amount, p.currency, p.status, p.attempts, p.next_attempt_at,"
    " p.gateway, p.pinned_gateway, p.reference, p.last_error, p.in_flight IS NOT NULL AS in_flight,"
    " p.created_at, p.updated_at FROM payments p WHERE (%(status)s::text IS NULL OR p.status = %(status)s)"
    " AND (%(order)s::uuid IS NULL OR p.order_id = %(order)s) ORDER BY p.updated_at DESC LIMIT %(limit)s"
)
ATTEMPTS = (
    "SELECT a.payment_id, p.order_number, a.attempt, a.gateway, a.idempotency_key, a.outcome, a.code,"
    " a.message, a.started_at, a.finished_at FROM payment_attempts a"
    " JOIN payments p ON p.tenant_id = a.tenant_id AND p.id = a.payment_id"
    " WHERE (%(order)s::uuid IS NULL OR p.order_id = %(order)s)"
    " AND (%(failed)s = false OR a.outcome IN ('declined', 'transient'))"
    " ORDER BY a.started_at DESC LIMIT %(limit)s"
)
CIRCUITS = "SELECT gateway, state, failures, opened_at, updated_at FROM gateway_circuits ORDER BY gateway"


# --- the tenant's gateways ---------------------------------------------------------------------------


def set_gateways(
    db: Database,
    tenant_id: object,
    actor: Actor,
    gateways: list[dict[str, Any]],
    *,
    tokens: dict[str, str] | None = None,
    key: str | None = None,
) -> list[dict[str, Any]]:
    """Replace the tenant's gateways (tried in this order). Tokens are kept out of the event log."""
    if not isinstance(gateways, list) or len(gateways) > 10:
        raise ValidationError("gateways must be a list of at most 10")
    checked = []
    for n, g in enumerate(gateways, 1):
        try:
            checked.append(gw.parse_config(g).model_dump(mode="json"))
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"gateway {n}: {_first_error(exc)}") from None
    names = [g["name"] for g in checked]
    if len(set(names)) != len(names):
        raise ValidationError("each gateway needs its own name")
    tokens = tokens or {}
    if not isinstance(tokens, dict) or any(n not in names for n in tokens):
        raise ValidationError("tokens must be given for gateways in the list, by name")
    for name, token in tokens.items():
        if not isinstance(token, str) or not 1 <= len(token) <= 500 or not token.isprintable():
            raise ValidationError(f"the token for {name} must be 1 to 500 printable characters")

    def handle(ctx: Context) -> list[dict[str, Any]]:
        data = {"gateways": checked, "tokens_set": sorted(tokens)}
        ctx.record(f"tenant-{ctx.tenant_id}", "tenant", [("TenantSettingsChanged", data)], None, SETTINGS)
        for name, token in tokens.items():
            ctx.conn.execute(SAVE_SECRET, [f"gateway:{name}", token])
        return checked

    return execute(db, tenant_id, actor, "settings.manage", key, handle)


def save_gateway(
    db: Database, tenant_id: object, actor: Actor, gateway: dict[str, Any], *, token: str | None = None
) -> list[dict[str, Any]]:
    """Add a gateway (tried after the others) or replace the one of the same name, keeping its place."""
    current = _configured(db, tenant_id, actor)
    name = gateway.get("name") if isinstance(gateway, dict) else None
    if any(g["name"] == name for g in current):
        wanted = [gateway if g["name"] == name else g for g in current]
    else:
        wanted = [*current, gateway]
    return set_gateways(db, tenant_id, actor, wanted, tokens={name: token} if token and name else None)


def remove_gateway(db: Database, tenant_id: object, actor: Actor, name: str) -> list[dict[str, Any]]:
    """Take a gateway off the list; charges pending there are tried on the others."""
    current = _configured(db, tenant_id, actor)
    if not any(g["name"] == name for g in current):
        raise NotFound(f"no gateway '{str(name)[:40]}'")
    return set_gateways(db, tenant_id, actor, [g for g in current if g["name"] != name])


def _configured(db: Database, tenant_id: object, actor: Actor) -> list[dict[str, Any]]:
    require(actor, "settings.manage")
    with db.tenant(tenant_id) as conn:
        return list(conn.execute(POLICY).fetchone()[4])


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg'].removeprefix('Value error, ')}" if where else first["msg"]
    return str(exc)


# --- commands ----------------------------------------------------------------------------------------


def request_payment(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    """Charge a reserved order through the gateways; the worker makes the attempts."""
    key = check_key(key)
    payment_id = str(derived_id(as_tenant_id(tenant_id), key, "payment"))
    when = at or datetime.now(UTC)

    def has_gateways(conn) -> None:
        if not conn.execute(HAS_GATEWAYS).fetchone()[0]:
            raise ValidationError(
                "no payment gateway is set up: add one in Settings, or record a payment by hand"
            )

    result = order_command(
        db,
        tenant_id,
        actor,
        "orders.pay",
        order,
        key,
        lambda o: o.request_payment(payment_id, when),
        check=has_gateways,
    )
    return {**result, "payment_id": payment_id}


def retry_payment(
    db: Database,
    tenant_id: object,
    actor: Actor,
    order: object,
    *,
    key: str | None = None,
    at: datetime | None = None,
) -> dict:
    """Staff try a failed charge again: the stock is reserved again (all of it, or nothing) and a new
    charge starts with a fresh set of attempts."""
    key = check_key(key)
    payment_id = str(derived_id(as_tenant_id(tenant_id), key, "payment"))
    when = at or datetime.now(UTC)

    def handle(ctx: Context) -> dict:
        oid = resolve_order_id(ctx.conn, order)
        events = es.read_stream(ctx.conn, f"order-{oid}")
        ctx.check_replay()
        if not events:
            raise NotFound(f"no order {str(order)[:60]}")
        o = Order.load(events)
        if o.status != "payment_failed":
            raise IllegalTransition(o.number, o.status, "charged again")
        skus = [line["sku"] for line in o.lines]
        stock_rows, strategy, minutes, gateways = ctx.conn.execute(RETRY_CONTEXT, [skus]).fetchone()
        if not gateways:
            raise ValidationError("no payment gateway is set up: add one in Settings")
        stock: dict[str, list[WarehouseStock]] = {}
        for sku, wh, priority, available in stock_rows:
            stock.setdefault(sku, []).append(WarehouseStock(wh, priority, available))
        allocations, short = allocate({x["sku"]: x["quantity"] for x in o.lines}, stock, strategy)
        if short:
            lines = ", ".join(
                f"{s['sku']} (wanted {s['requested']}, available {s['available']})" for s in short
            )
            raise ValidationError(f"order #{o.number} cannot be charged again: not enough stock of {lines}")
        new = o.retry_payment(payment_id, allocations, when + timedelta(minutes=minutes), when)
        record_order(ctx, oid, new, o.version)
        return {"order_id": oid, "number": o.number, "status": new[-1][1]["status"], "payment_id": payment_id}

    return execute(db, tenant_id, actor, "orders.pay", key, handle)


# --- the worker's attempts -----------------------------------------------------------------------------


class _Transient(Exception):
    """Raised inside the circuit breaker so that it counts a transient failure."""

    def __init__(self, result: gw.GatewayResult):
        self.result = result


@dataclass
class _Gateway:
    adapter: gw.Gateway
    breaker: pybreaker.CircuitBreaker

    def is_open(self, now: datetime) -> bool:
        opened = self.breaker._state_storage.opened_at
        return (
            self.breaker.current_state == "open"
            and opened is not None
            and (now < opened + timedelta(seconds=self.breaker.reset_timeout))
        )

    def reopens_at(self) -> datetime:
        return self.breaker._state_storage.opened_at + timedelta(seconds=self.breaker.reset_timeout)


# Adapters and breakers live as long as the worker process: a circuit remembers failures across batches.
_GATEWAYS: dict[tuple, _Gateway] = {}
_LOCK = threading.Lock()


def _gateway(tenant_id: uuid.UUID, config: dict, token: str, failures: int, reset: int) -> _Gateway:
    ident = (tenant_id, json.dumps(config, sort_keys=True), token)
    with _LOCK:
        g = _GATEWAYS.get(ident)
        if g is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=failures,
                reset_timeout=reset,
                exclude=[lambda e: not isinstance(e, _Transient)],
                name=config["name"],
                throw_new_error_on_trip=False,
            )
            g = _GATEWAYS[ident] = _Gateway(gw.build(config, token), breaker)
        g.breaker.fail_max, g.breaker.reset_timeout = failures, reset
        return g


def backoff(base_seconds: float, attempt: int, payment_id: str) -> timedelta:
    """Delay before attempt+1: base x 2^(attempt-1), stretched by up to JITTER (seeded by the payment,
    so the schedule of one payment is reproducible), never more than MAX_BACKOFF."""
    jitter = 1 + JITTER * random.Random(f"{payment_id}:{attempt}").random()
    return min(timedelta(seconds=base_seconds * 2 ** (attempt - 1) * jitter), MAX_BACKOFF)


def _call(g: _Gateway, key: str, amount: int, currency: str, reference: str) -> gw.GatewayResult | None:
    """One charge through the gateway's breaker; None when the circuit refused without calling."""
    called = False

    def attempt() -> gw.GatewayResult:
        nonlocal called
        called = True
        try:
            result = gw.charge(g.adapter, key, amount, currency, reference)
        except Exception as exc:  # an adapter bug must not lose the attempt: record it as uncertain
            log.exception("gateway %s raised", g.adapter.name)
            result = gw.GatewayResult("transient", code="error", message=str(exc)[:200], uncertain=True)
        if result.outcome == "transient":
            raise _Transient(result)
        return result

    try:
        return g.breaker.call(attempt)
    except _Transient as failure:
        return failure.result
    except pybreaker.CircuitBreakerError:
        if called:  # cannot happen with throw_new_error_on_trip=False; kept safe anyway
            return gw.GatewayResult("transient", code="circuit_open", message="circuit opened")
        return None


def process_payments(
    db: Database, worker: str, lease_seconds: float, limit: int = 20, only: list | None = None
) -> BatchReport:
    """Make one attempt on each due payment of every tenant (or of `only` these), claimed so that
    workers never share one."""
    report = BatchReport()
    with db.connection() as conn:
        due = [r[0] for r in conn.execute(DUE_TENANTS) if only is None or r[0] in only]
    for tenant_id in due:
        _process_tenant(db, tenant_id, worker, lease_seconds, limit, report)
    return report


def _process_tenant(
    db: Database, tenant_id: uuid.UUID, worker: str, lease: float, limit: int, report: BatchReport
) -> None:
    with db.tenant(tenant_id) as conn:
        attempts_limit, base, failures, reset, configs = conn.execute(POLICY).fetchone()
        tokens = {name.removeprefix("gateway:"): value for name, value in conn.execute(GATEWAY_TOKENS)}
        claimed = conn.execute(CLAIM, {"lease": lease, "worker": worker, "limit": limit}).fetchall()
    gateways = {
        c["name"]: _gateway(tenant_id, c, tokens.get(c["name"], ""), failures, reset) for c in configs
    }
    for row in claimed:
        try:
            _attempt(db, tenant_id, row, gateways, attempts_limit, base)
            report.processed += 1
        except OmsError as exc:  # the order moved on (e.g. paid by another worker after a lease ran out)
            log.info("payment %s skipped: %s", row[0], exc)
        except Exception as exc:
            log.exception("payment %s failed", row[0])
            report.problem(f"payment for order #{row[2]}: {type(exc).__name__}: {exc}"[:300])
    with db.tenant(tenant_id) as conn, conn.cursor() as cur:
        cur.executemany(
            PUBLISH_CIRCUIT,
            [
                (name, g.breaker.current_state, g.breaker.fail_counter, g.breaker._state_storage.opened_at)
                for name, g in gateways.items()
            ],
        )


def _attempt(
    db: Database, tenant_id: uuid.UUID, row: tuple, gateways: dict[str, _Gateway], limit: int, base: int
) -> None:
    payment_id, order_id, number, amount, currency, attempts, in_flight, pinned = row
    pid, now = str(payment_id), datetime.now(UTC)
    if in_flight:  # a worker died mid-call: ask the same gateway again with the same key
        name, key, attempt = in_flight["gateway"], in_flight["idempotency_key"], in_flight["attempt"]
        g = gateways.get(name)
        if g is None or g.is_open(now):
            _postpone(db, tenant_id, pid, now, g, f"{name} unavailable for the attempt in flight")
            return
    else:
        candidates = [pinned] if pinned else list(gateways)
        name = next((n for n in candidates if n in gateways and not gateways[n].is_open(now)), None)
        if name is None:
            closed = [gateways[n] for n in candidates if n in gateways]
            _postpone(
                db,
                tenant_id,
                pid,
                now,
                min(closed, key=_Gateway.reopens_at, default=None),
                "every gateway's circuit is open" if closed else "no gateway is set up",
            )
            return
        g, attempt, key = gateways[name], attempts + 1, f"{pid}:{name}"
        _record(
            db,
            tenant_id,
            order_id,
            f"payment:{pid}:{attempt}:start",
            lambda o: o.attempt_started(pid, attempt, name, key, now),
        )
    result = _call(g, key, amount, currency.strip(), f"order-{number}")
    if result is None:  # the circuit opened since we chose: try again when it lets a call through
        _postpone(db, tenant_id, pid, now, g, f"{name}'s circuit is open")
        return
    done = datetime.now(UTC)
    outcome_key = f"payment:{pid}:{attempt}:outcome"
    if result.outcome == "succeeded":
        _record(
            db,
            tenant_id,
            order_id,
            outcome_key,
            lambda o: o.pay(amount, f"gateway:{name}", result.reference, done, payment_id=pid),
        )
        return
    if result.outcome == "declined" or attempt >= limit:
        next_at = None
    elif g.is_open(done) and not result.uncertain and not pinned and len(gateways) > 1:
        next_at = done  # the circuit just opened: fail over to the next gateway now
    else:
        next_at = done + backoff(base, attempt, pid)
    _record(
        db,
        tenant_id,
        order_id,
        outcome_key,
        lambda o: o.attempt_failed(
            pid,
            attempt,
            name,
            result.outcome,
            result.code,
            result.message,
            done,
            next_at,
            uncertain=result.uncertain,
        ),
    )


def _record(db: Database, tenant_id: uuid.UUID, order_id: uuid.UUID, key: str, decide) -> None:
    from core.commands import SYSTEM

    order_command(db, tenant_id, SYSTEM, "orders.pay", str(order_id), key, decide)


def _postpone(
    db: Database, tenant_id: uuid.UUID, pid: str, now: datetime, g: _Gateway | None, why: str
) -> None:
    when = g.reopens_at() if g is not None and g.is_open(now) else now + timedelta(seconds=30)
    with db.tenant(tenant_id) as conn:
        conn.execute(POSTPONE, [when, why, pid])


# --- what the app shows ----------------------------------------------------------------------------------


def _rows(cur) -> list[dict[str, Any]]:
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur]


def list_payments(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    status: str | None = None,
    order: object = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    require(actor, "payments.view" if order is None else "orders.view")
    if status not in (None, "pending", "succeeded", "failed"):
        raise ValidationError("status must be pending, succeeded or failed")
    with db.tenant(tenant_id) as conn:
        oid = resolve_order_id(conn, order) if order is not None else None
        return _rows(conn.execute(LIST, {"status": status, "order": oid, "limit": min(int(limit), 1000)}))


def list_attempts(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    order: object = None,
    failed_only: bool = False,
    limit: int = 200,
) -> list[dict[str, Any]]:
    require(actor, "payments.view" if order is None else "orders.view")
    with db.tenant(tenant_id) as conn:
        oid = resolve_order_id(conn, order) if order is not None else None
        return _rows(
            conn.execute(ATTEMPTS, {"order": oid, "failed": failed_only, "limit": min(int(limit), 1000)})
        )


def circuits(db: Database, tenant_id: object, actor: Actor) -> list[dict[str, Any]]:
    require(actor, "payments.view")
    with db.tenant(tenant_id) as conn:
        return _rows(conn.execute(CIRCUITS))


def gateway_settings(db: Database, tenant_id: object, actor: Actor) -> dict[str, Any]:
    """The gateways in priority order (with whether a token is set) and the retry policy."""
    require(actor, "payments.view")
    with db.tenant(tenant_id) as conn:
        limit, base, failures, reset, configs = conn.execute(POLICY).fetchone()
        tokens = {name.removeprefix("gateway:") for name, _ in conn.execute(GATEWAY_TOKENS)}
    return {
        "gateways": [{**c, "token_set": c["name"] in tokens} for c in configs],
        "payment_attempt_limit": limit,
        "payment_backoff_seconds": base,
        "circuit_failures": failures,
        "circuit_reset_seconds": reset,
    }
