"""Delivery channels: email over SMTP, SMS and push through HTTP provider webhooks, and in-app.

Each tenant sets up its own channels (Settings). The event log records what changed; passwords and
tokens go to tenant_secrets, never into an event.
"""

from __future__ import annotations

import smtplib
import ssl
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from core.commands import Actor, Context, execute, require
from core.db import Database
from core.errors import ValidationError
from core.notifications.templates import Template
from core.tenants import SAVE_SECRET, SETTINGS

CHANNELS = ("email", "sms", "push", "in_app")
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}$"

SETTINGS_ROW = "SELECT notification_channels, notification_attempt_limit FROM tenant_settings"
CHANNEL_SECRETS = (
    "SELECT name, value FROM tenant_secrets WHERE name IN ('email:password', 'sms:token', 'push:token')"
)
DROP_SECRET = "DELETE FROM tenant_secrets WHERE name = %s"


class EmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")
    port: int = Field(default=587, ge=1, le=65535, strict=True)
    starttls: bool = True
    username: str = Field(default="", max_length=255)
    sender: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    staff_address: str = Field(default="", max_length=320)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("staff_address")
    @classmethod
    def _staff(cls, v: str) -> str:
        import re

        if v and not re.match(EMAIL_PATTERN, v):
            raise ValueError("the staff address must be an email address")
        return v


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


SECRET_NAME = {"email": "email:password", "sms": "sms:token", "push": "push:token"}


def set_channel(
    db: Database,
    tenant_id: object,
    actor: Actor,
    channel: str,
    settings: dict[str, Any] | None,
    *,
    secret: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Set up (or, with settings None, switch off) the tenant's email, SMS or push channel.
    secret: the SMTP password or the provider's token; None keeps the one already set."""
    if channel not in SECRET_NAME:
        raise ValidationError("channel must be email, sms or push (in-app needs no setting up)")
    checked: dict[str, Any] | None = None
    if settings is not None:
        model = EmailSettings if channel == "email" else WebhookSettings
        try:
            checked = model.model_validate(settings).model_dump(mode="json")
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            where = ".".join(str(p) for p in first["loc"])
            raise ValidationError(
                f"{channel} {where}: {first['msg'].removeprefix('Value error, ')}"
            ) from None
    if secret is not None and (not isinstance(secret, str) or len(secret) > 500 or not secret.isprintable()):
        raise ValidationError("the password or token must be at most 500 printable characters")

    def handle(ctx: Context) -> dict[str, Any]:
        current = ctx.conn.execute(SETTINGS_ROW).fetchone()[0]
        channels = {k: v for k, v in current.items() if k != channel}
        if checked is not None:
            channels[channel] = checked
        data = {"notification_channels": channels, "secret_set": channel if secret else None}
        ctx.record(f"tenant-{ctx.tenant_id}", "tenant", [("TenantSettingsChanged", data)], None, SETTINGS)
        if checked is None:
            ctx.conn.execute(DROP_SECRET, [SECRET_NAME[channel]])
        elif secret:
            ctx.conn.execute(SAVE_SECRET, [SECRET_NAME[channel], secret])
        return channels

    return execute(db, tenant_id, actor, "settings.manage", key, handle)


def channel_settings(db: Database, tenant_id: object, actor: Actor) -> dict[str, Any]:
    """Each channel's settings (which secrets are set, not their values) and the attempt limit."""
    require(actor, "notifications.view")
    with db.tenant(tenant_id) as conn:
        channels, limit = conn.execute(SETTINGS_ROW).fetchone()
        secrets = {name for name, _ in conn.execute(CHANNEL_SECRETS)}
    return {
        "channels": {c: {**v, "secret_set": SECRET_NAME[c] in secrets} for c, v in channels.items()},
        "notification_attempt_limit": limit,
    }


# --- sending -------------------------------------------------------------------------------------------


class Mailer:
    """One SMTP connection for a batch of emails (opened on the first message)."""

    def __init__(self, settings: dict[str, Any], password: str):
        self.s, self.password = settings, password
        self.smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.s
        smtp = smtplib.SMTP(s["host"], s["port"], timeout=s["timeout_seconds"])
        try:
            if s["starttls"]:
                smtp.starttls(context=ssl.create_default_context())
            if s["username"]:
                smtp.login(s["username"], self.password)
        except Exception:
            smtp.close()
            raise
        return smtp

    def send(self, recipient: str, message: Template, dedupe_key: str, shop: str) -> None:
        # The email.mime classes build a message about three times faster than EmailMessage.
        msg = MIMEMultipart("alternative")
        msg["From"] = formataddr((shop, self.s["sender"]), charset="utf-8")
        msg["To"] = recipient
        msg["Subject"] = Header(message.subject, "utf-8")
        msg["Message-ID"] = make_msgid(domain=self.s["sender"].rpartition("@")[2] or None)
        msg["X-OMS-Dedupe-Key"] = dedupe_key  # the receiver can drop a repeat after a crash
        msg.attach(MIMEText(message.text, "plain", "utf-8"))
        msg.attach(MIMEText(message.html, "html", "utf-8"))
        if self.smtp is None:
            self.smtp = self._connect()
        # send_message writes CRLF line ends; raw bytes with bare LF read as one over-long line to SMTP.
        self.smtp.send_message(msg, self.s["sender"], [recipient])

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None


def describe(exc: Exception, channel: str, settings: dict[str, Any] | None) -> str:
    """A delivery error as an owner can act on it."""
    if isinstance(exc, ConnectionRefusedError | TimeoutError | OSError) and channel == "email" and settings:
        return f"cannot reach the SMTP server {settings['host']}:{settings['port']} ({exc})"[:500]
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "the SMTP server refused the username or password"
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return f"the {channel} provider refused the token (HTTP {code})"
        return f"the {channel} provider answered HTTP {code}"
    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach the {channel} provider: {type(exc).__name__} {exc}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def post_webhook(
    client: httpx.Client, settings: dict[str, Any], token: str, payload: dict[str, Any], dedupe_key: str
) -> None:
    headers = {"Idempotency-Key": dedupe_key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = client.post(
        str(settings["url"]), json=payload, headers=headers, timeout=settings["timeout_seconds"]
    )
    response.raise_for_status()


Channel = Literal["email", "sms", "push", "in_app"]
