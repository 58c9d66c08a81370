"""Server time of the app's page renders, through Streamlit's AppTest (the script runs as it does behind
a browser, without one): what `oms bench ui` measures. A browser session is started already signed in
(the Session core.auth gave for the right password, put where the sign-in form puts it), so a timed run
is the page's own work and not the password hash."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from core.auth import Session

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
# The pages timed, in the order a person would open them; the first is where signing in lands.
PAGES = (
    ("overview", "pages/overview.py"),
    ("orders", "pages/orders.py"),
    ("inventory", "pages/inventory.py"),
)


class RenderFailed(RuntimeError):
    """A page raised while rendering: a benchmark of a broken page measures nothing."""


def signed_in(session: Session, timeout: float = 300.0) -> AppTest:
    """A new browser session of the app, signed in as `session`, not run yet."""
    _quiet()
    from app.session import SESSION

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state[SESSION] = session
    # A server scans the installed packages for Streamlit components once, when it starts; AppTest does
    # it in the first run of each instance (a fifth of a second here), which is no page's work. Share one
    # scan between the sessions timed, when this Streamlit keeps it where 1.67 does.
    if hasattr(at, "_bidi_component_manager"):
        at._bidi_component_manager = _components()
    return at


def _quiet() -> None:
    """Streamlit outside a server warns about every bare-mode call and deprecated argument; a
    benchmark's output is its figures."""
    from streamlit import config
    from streamlit import logger as st_logger

    config.set_option("logger.level", "error")
    st_logger.set_log_level("error")


@functools.cache
def _components():
    from streamlit.components.v2.component_manager import BidiComponentManager

    manager = BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    return manager


def _run(at: AppTest, name: str) -> float:
    started = time.perf_counter()
    at.run()
    ms = (time.perf_counter() - started) * 1000
    if at.exception:
        raise RenderFailed(f"{name}: {at.exception[0].value}"[:500])
    return ms


def render_pass(session: Session, reruns: int = 0) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Open each page once in a new signed-in session (its first render), then rerun it `reruns` more
    times. Returns the milliseconds of every run per page, and what the pages showed (for checks)."""
    at = signed_in(session)
    times: dict[str, list[float]] = {}
    shown: dict[str, Any] = {}
    for n, (name, path) in enumerate(PAGES):
        if n:
            at.switch_page(path)
        times[name] = [_run(at, name)]
        titles = [t.value for t in at.title]
        if titles[:1] != [name.title()]:
            raise RenderFailed(f"{name}: the page shown is {titles[:1]}")
        shown[name] = _shown(name, at)
        for _ in range(reruns):
            times[name].append(_run(at, name))
    return times, shown


def _shown(name: str, at: AppTest) -> dict[str, Any]:
    if name == "overview":
        return {"metrics": {m.label: m.value for m in at.metric}}
    if name == "orders":
        table = at.dataframe[0].value if at.dataframe else None
        return {
            "rows": 0 if table is None else len(table),
            "first_order": None if table is None or not len(table) else str(table["Order"].iloc[0]),
            "caption": " | ".join(str(c.value) for c in at.caption),
        }
    return {"metrics": {m.label: m.value for m in at.metric}, "tables": len(at.dataframe)}
