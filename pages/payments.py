"""Payments: how charges through the shop's gateways are going. Counts by status, each gateway's
circuit, the retry queue, failed charges (staff charge them again, after a confirmation), the latest
attempts with the gateways' answers, and refunds going back through the gateways."""

import pandas as pd
import streamlit as st

from app import actions
from app.database import database
from app.format import local_time, money
from app.session import UNAVAILABLE, tenant_context
from core.errors import OmsError
from core.payments import refunds as refunds_service
from core.payments import service as payments

LIMIT = 1000

ctx = tenant_context()
db = database()
st.title("Payments")

if not ctx.actor.can("payments.view"):
    st.error(f"A {ctx.actor.role} may not view payments.")
    st.stop()

try:
    settings = payments.gateway_settings(db, ctx.tenant_id, ctx.actor)
    circuits = {c["gateway"]: c for c in payments.circuits(db, ctx.tenant_id, ctx.actor)}
    rows = payments.list_payments(db, ctx.tenant_id, ctx.actor, limit=LIMIT)
    tries = payments.list_attempts(db, ctx.tenant_id, ctx.actor, limit=200)
    refunds = refunds_service.list_refunds(db, ctx.tenant_id, ctx.actor, limit=200)
except OmsError as exc:
    st.error(str(exc))
    st.stop()
except UNAVAILABLE:
    st.error("The database is not reachable; reload the page in a moment.")
    st.stop()

actions.show_flash("payments")


def _amount(p: dict) -> str:
    return money(p["amount"], p["currency"].strip())


def _when(at) -> str:
    return local_time(at, ctx.zone)


pending = [p for p in rows if p["status"] == "pending"]
failed = [p for p in rows if p["status"] == "failed"]
succeeded = [p for p in rows if p["status"] == "succeeded"]

m = st.columns(4)
m[0].metric("Pending", len(pending))
m[1].metric("Failed", len(failed))
m[2].metric("Succeeded", len(succeeded))
m[3].metric("Gateways", len(settings["gateways"]))
if len(rows) == LIMIT:
    st.caption(f"Counted over the latest {LIMIT} payments.")

# Gateways ----------------------------------------------------------------------------------------
st.subheader("Gateways")
if not settings["gateways"]:
    st.info(
        "No gateway set up yet — the owner adds them in Settings. Until then, staff record payments"
        " by hand on the Orders page."
    )
else:
    gateways = pd.DataFrame(
        [
            {
                "Priority": n,
                "Gateway": g["name"],
                "Kind": g["kind"],
                "Token": "set" if g["token_set"] else ("—" if g["kind"] == "simulated" else "missing"),
                "Circuit": circuits.get(g["name"], {}).get("state", "closed"),
                "Failures": circuits.get(g["name"], {}).get("failures", 0),
                "Opened": _when(circuits.get(g["name"], {}).get("opened_at")),
            }
            for n, g in enumerate(settings["gateways"], 1)
        ]
    )
    st.dataframe(gateways, hide_index=True, width="stretch", key="payments_gateways")
    st.caption(
        f"Tried in priority order. Up to {settings['payment_attempt_limit']} attempts per charge,"
        f" {settings['payment_backoff_seconds']} s backoff doubling each time; a gateway's circuit opens"
        f" after {settings['circuit_failures']} failures in a row and is tried again after"
        f" {settings['circuit_reset_seconds']} s."
    )
    if any(circuits.get(g["name"], {}).get("state") == "open" for g in settings["gateways"]):
        st.warning("A gateway's circuit is open: charges go to the next gateway until it closes again.")

if not rows:
    st.info(
        "No payments yet. Each charge of an order through a gateway shows here, with its attempts;"
        " payments recorded by hand stay on the order."
    )
    st.stop()

# Retry queue -------------------------------------------------------------------------------------
st.subheader("Retry queue")
if not pending:
    st.info("Nothing is waiting for a charge: every payment has succeeded or failed.")
else:
    queue = pd.DataFrame(
        [
            {
                "Order": f"#{p['order_number']}",
                "Amount": _amount(p),
                "Attempts": p["attempts"],
                "Next attempt": "in progress" if p["in_flight"] else _when(p["next_attempt_at"]),
                "Gateway": p["pinned_gateway"] or "",
                "Last error": p["last_error"] or "",
            }
            for p in sorted(pending, key=lambda p: p["next_attempt_at"] or p["updated_at"])
        ]
    )
    st.dataframe(queue, hide_index=True, width="stretch", key="payments_queue")
    st.caption(f"The worker charges these when due; times in {ctx.tenant.time_zone}.")

