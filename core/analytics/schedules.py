"""Summaries by email on a schedule, and alerts when a KPI passes a threshold: the reports go to the
managers instead of the managers going to the reports.

- Someone who may read reports subscribes an email address to a daily or weekly summary; owners and
  managers may also have alerts emailed (ReportSubscriptionChanged).
- An owner or manager sets alert rules: a KPI of the Reports page above or below a threshold over a
  window (AlertRuleSaved, AlertRuleRemoved).
- The worker's `scheduled_reports` job (`run_due`) queues each due summary with its figures
  (ReportSummaryQueued) and records AlertTriggered when a rule's KPI goes past its threshold and
  AlertCleared when it is back. The figures come from the analytic store through `reports.kpis`, so an
  email says what the Reports page says; the outbox turns the events into messages in their transaction.

A summary covers the last whole local day (daily) or Monday-to-Sunday week (weekly) and goes out from
SEND_AT local time on, once per period and subscriber (the period is the command's key). An alert
fires once per breach, and again only after it has cleared.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core import eventstore as es
from core.analytics import kpis
from core.batch import BatchReport
from core.catalog import text_field
from core.commands import PERMISSIONS, SYSTEM, Actor, Context, derived_id, execute, require
from core.customers import EMAIL
from core.db import Database
from core.errors import NotFound, ValidationError
from core.money import money
from core.notifications.outbox import OUTBOX
from core.projections import Projection
from core.tenants import Tenant, list_tenants

FREQUENCIES = ("off", "daily", "weekly")
WINDOWS = ("today", "7 days", "30 days")
DIRECTIONS = ("above", "below")
SEND_AT = time(6, 0)  # local: the night's last orders have long reached the analytic store
MAX_COUNT = 10**12  # the largest threshold for counts and money (minor units)

SUBSCRIPTION = "SELECT email, frequency, alerts FROM report_subscriptions WHERE username = %s"
USER = "SELECT role, active FROM users WHERE username = %s"
EMAIL_READY = "SELECT notification_channels ? 'email' FROM tenant_settings"
# Subscribers still allowed to read reports (a deactivated user or one moved to clerk gets nothing).
DUE = (
    "SELECT s.username, s.email, s.frequency, s.last_summary_start FROM report_subscriptions s"
    " JOIN users u ON u.tenant_id = s.tenant_id AND u.username = s.username"
    " WHERE s.frequency <> 'off' AND u.active AND u.role = ANY(%s)"
)
RULES = (
    "SELECT id, metric, direction, threshold, window_name, breached_at, last_value, created_at"
    " FROM alert_rules ORDER BY created_at, id"
)
RULE = "SELECT breached_at FROM alert_rules WHERE id = %s"
SUBSCRIBE = (
    "INSERT INTO report_subscriptions (tenant_id, username, email, frequency, alerts, updated_at)"
    " VALUES (oms_current_tenant(), %(username)s, %(email)s, %(frequency)s, %(alerts)s, %(at)s)"
    " ON CONFLICT (tenant_id, username) DO UPDATE SET email = excluded.email,"
    " frequency = excluded.frequency, alerts = excluded.alerts, updated_at = excluded.updated_at"
)
SUMMARY_QUEUED = "UPDATE report_subscriptions SET last_summary_start = %s WHERE username = %s"
SAVE_RULE = (
    "INSERT INTO alert_rules (tenant_id, id, metric, direction, threshold, window_name, created_at,"
    " updated_at) VALUES (oms_current_tenant(), %(rule_id)s, %(metric)s, %(direction)s, %(threshold)s,"
    " %(window)s, %(at)s, %(at)s) ON CONFLICT (tenant_id, id) DO UPDATE SET metric = excluded.metric,"
    " direction = excluded.direction, threshold = excluded.threshold, window_name = excluded.window_name,"
    " breached_at = NULL, last_value = NULL, updated_at = excluded.updated_at"
)
DROP_RULE = "DELETE FROM alert_rules WHERE id = %s"
# The rule's state and its stream's version read in one statement (one snapshot): read apart, another
# worker's change could commit between them, and a decision on the old state would pass the version check.
RULE_NOW = (
    "SELECT r.breached_at, r.as_of, s.version FROM alert_rules r"
    " JOIN streams s ON s.tenant_id = r.tenant_id AND s.stream_id = 'alert-' || r.id::text WHERE r.id = %s"
)
RULE_STATE = "UPDATE alert_rules SET breached_at = %s, last_value = %s, as_of = %s WHERE id = %s"


def _stream(tenant_id: uuid.UUID) -> str:
    return f"report-subscriptions-{tenant_id}"


# Subscriptions


def subscription(db: Database, tenant_id: object, actor: Actor) -> dict[str, Any]:
    """The signed-in person's own subscription (frequency 'off' and no alerts when they have none), and
    whether the shop can send email at all (email_ready)."""
    require(actor, "reports.view")
    with db.tenant(tenant_id) as conn:
        row = conn.execute(SUBSCRIPTION, [actor.name]).fetchone()
        ready = bool(conn.execute(EMAIL_READY).fetchone()[0])
    mine = dict(zip(("email", "frequency", "alerts"), row, strict=True)) if row else dict(_NONE)
    return mine | {"email_ready": ready}


_NONE = {"email": "", "frequency": "off", "alerts": False}


def subscribe(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    email: str,
    frequency: str,
    alerts: bool = False,
    key: str | None = None,
) -> dict[str, Any]:
    """Have the summaries (and, for owners and managers, the alerts) emailed to `email`; frequency
    'off' with no alerts unsubscribes. One subscription per person: it replaces the last one."""
    if frequency not in FREQUENCIES:
        raise ValidationError(f"How often must be one of: {', '.join(FREQUENCIES)}.")
    if not isinstance(alerts, bool):
        raise ValidationError("Alerts must be on or off.")
    if alerts and not actor.can("alerts.manage"):  # alerts go to those who may set them
        raise ValidationError("Alerts go to owners and managers only.")
    wanted = frequency != "off" or alerts
    email = text_field(email, "email", 254, required=wanted)
    if email and not EMAIL.fullmatch(email):
        raise ValidationError(f"'{email[:60]}' is not an email address")

    def handle(ctx: Context) -> dict[str, Any]:
        user = ctx.conn.execute(USER, [actor.name]).fetchone()
        if user is None or not user[1]:
            raise ValidationError("Only a signed-in user of the shop can subscribe, and only themselves.")
        if wanted and not ctx.conn.execute(EMAIL_READY).fetchone()[0]:
            raise ValidationError(
                "The shop has no email channel yet: the owner sets it up in Settings > Notifications."
            )
        data = {"username": actor.name, "email": email, "frequency": frequency, "alerts": alerts}
        ctx.record(
            _stream(ctx.tenant_id),
            "report_subscriptions",
            [("ReportSubscriptionChanged", data)],
            None,
            SCHEDULES,
        )
        return data

    return execute(db, tenant_id, actor, "reports.view", key, handle)


def summary_period(frequency: str, local_now: datetime) -> kpis.Period | None:
    """The period a summary sent now covers: yesterday, or last Monday-to-Sunday week; None before
    SEND_AT local time, when the summary of the period that just ended is not due yet."""
    today = local_now.date()
    if local_now.time() < SEND_AT:
        today -= timedelta(days=1)  # still the previous day's turn
    if frequency == "daily":
        return kpis.Period(today - timedelta(days=1), today)
    if frequency == "weekly":
        monday = today - timedelta(days=today.weekday())
        return kpis.Period(monday - timedelta(days=7), monday)
    return None


def _summary(con, tz: str, period: kpis.Period) -> dict[str, Any]:
    from core.analytics import reports

    now, before = reports.kpis(con, tz, period), reports.kpis(con, tz, period.previous())
    top = reports.top_products(con, tz, period, limit=5)
    return {
        "figures": now,
        "previous": before,
        "top_products": [
            {"sku": r.sku, "name": r.name, "units": int(r.units), "revenue": int(r.revenue)}
            for r in top.itertuples()
        ],
    }


def queue_summary(
    db: Database, tenant_id: object, username: str, email: str, frequency: str, period: kpis.Period, figures
) -> dict[str, Any]:
    """Record one summary for its period (a second worker doing the same is answered by the key)."""
    data = {
        "username": username,
        "email": email,
        "frequency": frequency,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
        **figures,
    }

    def handle(ctx: Context) -> dict[str, Any]:
        ctx.record(
            _stream(ctx.tenant_id),
            "report_subscriptions",
            [("ReportSummaryQueued", data)],
            None,
            SCHEDULES,
            OUTBOX,
        )
        return {"username": username, "period_start": data["period_start"]}

    key = f"summary:{username}:{frequency}:{period.start.isoformat()}"
    return execute(db, tenant_id, SYSTEM, "reports.view", key, handle)


# Alert rules


@dataclass(frozen=True)
class AlertRule:
    id: uuid.UUID
    metric: str
    direction: str
    threshold: float
    window: str
    breached_at: datetime | None
    last_value: float | None
    created_at: datetime

    def breached_by(self, value: float | None) -> bool:
        if value is None:  # nothing to measure (no orders, no attempts): no alarm
            return False
        return value > self.threshold if self.direction == "above" else value < self.threshold

    def describe(self, currency: str) -> str:
        """'Payment failure rate above 10.0% over 7 days'."""
        limit = kpis.kpi_value(self.metric, self.threshold, lambda m: money(m, currency))
        over = "today" if self.window == "today" else f"over {self.window}"
        return f"{kpis.KPI_LABELS[self.metric]} {self.direction} {limit} {over}"


def alert_rules(db: Database, tenant_id: object, actor: Actor) -> list[AlertRule]:
    require(actor, "reports.view")
    with db.tenant(tenant_id) as conn:
        return [AlertRule(*r) for r in conn.execute(RULES)]


def _rule_id(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("There is no such alert rule.") from None


def _must_exist(ctx: Context, rule_id: uuid.UUID) -> None:
    """Row security hides another shop's rules: theirs are not found either."""
    if ctx.conn.execute(RULE, [rule_id]).fetchone() is None:
        raise NotFound("There is no such alert rule.")


