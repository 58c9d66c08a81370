"""Message templates: a built-in one per topic, which a tenant may replace (Jinja2, sandboxed).

Tenants write their own templates, so they render in Jinja2's sandbox; the HTML part is autoescaped
(a customer named <script> stays text), the subject and the plain-text part are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from core import eventstore as es
from core.commands import Actor, Context, execute, require
from core.db import Database
from core.errors import ValidationError
from core.money import money
from core.projections import Projection

MAX_TEMPLATE = 20_000


@dataclass(frozen=True)
class Template:
    subject: str
    text: str
    html: str


def _t(subject: str, text: str) -> Template:
    """A built-in template: the HTML part is the text part in paragraphs."""
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
    return Template(subject, text, f"<html><body>{paragraphs}</body></html>")


GREETING = "Hello {{ customer_name }},\n\n"
SIGN_OFF = "\n\n{{ shop }}"
DEFAULTS: dict[str, Template] = {
    "order_reserved": _t(
        "Order #{{ order_number }} received",
        GREETING + "we have your order #{{ order_number }} for {{ total | money(currency) }} and set "
        "its items aside for you." + SIGN_OFF,
    ),
    "order_paid": _t(
        "Payment received for order #{{ order_number }}",
        GREETING + "thank you: we received {{ total | money(currency) }} for order #{{ order_number }}. "
        "We will let you know when it ships." + SIGN_OFF,
    ),
    "order_shipped": _t(
        "Order #{{ order_number }} has shipped",
        GREETING + "order #{{ order_number }} left our {{ warehouse }} warehouse with {{ carrier }}. "
        "Tracking number: {{ tracking }}." + SIGN_OFF,
    ),
    "order_delivered": _t(
        "Order #{{ order_number }} was delivered",
        GREETING + "order #{{ order_number }} has been delivered. We hope you enjoy it." + SIGN_OFF,
    ),
    "order_cancelled": _t(
        "Order #{{ order_number }} was cancelled",
        GREETING
        + "order #{{ order_number }} was cancelled{% if reason %} ({{ reason }}){% endif %}."
        + SIGN_OFF,
    ),
    "payment_failed": _t(
        "We could not take payment for order #{{ order_number }}",
        GREETING + "we could not take the payment of {{ total | money(currency) }} for order "
        "#{{ order_number }}{% if reason %} ({{ reason }}){% endif %}. Please contact us to try again."
        + SIGN_OFF,
    ),
    "refund_issued": _t(
        "Refund for order #{{ order_number }}",
        GREETING + "we refunded {{ amount | money(currency) }} for order #{{ order_number }}." + SIGN_OFF,
    ),
    "low_stock": _t(
        "Low stock: {{ sku }} in {{ warehouse }}",
        "{{ sku }} in {{ warehouse }} is down to {{ available }} available (reorder point "
        "{{ reorder_point }}).",
    ),
    "summary": Template(
        "{{ heading }} for {{ period }}",
        "{{ heading }} for {{ shop }}, {{ period }} (change against the period before):\n\n"
        "{% for f in figures %}{{ f.label }}: {{ f.value }}{% if f.change %} ({{ f.change }}){% endif %}\n"
        "{% endfor %}{% if top_products %}\nTop products:\n{% for p in top_products %}"
        "{{ loop.index }}. {{ p.name }} ({{ p.sku }}): {{ p.units }} sold, {{ p.revenue }}\n"
        "{% endfor %}{% endif %}\nThe Reports page has the details.",
        "<html><body><h2>{{ heading }} for {{ shop }}</h2><p>{{ period }}, change against the period"
        " before.</p><table>{% for f in figures %}<tr><td>{{ f.label }}</td><td><b>{{ f.value }}</b></td>"
        "<td>{{ f.change }}</td></tr>{% endfor %}</table>{% if top_products %}<h3>Top products</h3><ol>"
        "{% for p in top_products %}<li>{{ p.name }} ({{ p.sku }}): {{ p.units }} sold, {{ p.revenue }}"
        "</li>{% endfor %}</ol>{% endif %}<p>The Reports page has the details.</p></body></html>",
    ),
    "alert": _t(
        "Alert: {{ rule }}",
        "{{ metric }} is {{ value }} for {{ period }}.\n\nYour alert: {{ rule }}. You will not hear"
        " about it again until it is back within the limit and crosses it once more.\n\n{{ shop }}",
    ),
}
TOPICS = tuple(DEFAULTS)

# A context with every field any built-in template uses, for previews and for checking new templates.
SAMPLE = {
    "shop": "Your shop",
    "customer_name": "Ada Lovelace",
    "order_number": 1042,
    "total": 12_950,
    "amount": 12_950,
    "currency": "USD",
    "status": "shipped",
    "warehouse": "EAST",
    "carrier": "UPS",
    "tracking": "1Z999AA10123456784",
    "reason": "customer asked",
    "sku": "SKU-1",
    "available": 2,
    "reorder_point": 5,
    "heading": "Daily summary",
    "period": "2026-03-02",
    "figures": [
        {"label": "Revenue", "value": "$1,234.50", "change": "+12.5%"},
        {"label": "Orders", "value": "42", "change": "-3.0%"},
        {"label": "Payment failure rate", "value": "2.4%", "change": "+0.6 pts"},
    ],
    "top_products": [{"sku": "SKU-1", "name": "Mug", "units": 12, "revenue": "$150.00"}],
    "rule": "Payment failure rate above 10.0% over 7 days",
    "metric": "Payment failure rate",
    "value": "12.5%",
}

OVERRIDES = "SELECT topic, subject, text_body, html_body FROM notification_templates"
SAVE = (
    "INSERT INTO notification_templates (tenant_id, topic, subject, text_body, html_body, updated_at)"
    " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, topic) DO UPDATE"
    " SET subject = excluded.subject, text_body = excluded.text_body, html_body = excluded.html_body,"
    " updated_at = excluded.updated_at"
)
DROP = "DELETE FROM notification_templates WHERE topic = %s"


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=autoescape)  # a field a topic lacks renders empty
    env.filters["money"] = lambda minor, currency="USD": money(int(minor), str(currency))
    return env


_PLAIN, _HTML = _environment(False), _environment(True)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> JinjaTemplate:
    # Compiling costs about twenty times what rendering does; a batch sends the same few templates.
    return (_HTML if html else _PLAIN).from_string(source)


def render(template: Template, context: dict[str, Any]) -> Template:
    """The subject (one line), plain text and HTML of a message. Raises TemplateError on a bad template."""
    subject = _compiled(template.subject, False).render(context)
    return Template(
        " ".join(subject.split())[:200],
        _compiled(template.text, False).render(context),
        _compiled(template.html, True).render(context),
    )


def load(conn) -> dict[str, Template]:
    """The tenant's templates: its own where it has one, else the built-in."""
    templates = dict(DEFAULTS)
    for topic, subject, text, html in conn.execute(OVERRIDES):
        templates[topic] = Template(subject, text, html)
    return templates


