"""The app in a real Chromium, driven by Playwright against a running Streamlit server: sign in, see the
orders, open a shared filter URL, place an order, stay signed in across a refresh of a sub-page, and see
nothing of another shop. Screenshots of every page land in tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_helpers import PASSWORD, seed_shop
from conftest import followable

from core.commands import CLI
from core.db import app_url
from core.orders.handlers import place_order
from core.orders.queries import list_orders, order_detail
from core.settings import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(owner_url):
    port = free_port()
    env = os.environ | {"OMS_APP_DATABASE_URL": app_url()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(PROJECT_ROOT / "streamlit_app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.25)
    else:
        proc.kill()
        pytest.fail("the app did not start")
    yield url
    proc.terminate()
    proc.wait(15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def sign_in(page, url: str, login: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    # On a loaded machine the form can still be re-rendering when it first shows: fill it only once
    # the button is there, and check the fields kept what was typed before submitting.
    page.get_by_role("button", name="Sign in").first.wait_for(timeout=30_000)
    settle(page)  # a re-render can briefly show the old form beside the new one
    for label, value in (("Login", login), ("Password", PASSWORD)):
        field = page.get_by_label(label).first
        field.fill(value)
        expect(field).to_have_value(value)
    page.get_by_role("button", name="Sign in").first.click()
    try:
        page.get_by_text("Signed in as").wait_for(timeout=30_000)
    except Exception:
        shot(page, f"sign-in-failed-{login.split('@')[0]}")
        raise


def settle(page) -> None:
    """Wait until the script run the last action started has finished: on a loaded machine a click that
    lands while Streamlit is still re-rendering the page can be dropped with the elements it hit."""
    idle = page.locator("[data-testid=stApp][data-test-script-state=notRunning]")
    for _ in range(2):  # a run can start right after the first one ends (query params, a rerun)
        idle.wait_for(timeout=30_000)
        page.wait_for_timeout(300)


def act(page, button, expected: str, name: str) -> None:
    """Click a button once the page is still, then wait for the sentence its command answers with."""
    settle(page)
    button.click()
    try:
        page.get_by_text(expected).wait_for(timeout=30_000)
    except Exception:
        shot(page, f"failed-{name}")
        raise
    settle(page)


def table_cells(page) -> list[str]:
    """The cells of the page's tables (Streamlit draws them on a canvas; the cells are there for a11y)."""
    return [t.strip() for t in page.locator("[role=gridcell]").all_text_contents()]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_clerk_works_through_the_browser(db, tenant, other_tenant, app_server, browser):
    shop = seed_shop(db, tenant)
    other = seed_shop(db, other_tenant)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()

    sign_in(page, app_server, shop.login("clerk"))
    page.get_by_role("heading", name="Overview").first.wait_for(timeout=20_000)
    page.get_by_text("Orders to ship").first.wait_for(timeout=20_000)
    shot(page, "overview")
    page.goto(f"{app_server}/orders")
    page.get_by_role("heading", name="Orders").wait_for(timeout=20_000)
    number = shop.orders[0]["number"]
    page.get_by_text(f"#{number}").first.wait_for(state="attached", timeout=20_000)
    shot(page, "orders")

    # A shared URL with a filter opens the same view: only paid orders.
    page.goto(f"{app_server}/orders?status=paid")
    page.get_by_role("heading", name="Orders").wait_for(timeout=20_000)
    page.wait_for_timeout(1500)
    paid, unpaid = shop.orders[0]["number"], shop.orders[1]["number"]  # seed_shop pays the first only
    cells = table_cells(page)
    assert f"#{paid}" in cells and f"#{unpaid}" not in cells
    shot(page, "orders-filtered")

    # An order number that exists only in the other shop shows nothing here, even asked for in the URL.
    extra = place_order(db, other_tenant.id, CLI, customer_id=other.customer, lines=[("BLUE", 1)])
    assert extra["number"] not in {o["number"] for o in shop.orders}
    page.goto(f"{app_server}/orders?q={extra['number']}")
    page.get_by_role("heading", name="Orders").wait_for(timeout=20_000)
    page.wait_for_timeout(1500)
    assert f"#{extra['number']}" not in table_cells(page)

    # A refresh on a sub-page keeps the clerk signed in, on that page.
    page.goto(f"{app_server}/new-order")
    page.get_by_role("heading", name="New order").wait_for(timeout=20_000)
    page.reload()
    page.get_by_text("Signed in as").wait_for(timeout=20_000)
    page.get_by_role("heading", name="New order").wait_for(timeout=20_000)
    assert page.get_by_role("button", name="Sign in").count() == 0
    shot(page, "new-order")
    context.close()


