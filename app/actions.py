"""How a page runs a command from a form: one idempotency key per draft, core's message on bad input,
a success message that survives the rerun, and a confirmation step before anything destructive."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import streamlit as st

from app.session import UNAVAILABLE
from core.errors import OmsError

DB_DOWN = "The database is not reachable; nothing was changed. Try again in a moment."


def draft_key(form: str) -> str:
    """The idempotency key of this form's current draft: a double submit is answered once."""
    return st.session_state.setdefault(f"{form}_idem", str(uuid.uuid4()))


def run(
    page: str,
    form: str,
    call: Callable[[str], dict[str, Any]],
    done: Callable[[dict[str, Any]], str],
    *,
    confirmation: str | None = None,
) -> None:
    """call(key) runs the core command; on success the page reruns showing done(result) (and closes
    the confirmation it answered); on an OmsError (bad input, no permission, a conflict) core's
    sentence is shown and nothing was written."""
    try:
        result = call(draft_key(form))
    except OmsError as exc:
        st.error(str(exc))
        return
    except UNAVAILABLE:
        st.error(DB_DOWN)
        return
    st.session_state.pop(f"{form}_idem", None)  # the next draft is a new command
    st.session_state[f"{page}_flash"] = done(result)
    if confirmation:
        close(confirmation)
    st.rerun()


def show_flash(page: str) -> None:
    if message := st.session_state.pop(f"{page}_flash", None):
        st.success(message)


def ask(name: str, target: Any) -> None:
    """Open the confirmation `name` for `target` (a SKU, a customer id)."""
    st.session_state[f"{name}_confirm"] = target


def asked(name: str) -> Any:
    return st.session_state.get(f"{name}_confirm")


def close(name: str) -> None:
    st.session_state.pop(f"{name}_confirm", None)


def toggle_active(
    page: str,
    target: str,
    label: str,
    active: bool,
    warning: str,
    call: Callable[[str], dict[str, Any]],
    done: Callable[[dict[str, Any]], str],
    *,
    confirm_label: str,
    keep_label: str,
) -> None:
    """A Deactivate/Reactivate button for one record, with a confirmation step; `warning` says what it
    means. Buttons are keyed {page}_toggle, {page}_toggle_confirm and {page}_toggle_keep."""
    name = f"{page}_active"
    verb = "Deactivate" if active else "Reactivate"
    if st.button(f"{verb} {label}…", key=f"{page}_toggle"):
        ask(name, target)
    if asked(name) != target:
        return
    with st.container(border=True):
        st.warning(warning)
        c = st.columns(2)
        if c[0].button(confirm_label.format(verb=verb.lower()), key=f"{page}_toggle_confirm", type="primary"):
            run(page, f"{name}_{target}_{not active}", call, done, confirmation=name)
        if c[1].button(keep_label, key=f"{page}_toggle_keep"):
            close(name)
            st.rerun()


def run_each(
    targets: list[Any], call: Callable[[Any], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """A bulk action: call(target) for each target on its own, so one refusal does not stop the rest.
    Returns the results and, for each refusal, core's sentence (prefixed by the caller's call)."""
    done, refused = [], []
    for target in targets:
        try:
            done.append(call(target))
        except OmsError as exc:
            refused.append(f"{target}: {exc}")
        except UNAVAILABLE:
            refused.append(f"{target}: {DB_DOWN}")
            break
    return done, refused