def _check_topic(topic: object) -> str:
    if topic not in DEFAULTS:
        raise ValidationError(f"topic must be one of {', '.join(TOPICS)}")
    return str(topic)


def preview(
    db: Database, tenant_id: object, actor: Actor, topic: str, template: Template | None = None
) -> Template:
    """A template rendered with sample data: the tenant's (or the given draft) for the topic."""
    require(actor, "notifications.view")
    topic = _check_topic(topic)
    if template is None:
        with db.tenant(tenant_id) as conn:
            template = load(conn)[topic]
    try:
        return render(template, SAMPLE)
    except TemplateError as exc:
        raise ValidationError(f"the template does not render: {exc.message or exc}") from None


def set_template(
    db: Database,
    tenant_id: object,
    actor: Actor,
    topic: str,
    *,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    key: str | None = None,
) -> dict[str, str]:
    """Replace the topic's template; with no parts given, go back to the built-in one."""
    topic = _check_topic(topic)
    parts = {"subject": subject, "text": text, "html": html}
    if all(v is None for v in parts.values()):
        data: dict[str, Any] = {"topic": topic, "reset": True}
    else:
        for name, value in parts.items():
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"the template's {name} is required")
            if len(value) > MAX_TEMPLATE:
                raise ValidationError(f"the template's {name} is longer than {MAX_TEMPLATE:,} characters")
        draft = Template(subject, text, html)  # type: ignore[arg-type]
        try:
            render(draft, SAMPLE)
        except TemplateError as exc:
            raise ValidationError(f"the template does not render: {exc.message or exc}") from None
        data = {"topic": topic, **parts}

    def handle(ctx: Context) -> dict[str, str]:
        ctx.record(
            f"templates-{ctx.tenant_id}",
            "templates",
            [("NotificationTemplateChanged", data)],
            None,
            TEMPLATES,
        )
        return {"topic": topic, "template": "built-in" if data.get("reset") else "custom"}

    return execute(db, tenant_id, actor, "settings.manage", key, handle)


class TemplatesProjection(Projection):
    name = "notification_templates"
    tables = ("notification_templates",)
    kind = "inline"

    def apply(self, conn, event: es.RecordedEvent) -> None:
        if event.event_type != "NotificationTemplateChanged":
            return
        d = event.data
        if d.get("reset"):
            conn.execute(DROP, [d["topic"]])
        else:
            conn.execute(SAVE, [d["topic"], d["subject"], d["text"], d["html"], event.recorded_at])


TEMPLATES = TemplatesProjection()