def _threshold(metric: str, threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ValidationError("The threshold must be a number.")
    if metric.endswith("_rate"):
        if not 0 <= threshold <= 1:
            raise ValidationError("A rate's threshold must be between 0% and 100%.")
        return float(threshold)
    if not 0 <= threshold <= MAX_COUNT or threshold != int(threshold):
        raise ValidationError(f"The threshold must be a whole number from 0 to {MAX_COUNT:,}.")
    return float(threshold)


def save_alert(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    metric: str,
    direction: str,
    threshold: float,
    window: str,
    rule_id: object = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Add an alert rule, or change the one named by rule_id (it starts again as not breached).
    Thresholds are in the KPI's own unit: a fraction for rates, minor units for money."""
    if metric not in kpis.KPI_NAMES:
        raise ValidationError(f"Watch one of: {', '.join(kpis.KPI_LABELS.values())}.")
    if direction not in DIRECTIONS:
        raise ValidationError("Alert when the figure goes above or below the threshold.")
    if window not in WINDOWS:
        raise ValidationError(f"Measure over one of: {', '.join(WINDOWS)}.")
    limit = _threshold(metric, threshold)
    rid = None if rule_id is None else _rule_id(rule_id)

    def handle(ctx: Context) -> dict[str, Any]:
        if rid is not None:
            _must_exist(ctx, rid)
        the_id = rid or derived_id(ctx.tenant_id, ctx.key, "alert_rule")
        data = {
            "rule_id": str(the_id),
            "metric": metric,
            "direction": direction,
            "threshold": limit,
            "window": window,
        }
        ctx.record(f"alert-{the_id}", "alert_rule", [("AlertRuleSaved", data)], None, SCHEDULES)
        return data

    return execute(db, tenant_id, actor, "alerts.manage", key, handle)


def remove_alert(
    db: Database, tenant_id: object, actor: Actor, rule_id: object, key: str | None = None
) -> dict:
    rid = _rule_id(rule_id)

    def handle(ctx: Context) -> dict[str, Any]:
        _must_exist(ctx, rid)
        ctx.record(
            f"alert-{rid}", "alert_rule", [("AlertRuleRemoved", {"rule_id": str(rid)})], None, SCHEDULES
        )
        return {"rule_id": str(rid), "removed": True}

    return execute(db, tenant_id, actor, "alerts.manage", key, handle)


def _set_state(
    db: Database, tenant: Tenant, rule: AlertRule, value: float | None, period, as_of: int
) -> bool:
    """Record that the rule's KPI went past its threshold (or came back); False if another worker
    already did, or decided on a store holding more events than this one (as_of: a worker whose copy
    is behind must not flip the alert back). The stream version makes two workers' decisions land once."""
    breached = rule.breached_by(value)
    stream = f"alert-{rule.id}"

    def handle(ctx: Context) -> dict[str, Any]:
        row = ctx.conn.execute(RULE_NOW, [rule.id]).fetchone()
        if row is None or (row[0] is not None) == breached or row[1] > as_of:  # removed, recorded, newer
            return {"changed": False}
        data = {
            "rule_id": str(rule.id),
            "metric": rule.metric,
            "direction": rule.direction,
            "threshold": rule.threshold,
            "window": rule.window,
            "value": value,
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
            "rule": rule.describe(tenant.currency),
            "currency": tenant.currency,
            "as_of": as_of,
        }
        event = "AlertTriggered" if breached else "AlertCleared"
        ctx.record(stream, "alert_rule", [(event, data)], row[2], SCHEDULES, OUTBOX)
        return {"changed": True}

    return execute(db, tenant.id, SYSTEM, "alerts.manage", None, handle)["changed"]


# The worker's job


def run_due(
    db: Database, now: datetime | None = None, data_dir=None, only: list | None = None
) -> BatchReport:
    """Queue every due summary and check every alert rule, in every tenant (or in `only` these). A
    tenant's failure is reported and the others are still served."""
    now = now or datetime.now(UTC)
    report = BatchReport()
    for tenant in list_tenants(db):
        if only is not None and tenant.id not in only:
            continue
        try:
            report.processed += _run_tenant(db, tenant, now, data_dir)
        except Exception as exc:  # noqa: BLE001 - shown in the heartbeat, tried again next run
            report.problem(f"{tenant.slug}: {type(exc).__name__}: {exc}"[:200])
    return report


def _run_tenant(db: Database, tenant: Tenant, now: datetime, data_dir) -> int:
    # DuckDB, pyarrow and pandas load only here: the read model below is folded by every process that
    # records events, and most of them never read the analytic store.
    from core.analytics import reports, store

    with db.tenant(tenant.id) as conn:
        subscribers = conn.execute(DUE, [sorted(PERMISSIONS["reports.view"])]).fetchall()
        rules = [AlertRule(*r) for r in conn.execute(RULES)]
    local_now = now.astimezone(ZoneInfo(tenant.time_zone))
    due = []
    for username, email, frequency, last_start in subscribers:
        period = summary_period(frequency, local_now)
        if period is not None and period.start != last_start:
            due.append((username, email, frequency, period))
    if not due and not rules:
        return 0
    store.sync(db, tenant.id, data_dir)  # what the worker's analytics job would take next second
    key = (tenant.id, str(data_dir))
    reader = _readers.get(key) or _readers.setdefault(key, store.Reader(tenant.id, data_dir))
    con, as_of = reader.cursor_at()  # loaded once per process, then only the new segments each minute
    done = 0
    try:
        summaries: dict[tuple[str, date], dict] = {}
        for username, email, frequency, period in due:
            if (frequency, period.start) not in summaries:
                figures = _summary(con, tenant.time_zone, period)
                summaries[(frequency, period.start)] = figures | {"currency": tenant.currency}
            queue_summary(
                db, tenant.id, username, email, frequency, period, summaries[(frequency, period.start)]
            )
            done += 1
        for rule in rules:
            period = kpis.preset(rule.window, local_now.date())
            value = reports.kpis(con, tenant.time_zone, period)[rule.metric]
            if rule.breached_by(value) != (rule.breached_at is not None):
                done += _set_state(db, tenant, rule, value, period, as_of)
    finally:
        con.close()
    return done


_readers: dict[tuple, Any] = {}  # (tenant, store directory): store.Reader, kept by the worker process


# The read model


class SchedulesProjection(Projection):
    name = "report_schedules"
    tables = ("report_subscriptions", "alert_rules")
    kind = "inline"

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d, at = event.data, event.recorded_at
        match event.event_type:
            case "ReportSubscriptionChanged":
                conn.execute(SUBSCRIBE, d | {"at": at})
            case "ReportSummaryQueued":
                conn.execute(SUMMARY_QUEUED, [date.fromisoformat(d["period_start"]), d["username"]])
            case "AlertRuleSaved":
                conn.execute(SAVE_RULE, d | {"at": at})
            case "AlertRuleRemoved":
                conn.execute(DROP_RULE, [d["rule_id"]])
            case "AlertTriggered":
                conn.execute(RULE_STATE, [at, d["value"], d["as_of"], d["rule_id"]])
            case "AlertCleared":
                conn.execute(RULE_STATE, [None, d["value"], d["as_of"], d["rule_id"]])


SCHEDULES = SchedulesProjection()