# Failed payments ---------------------------------------------------------------------------------
st.subheader("Failed payments")
# An order charged again has a newer payment; only those whose latest charge failed can be retried.
latest: dict = {}
for p in rows:
    if p["order_id"] not in latest or p["created_at"] > latest[p["order_id"]]["created_at"]:
        latest[p["order_id"]] = p
retryable = {p["order_number"]: p for p in latest.values() if p["status"] == "failed"}

if not failed:
    st.info("No payment has failed.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Order": f"#{p['order_number']}",
                    "Amount": _amount(p),
                    "Attempts": p["attempts"],
                    "Error": p["last_error"] or "",
                    "Failed at": _when(p["updated_at"]),
                    "Charged again": "" if latest[p["order_id"]] is p else "yes",
                }
                for p in failed
            ]
        ),
        hide_index=True,
        width="stretch",
        key="payments_failed",
    )
    if not retryable:
        st.caption("Every failed order has been charged again.")
    elif not ctx.actor.can("orders.pay"):
        st.caption(f"A {ctx.actor.role} sees failed payments but does not charge orders again.")
    else:
        c = st.columns([3, 2], vertical_alignment="bottom")
        number = c[0].selectbox(
            "Failed order",
            list(retryable),
            key="payments_retry_order",
            format_func=lambda n: f"#{n} · {_amount(retryable[n])}",
        )
        if c[1].button("Retry payment…", key="payments_retry"):
            actions.ask("payments_charge_again", number)
        if number is not None and actions.asked("payments_charge_again") == number:
            with st.container(border=True):
                st.warning(
                    f"Charge order #{number} again? Its stock is reserved again and a new charge of"
                    f" {_amount(retryable[number])} starts with a fresh set of attempts."
                )
                b = st.columns(2)
                if b[0].button(f"Yes, charge #{number} again", key="payments_retry_confirm", type="primary"):
                    actions.run(
                        "payments",
                        f"payments_retry_{number}",
                        lambda key: payments.retry_payment(
                            db, ctx.tenant_id, ctx.actor, retryable[number]["order_id"], key=key
                        ),
                        lambda r: (
                            f"Order #{r['number']} is {r['status'].replace('_', ' ')}:"
                            " a new charge is queued."
                        ),
                        confirmation="payments_charge_again",
                    )
                if b[1].button("Keep it failed", key="payments_retry_keep"):
                    actions.close("payments_charge_again")
                    st.rerun()

# Attempts ----------------------------------------------------------------------------------------
st.subheader("Recent attempts")
failures_only = st.checkbox("Failures only", key="payments_failures_only")
shown = [a for a in tries if not failures_only or a["outcome"] in ("declined", "transient")]
if not shown:
    st.info(
        "No failed attempt."
        if failures_only
        else "No attempt yet: the worker makes them when charges fall due."
    )
else:
    amounts = {p["id"]: _amount(p) for p in rows}
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Order": f"#{a['order_number']}",
                    "Attempt": a["attempt"],
                    "Amount": amounts.get(a["payment_id"], ""),
                    "Gateway": a["gateway"],
                    "Outcome": a["outcome"],
                    "Code": a["code"] or "",
                    "Message": a["message"] or "",
                    "Started": _when(a["started_at"]),
                    "Finished": _when(a["finished_at"]),
                }
                for a in shown
            ]
        ),
        hide_index=True,
        width="stretch",
        key="payments_attempts",
    )
    st.caption(f"The latest {len(shown)} attempts, newest first; times in {ctx.tenant.time_zone}.")

# Refunds -----------------------------------------------------------------------------------------
st.subheader("Refunds")
if not refunds:
    st.info("No refund through a gateway yet: cancelling a paid order or a return sends one back.")
else:
    if failed_refunds := [r for r in refunds if r["status"] == "failed"]:
        st.warning(
            f"{len(failed_refunds)} refund(s) the gateway would not pay back: settle them with the customer"
            " by hand."
        )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Order": f"#{r['order_number']}",
                    "Amount": _amount(r),
                    "Gateway": r["gateway"],
                    "Status": r["status"],
                    "Attempts": r["attempts"],
                    "Retries at": _when(r["next_attempt_at"]) if r["next_attempt_at"] else "",
                    "Last error": r["last_error"] or "",
                    "Issued": _when(r["created_at"]),
                }
                for r in refunds
            ]
        ),
        hide_index=True,
        width="stretch",
        key="payments_refunds",
    )
