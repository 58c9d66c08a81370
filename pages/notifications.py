"""Notifications: the outbox of messages to customers and staff. Counts by status, the channels the
shop has set up, the outbox filtered by status and channel, dead letters (resent after a
confirmation) and a preview of each topic's template with sample data."""

import pandas as pd
import streamlit as st

from app import actions
from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, tenant_context
from core.errors import OmsError
from core.notifications import channels, dispatch, templates

ctx = tenant_context()
db = database()
st.title("Notifications")

if not ctx.actor.can("notifications.view"):
    st.error(f"A {ctx.actor.role} may not view notifications.")
    st.stop()

try:
    totals = dispatch.counts(db, ctx.tenant_id, ctx.actor)
    setup = channels.channel_settings(db, ctx.tenant_id, ctx.actor)
    dead = dispatch.list_notifications(db, ctx.tenant_id, ctx.actor, status="dead")
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

actions.show_flash("notifications")
STATUSES = ("queued", "sent", "dead")
CHANNEL_NAMES = {"email": "Email", "sms": "SMS", "push": "Push", "in_app": "In-app (staff)"}


def _when(at) -> str:
    return local_time(at, ctx.zone)


def _order(n: dict) -> str:
    return f"#{n['order_number']}" if n["order_number"] else ""


def _next(n: dict) -> str:
    """When it was sent, or when it is tried next (a dead letter is not tried again)."""
    return {"sent": _when(n["sent_at"]), "queued": _when(n["next_attempt_at"])}.get(n["status"], "")


def _label(n: dict) -> str:
    order = f" · order {_order(n)}" if n["order_number"] else ""
    return f"{n['topic']} · {CHANNEL_NAMES.get(n['channel'], n['channel'])} to {n['recipient']}{order}"


m = st.columns(3)
m[0].metric("Queued", totals["queued"])
m[1].metric("Sent", totals["sent"])
m[2].metric("Dead letters", totals["dead"])

# Channels ----------------------------------------------------------------------------------------
st.subheader("Channels")
configured = setup["channels"]


def _channel_row(name: str) -> dict:
    c = configured.get(name)
    if name == "in_app":
        return {"Channel": CHANNEL_NAMES[name], "Set up": "yes", "Sends through": "the app", "Secret": ""}
    if c is None:
        return {"Channel": CHANNEL_NAMES[name], "Set up": "no", "Sends through": "", "Secret": ""}
    where = f"{c['host']}:{c['port']} from {c['sender']}" if name == "email" else str(c.get("url", ""))
    secret = "set" if c["secret_set"] else "not set"
    return {"Channel": CHANNEL_NAMES[name], "Set up": "yes", "Sends through": where, "Secret": secret}


st.dataframe(
    pd.DataFrame([_channel_row(name) for name in channels.CHANNELS]),
    hide_index=True,
    width="stretch",
    key="notifications_channels",
)
if not configured:
    st.info(
        "No email, SMS or push channel is set up yet, so only staff get notifications, in the app."
        " The owner sets up channels in Settings."
    )
st.caption(
    f"A message is tried up to {setup['notification_attempt_limit']} times before it becomes a dead letter."
)

# Outbox ------------------------------------------------------------------------------------------
st.subheader("Outbox")
f = st.columns(2)
status = f[0].selectbox(
    "Status",
    [None, *STATUSES],
    key="notifications_status",
    format_func=lambda s: "All" if s is None else s.capitalize(),
)
channel = f[1].selectbox(
    "Channel",
    [None, *channels.CHANNELS],
    key="notifications_channel",
    format_func=lambda c: "All" if c is None else CHANNEL_NAMES[c],
)
try:
    outbox = dispatch.list_notifications(db, ctx.tenant_id, ctx.actor, status=status, channel=channel)
except OmsError as exc:
    st.error(str(exc))
    outbox = None
if outbox is None:
    pass
elif not outbox and not any(totals.values()):
    st.info(
        "No notifications yet. Customers are told when their order is received, paid, shipped, delivered"
        " or cancelled; staff see failed payments and low stock here."
    )
elif not outbox:
    st.info("No notification matches these filters. Change or clear them to see more.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Created": _when(n["created_at"]),
                    "Topic": n["topic"],
                    "Channel": CHANNEL_NAMES.get(n["channel"], n["channel"]),
                    "Recipient": n["recipient"],
                    "Order": _order(n),
                    "Status": n["status"],
                    "Attempts": n["attempts"],
                    "Sent / next try": _next(n),
                    "Last error": n["last_error"] or "",
                }
                for n in outbox
            ]
        ),
        hide_index=True,
        width="stretch",
        key="notifications_outbox",
    )
    st.caption(f"The latest {len(outbox)} notifications, newest first; times in {ctx.tenant.time_zone}.")

# Dead letters ------------------------------------------------------------------------------------
st.subheader("Dead letters")
if not dead:
    st.info("No dead letters: every notification was sent or is still being tried.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Created": _when(n["created_at"]),
                    "Topic": n["topic"],
                    "Channel": CHANNEL_NAMES.get(n["channel"], n["channel"]),
                    "Recipient": n["recipient"],
                    "Order": _order(n),
                    "Attempts": n["attempts"],
                    "Error": n["last_error"] or "",
                }
                for n in dead
            ]
        ),
        hide_index=True,
        width="stretch",
        key="notifications_dead",
    )
    st.caption("Fix what the error points at (often the channel's settings), then send the message again.")
    if not ctx.actor.can("notifications.manage"):
        st.caption(f"A {ctx.actor.role} sees dead letters but does not resend them.")
    else:
        by_id = {str(n["id"]): n for n in dead}
        c = st.columns([3, 2], vertical_alignment="bottom")
        picked = c[0].selectbox(
            "Dead letter", list(by_id), key="notifications_dead_pick", format_func=lambda i: _label(by_id[i])
        )
        if c[1].button("Resend…", key="notifications_resend"):
            actions.ask("notifications_dead_letter", picked)
        if picked is not None and actions.asked("notifications_dead_letter") == picked:
            chosen = by_id[picked]
            with st.container(border=True):
                st.warning(
                    f"Send {_label(chosen)} again? It is queued with a fresh set of attempts and the worker"
                    " sends it on its next run."
                )
                b = st.columns(2)
                if b[0].button("Yes, resend", key="notifications_resend_confirm", type="primary"):
                    actions.run(
                        "notifications",
                        f"notifications_resend_{picked}",
                        lambda key: dispatch.resend(db, ctx.tenant_id, ctx.actor, picked, key=key),
                        lambda r: f"Queued again: {_label(chosen)}.",
                        confirmation="notifications_dead_letter",
                    )
                if b[1].button("Keep it", key="notifications_resend_keep"):
                    actions.close("notifications_dead_letter")
                    st.rerun()

# Templates ---------------------------------------------------------------------------------------
st.subheader("Template preview")
topic = st.selectbox("Topic", templates.TOPICS, key="notifications_topic")
try:
    sample = templates.preview(db, ctx.tenant_id, ctx.actor, topic)
except OmsError as exc:
    st.error(str(exc))
else:
    st.caption("Rendered with sample data; the shop's own template where it has one, else the built-in.")
    st.text(f"Subject: {sample.subject}")
    st.code(sample.text, language=None, wrap_lines=True)
    with st.expander("HTML part"):
        st.html(sample.html)