def test_a_wrong_password_keeps_the_door_shut(db, tenant, app_server, browser):
    shop = seed_shop(db, tenant)
    context = browser.new_context()
    page = context.new_page()
    page.goto(app_server)
    page.get_by_label("Login").first.fill(shop.login("owner"))
    page.get_by_label("Password").first.fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_timeout(2000)
    assert page.get_by_text("Signed in as").count() == 0
    shot(page, "sign-in-refused")
    context.close()


def test_a_clerk_places_pays_and_ships_an_order_then_finds_it_and_its_timeline(
    db, tenant, app_server, browser
):
    shop = seed_shop(db, tenant)
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    sign_in(page, app_server, shop.login("clerk"))
    page.get_by_text("Orders to ship").first.wait_for(timeout=20_000)  # signed in, the cookie is set

    # Place: the first customer and product are picked; add one line and place it.
    page.goto(f"{app_server}/new-order")
    page.get_by_role("heading", name="New order").wait_for(timeout=20_000)
    settle(page)
    page.get_by_role("button", name="Add line").click()
    act(page, page.get_by_role("button", name="Place order"), "reserved in full", "place")
    [placed] = [
        o
        for o in list_orders(db, tenant.id, CLI).rows
        if o["number"] not in {x["number"] for x in shop.orders}
    ]
    number = placed["number"]

    # Pay, then ship with a carrier and a tracking number, from the order's detail (opened by URL).
    page.goto(f"{app_server}/orders?order={number}")
    page.get_by_role("button", name="Record payment of").wait_for(timeout=20_000)
    act(page, page.get_by_role("button", name="Record payment of"), f"Order #{number} is now paid.", "pay")
    # The order's own ship form (the bulk one has a Carrier field too, folded away in its expander).
    page.locator("input[aria-label='Carrier']:visible").fill("DHL")
    page.locator("input[aria-label='Tracking number']:visible").fill("JD0146000001")
    act(page, page.get_by_role("button", name="Ship", exact=True), f"Order #{number} is now shipped.", "ship")
    page.get_by_role("tab", name="Timeline").last.click()
    page.wait_for_timeout(1000)
    assert "Order shipped" in table_cells(page)
    shot(page, "order-timeline")
    detail = order_detail(db, tenant.id, CLI, number)
    assert [(s["carrier"], s["tracking"]) for s in detail["shipments"]] == [("DHL", "JD0146000001")]

    # A shared URL filtered to shipped orders finds it.
    page.goto(f"{app_server}/orders?status=shipped")
    page.get_by_role("heading", name="Orders").wait_for(timeout=20_000)
    page.wait_for_timeout(1500)
    assert f"#{number}" in table_cells(page)
    context.close()


def test_every_page_an_owner_sees_renders_without_an_error(db, tenant, app_server, browser):
    from app.navigation import PAGES, allowed

    shop = seed_shop(db, tenant)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    sign_in(page, app_server, shop.login("owner"))
    page.get_by_text("Orders to ship").first.wait_for(timeout=20_000)  # signed in, the cookie is set
    for spec in [p for p in PAGES if allowed(p, "owner")]:
        page.goto(f"{app_server}/{spec.url_path}")
        page.get_by_role("heading", name=spec.title).first.wait_for(timeout=20_000)
        page.wait_for_timeout(500)
        assert page.locator("[data-testid=stException]").count() == 0, spec.title
        shot(page, f"page-{spec.url_path}")
    context.close()


def test_an_analyst_clicks_a_bar_and_sees_the_orders_behind_it(db, tenant, app_server, browser):
    from core.analytics import store

    shop = seed_shop(db, tenant)
    followable(db, tenant.id)
    store.sync(db, tenant.id)  # what the worker's analytics job does
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = context.new_page()
    sign_in(page, app_server, shop.login("analyst"))
    # Reports is the analyst's home, which Streamlit serves at the root (its own path is "not found").
    page.goto(f"{app_server}/?range=custom&from=2025-03-01&to=2025-03-05")
    page.get_by_role("heading", name="Reports").wait_for(timeout=20_000)
    from playwright.sync_api import expect

    expect(page.locator("[data-testid=stMetricValue]").first).to_have_text(
        "$12.50", timeout=20_000
    )  # revenue
    settle(page)
    bars = page.locator(".js-plotly-plot .bars path:visible")  # the pos order has no revenue: no height
    bars.first.wait_for(timeout=20_000)
    shot(page, "reports")
    box = bars.first.bounding_box()  # plotly takes clicks on its drag layer above the bars
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    try:
        page.get_by_text("Orders behind").wait_for(timeout=30_000)
    except Exception:
        shot(page, "failed-drill")
        raise
    settle(page)
    assert "drill=2025-03-03" in page.url
    cells = table_cells(page)
    assert any(c.startswith("#") for c in cells)
    shot(page, "reports-drill")
    context.close()
