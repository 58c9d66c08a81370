"""The outbox: notification rows written by the transaction that records their cause.

Folded inline after the order and stock read models (it reads the order, the customer's channel
preferences and the stock levels they left). A row is made once per cause and channel: its
dedupe_key is the causing event's id and the channel. The outbox is not rebuilt from the log,
which would send everything again; what was sent is kept, not deleted.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from core import eventstore as es
from core.analytics import kpis
from core.commands import PERMISSIONS
from core.inventory import StockProjection
from core.money import money
from core.projections import Projection

# Customer-facing topics, by the order event that causes them.
TOPICS = {
    "OrderReserved": "order_reserved",
    "OrderPaid": "order_paid",
    "OrderShipped": "order_shipped",
    "OrderDelivered": "order_delivered",
    "OrderCancelled": "order_cancelled",
    "PaymentFailed": "payment_failed",
    "RefundIssued": "refund_issued",
}
# Topics the staff also see in the app.
STAFF_TOPICS = ("payment_failed", "low_stock", "alert")

# One row per channel the customer wants and the tenant has set up (in-app: the staff, always).
FOR_CUSTOMER = (
    "INSERT INTO notifications (tenant_id, dedupe_key, topic, channel, recipient, order_id, context)"
    " SELECT oms_current_tenant(), %(event_id)s || ':' || ch.channel, %(topic)s, ch.channel, ch.recipient,"
    " o.id, jsonb_build_object('order_number', o.number, 'total', o.total, 'currency', o.currency,"
    " 'customer_name', c.name, 'status', o.status) || %(extra)s::jsonb"
    " FROM orders o JOIN customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id"
    " JOIN tenant_settings s ON s.tenant_id = o.tenant_id"
    " CROSS JOIN LATERAL (VALUES ('email', c.email, c.notify_email), ('sms', c.phone, c.notify_sms),"
    " ('push', c.id::text, c.notify_push), ('in_app', 'staff', %(staff)s)) AS ch (channel, recipient, wanted)"
    " WHERE o.id = %(order_id)s AND ch.wanted AND ch.recipient <> ''"
    " AND (ch.channel = 'in_app' OR s.notification_channels ? ch.channel)"
    " ON CONFLICT (tenant_id, dedupe_key) DO NOTHING"
)
# A SKU in a warehouse whose available units just fell to or below its reorder point.
LOW_STOCK = (
    "INSERT INTO notifications (tenant_id, dedupe_key, topic, channel, recipient, context)"
    " SELECT oms_current_tenant(),"
    " %(event_id)s || ':low:' || st.sku || ':' || st.warehouse || ':' || ch.channel,"
    " 'low_stock', ch.channel, ch.recipient, jsonb_build_object('sku', st.sku, 'warehouse', st.warehouse,"
    " 'available', st.on_hand - st.reserved, 'reorder_point', st.reorder_point)"
    " FROM jsonb_to_recordset(%(drops)s::jsonb) AS d (sku text, warehouse text, quantity int)"
    " JOIN stock st ON st.sku = d.sku AND st.warehouse = d.warehouse"
    " JOIN tenant_settings s ON s.tenant_id = st.tenant_id"
    " CROSS JOIN LATERAL (VALUES ('in_app', 'staff'),"
    " ('email', CASE WHEN s.notification_channels ? 'email'"
    "            THEN s.notification_channels #>> '{email,staff_address}' END)) AS ch (channel, recipient)"
    " WHERE st.reorder_point > 0 AND st.on_hand - st.reserved <= st.reorder_point"
    " AND st.on_hand - st.reserved + d.quantity > st.reorder_point AND coalesce(ch.recipient, '') <> ''"
    " ON CONFLICT (tenant_id, dedupe_key) DO NOTHING"
)
# A scheduled summary, to the address its subscriber gave, when the shop sends email.
SUMMARY = (
    "INSERT INTO notifications (tenant_id, dedupe_key, topic, channel, recipient, context)"
    " SELECT oms_current_tenant(), %(event_id)s || ':email', 'summary', 'email', %(email)s, %(context)s"
    " FROM tenant_settings WHERE notification_channels ? 'email'"
    " ON CONFLICT (tenant_id, dedupe_key) DO NOTHING"
)
# An alert, in the app and by email to those who asked for alerts and may still set them.
ALERT = (
    "INSERT INTO notifications (tenant_id, dedupe_key, topic, channel, recipient, context)"
    " SELECT oms_current_tenant(), %(event_id)s || ':' || r.channel || ':' || r.recipient, 'alert',"
    " r.channel, r.recipient, %(context)s FROM (SELECT 'in_app' AS channel, 'staff' AS recipient"
    " UNION SELECT 'email', s.email FROM report_subscriptions s JOIN users u ON u.tenant_id = s.tenant_id"
    " AND u.username = s.username JOIN tenant_settings t ON t.tenant_id = s.tenant_id"
    " WHERE s.alerts AND u.active AND u.role = ANY(%(roles)s) AND t.notification_channels ? 'email')"
    " AS r ON CONFLICT (tenant_id, dedupe_key) DO NOTHING"
)
ALERTED = sorted(PERMISSIONS["alerts.manage"])
RESEND = (
    "UPDATE notifications SET status = 'queued', attempts = 0, next_attempt_at = now(), last_error = NULL,"
    " lease_until = NULL, leased_by = NULL WHERE id = %s"
)


def _period(d: dict[str, Any]) -> kpis.Period:
    return kpis.Period(date.fromisoformat(d["period_start"]), date.fromisoformat(d["period_end"]))


def _summary_context(d: dict[str, Any]) -> dict[str, Any]:
    """What the summary template shows: each KPI as people read it, with its change."""
    cur = d["currency"]
    fmt = lambda minor: money(minor, cur)  # noqa: E731
    cards = kpis.kpi_cards(d["figures"], kpis.compare(d["figures"], d["previous"]), fmt)
    return {
        "heading": "Daily summary" if d["frequency"] == "daily" else "Weekly summary",
        "period": _period(d).label(),
        "figures": [{"label": label, "value": v, "change": c or ""} for _, label, v, c in cards],
        "top_products": [p | {"revenue": fmt(p["revenue"])} for p in d["top_products"]],
    }


def _alert_context(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": d["rule"],
        "metric": kpis.KPI_LABELS[d["metric"]],
        "value": kpis.kpi_value(d["metric"], d["value"], lambda m: money(m, d["currency"])),
        "period": _period(d).label(),
    }


def _extra(event: es.RecordedEvent) -> dict[str, Any]:
    """What a template may need beyond the order itself."""
    d = event.data
    keep = ("carrier", "tracking", "warehouse", "amount", "reason", "reserved_until")
    return {k: d[k] for k in keep if k in d}


class Outbox(Projection):
    name = "outbox"
    tables = ("notifications",)
    kind = "inline"
    rebuildable = False

    def apply(self, conn, event: es.RecordedEvent) -> None:
        self.apply_all(conn, [event])

    def apply_all(self, conn, events) -> None:
        drops: dict[tuple[str, str], int] = {}
        last = None
        for event in events:
            if event.event_type == "NotificationResent":
                conn.execute(RESEND, [event.data["notification_id"]])
                continue
            if event.event_type == "ReportSummaryQueued":
                context = Jsonb(_summary_context(event.data))
                conn.execute(
                    SUMMARY,
                    {"event_id": str(event.event_id), "email": event.data["email"], "context": context},
                )
                continue
            if event.event_type == "AlertTriggered":
                context = Jsonb(_alert_context(event.data))
                conn.execute(ALERT, {"event_id": str(event.event_id), "context": context, "roles": ALERTED})
                continue
            topic = TOPICS.get(event.event_type)
            if topic and "order_id" in event.data:
                conn.execute(
                    FOR_CUSTOMER,
                    {
                        "event_id": str(event.event_id),
                        "topic": topic,
                        "order_id": event.data["order_id"],
                        "extra": json.dumps(_extra(event)),
                        "staff": topic in STAFF_TOPICS,
                    },
                )
            for sku, wh, _kind, on_hand, reserved, _reason in StockProjection.changes(event):
                if on_hand - reserved < 0:  # fewer units available than before
                    drops[(sku, wh)] = drops.get((sku, wh), 0) + reserved - on_hand
                    last = event
        if drops and last is not None:
            rows = [{"sku": s, "warehouse": w, "quantity": q} for (s, w), q in drops.items()]
            conn.execute(LOW_STOCK, {"event_id": str(last.event_id), "drops": json.dumps(rows)})


OUTBOX = Outbox()
