"""Delivering the outbox: the worker claims due rows, sends them, and marks what happened.

A row is claimed with a lease (FOR UPDATE SKIP LOCKED, so workers never share one), sent, then marked
sent, or failed with its error and a later try (exponential backoff), or dead after the tenant's
attempt limit. A worker killed after sending and before marking leaves the lease to run out and the
row is sent again with the same dedupe key: at least once, never lost.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx

from core.batch import BatchReport
from core.commands import Actor, Context, execute, require
from core.db import Database
from core.errors import NotFound, ValidationError
from core.notifications import channels as ch
from core.notifications import templates
from core.notifications.outbox import OUTBOX

log = logging.getLogger("oms.notifications")

BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=1)

DUE_TENANTS = "SELECT tenant_id FROM oms_platform_tenants_with_due_work() WHERE notifications"
CLAIM = (
    "UPDATE notifications n SET lease_until = now() + make_interval(secs => %(lease)s),"
    " leased_by = %(worker)s"
    " FROM (SELECT id FROM notifications WHERE status = 'queued' AND next_attempt_at <= now()"
    " AND (lease_until IS NULL OR lease_until < now()) ORDER BY next_attempt_at LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED) due WHERE n.id = due.id"
    " RETURNING n.id, n.dedupe_key, n.topic, n.channel, n.recipient, n.context, n.attempts"
)
SHOP = "SELECT name FROM tenants WHERE id = oms_current_tenant()"
SENT = (
    "UPDATE notifications SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL,"
    " lease_until = NULL, leased_by = NULL WHERE id = ANY(%s) AND leased_by = %s"
)
FAILED = (
    "UPDATE notifications SET attempts = attempts + 1, last_error = %(error)s, lease_until = NULL,"
    " leased_by = NULL, status = CASE WHEN attempts + 1 >= %(limit)s THEN 'dead' ELSE 'queued' END,"
    " next_attempt_at = now() + least(%(base)s * power(2, attempts), %(cap)s) * (1 + random() / 4)"
    " * interval '1 second'"
    " WHERE id = %(id)s AND leased_by = %(worker)s"
)
LIST = (
    "SELECT id, topic, channel, recipient, order_id, context->>'order_number' AS order_number, status,"
    " attempts, last_error, next_attempt_at, created_at, sent_at FROM notifications"
    " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
    " AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
    " AND (%(order)s::uuid IS NULL OR order_id = %(order)s)"
    " ORDER BY created_at DESC LIMIT %(limit)s"
)
COUNTS = "SELECT status, count(*) FROM notifications GROUP BY status"
GET = "SELECT id, status, channel FROM notifications WHERE id = %s"


def process_notifications(
    db: Database, worker: str, lease_seconds: float, limit: int = 200, only: list | None = None
) -> BatchReport:
    """Send one batch of due notifications for every tenant that has some (or of `only` these)."""
    report = BatchReport()
    with db.connection() as conn:
        due = [r[0] for r in conn.execute(DUE_TENANTS) if only is None or r[0] in only]
    for tenant_id in due:
        try:
            _dispatch_tenant(db, tenant_id, worker, lease_seconds, limit, report)
        except Exception as exc:
            log.exception("notifications of tenant %s", tenant_id)
            report.problem(f"{type(exc).__name__}: {exc}"[:300])
    return report


def _dispatch_tenant(
    db: Database, tenant_id: uuid.UUID, worker: str, lease: float, limit: int, report: BatchReport
) -> None:
    with db.tenant(tenant_id) as conn:
        claimed = conn.execute(CLAIM, {"lease": lease, "worker": worker, "limit": limit}).fetchall()
        channels, attempt_limit = conn.execute(ch.SETTINGS_ROW).fetchone()
        secrets = dict(conn.execute(ch.CHANNEL_SECRETS).fetchall())
        shop = conn.execute(SHOP).fetchone()[0]
        tmpl = templates.load(conn)
    sent: list[uuid.UUID] = []
    failed: list[tuple[uuid.UUID, str]] = []
    mailer: ch.Mailer | None = None
    client: httpx.Client | None = None
    broken: dict[str, str] = {}  # channel -> error that will fail the rest of the batch the same way
    try:
        for nid, dedupe, topic, channel, recipient, context, _attempts in claimed:
            if channel in broken:
                failed.append((nid, broken[channel]))
                continue
            settings = channels.get(channel)
            if channel != "in_app" and settings is None:
                failed.append((nid, f"the {channel} channel is not set up (Settings > Notifications)"))
                continue
            try:
                message = templates.render(tmpl[topic], {"shop": shop, **context})
            except Exception as exc:  # a tenant's template that breaks on this row's data
                failed.append((nid, f"the {topic} template does not render: {exc}"[:500]))
                continue
            try:
                if channel == "email":
                    mailer = mailer or ch.Mailer(settings, secrets.get("email:password", ""))
                    mailer.send(recipient, message, dedupe, shop)
                elif channel in ("sms", "push"):
                    client = client or httpx.Client()
                    payload = {"to": recipient, "dedupe_key": dedupe, "topic": topic}
                    if channel == "sms":
                        payload["text"] = message.text
                    else:
                        payload |= {"title": message.subject, "body": message.text}
                    ch.post_webhook(client, settings, secrets.get(f"{channel}:token", ""), payload, dedupe)
                # in_app: the row is the message; the dashboard reads it
                sent.append(nid)
            except Exception as exc:
                error = ch.describe(exc, channel, settings)
                failed.append((nid, error))
                if channel == "email" and (mailer is None or mailer.smtp is None):
                    broken[channel] = error  # could not even connect: the rest would fail alike
                elif isinstance(exc, httpx.TransportError | httpx.HTTPStatusError) and (
                    not isinstance(exc, httpx.HTTPStatusError) or exc.response.status_code in (401, 403)
                ):
                    broken[channel] = error
    finally:
        if mailer is not None:
            mailer.close()
        if client is not None:
            client.close()
    with db.tenant(tenant_id) as conn:
        if sent:
            conn.execute(SENT, [sent, worker])
        with conn.cursor() as cur:
            cur.executemany(
                FAILED,
                [
                    {
                        "error": error,
                        "limit": attempt_limit,
                        "base": BASE_DELAY.total_seconds(),
                        "cap": MAX_DELAY.total_seconds(),
                        "id": nid,
                        "worker": worker,
                    }
                    for nid, error in failed
                ],
            )
    report.processed += len(sent) + len(failed)
    for error in sorted({e for _, e in failed}):
        report.problem(error)


# --- what the app shows, and resending ------------------------------------------------------------------


def list_notifications(
    db: Database,
    tenant_id: object,
    actor: Actor,
    *,
    status: str | None = None,
    channel: str | None = None,
    order: object = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    require(actor, "notifications.view" if order is None else "orders.view")
    if status not in (None, "queued", "sent", "dead"):
        raise ValidationError("status must be queued, sent or dead")
    if channel not in (None, *ch.CHANNELS):
        raise ValidationError(f"channel must be one of {', '.join(ch.CHANNELS)}")
    from core.orders.handlers import resolve_order_id

    with db.tenant(tenant_id) as conn:
        oid = resolve_order_id(conn, order) if order is not None else None
        cur = conn.execute(
            LIST, {"status": status, "channel": channel, "order": oid, "limit": max(1, min(int(limit), 1000))}
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]


def counts(db: Database, tenant_id: object, actor: Actor) -> dict[str, int]:
    """How many notifications are queued, sent and dead."""
    require(actor, "notifications.view")
    with db.tenant(tenant_id) as conn:
        found = dict(conn.execute(COUNTS).fetchall())
    return {s: found.get(s, 0) for s in ("queued", "sent", "dead")}


def resend(
    db: Database, tenant_id: object, actor: Actor, notification_id: object, *, key: str | None = None
) -> dict:
    """Queue a dead (or sent) notification again, with a fresh set of attempts and the same dedupe key."""
    try:
        nid = uuid.UUID(str(notification_id))
    except ValueError:
        raise ValidationError(f"'{str(notification_id)[:60]}' is not a notification id") from None

    def handle(ctx: Context) -> dict:
        row = ctx.conn.execute(GET, [nid]).fetchone()
        ctx.check_replay()
        if not row:
            raise NotFound(f"no notification {nid}")
        if row[1] == "queued":
            raise ValidationError("this notification is still queued; it will be sent on its next try")
        data = {"notification_id": str(nid), "previous_status": row[1], "channel": row[2]}
        ctx.record(f"notification-{nid}", "notification", [("NotificationResent", data)], None, OUTBOX)
        return {"notification_id": str(nid), "status": "queued"}

    return execute(db, tenant_id, actor, "notifications.manage", key, handle)
