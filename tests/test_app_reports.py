"""The Reports and SQL workbench pages through AppTest: who sees them, KPIs from the synced store in
the shop's currency, the view and the drill-down kept in the URL, hostile URLs and queries answered
with a message, and exports that read back."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from app_helpers import T0, app, seed_shop, sign_in, texts, titles
from conftest import followable

from app.exports import FORMATS, as_bytes
from app.navigation import page_specs
from core.analytics import reports, store
from core.errors import PermissionDenied

REPORTS, WORKBENCH = "pages/reports.py", "pages/workbench.py"
AROUND_T0 = {"range": "custom", "from": "2025-03-01", "to": "2025-03-05"}


@pytest.fixture
def shop(db, tenant):
    seeded = seed_shop(db, tenant)
    followable(db, tenant.id)  # no open transaction on the server can still precede the events
    store.sync(db, tenant.id)  # what the worker's analytics job does
    return seeded


def open_page(shop, role: str, page: str = REPORTS, **params: str):
    at = sign_in(app(), shop.login(role))
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def metric(at, label: str) -> str:
    [m] = [m for m in at.metric if m.label == label]
    return m.value


@pytest.mark.parametrize("role", ["owner", "manager", "analyst"])
def test_report_readers_get_both_pages(shop, role):
    at = open_page(shop, role, **AROUND_T0)
    assert titles(at) == ["Reports"]
    names = [p.title for p in page_specs(at.session_state["oms_session"])]
    assert {"Reports", "SQL workbench"} <= set(names)


def test_an_analyst_lands_on_reports(shop):
    at = sign_in(app(), shop.login("analyst"))
    assert titles(at) == ["Reports"]


def test_a_clerk_gets_neither_and_core_refuses(shop):
    at = sign_in(app(), shop.login("clerk"))
    names = [p.title for p in page_specs(at.session_state["oms_session"])]
    assert "Reports" not in names and "SQL workbench" not in names
    with pytest.raises(PermissionDenied):
        reports.open_store(at.session_state["oms_session"].actor, shop.tenant.id)


def test_kpis_of_the_period_in_the_shops_currency(shop):
    at = open_page(shop, "analyst", **AROUND_T0)
    # Three orders on 3 March 2025, one paid: 12.50 of revenue.
    assert metric(at, "Orders") == "3"
    assert metric(at, "Revenue") == "$12.50"
    assert metric(at, "Units") == "6"
    assert metric(at, "Average order") == "$12.50"
    assert "2025-03-01 – 2025-03-05" in texts(at, "caption")


def test_the_view_is_kept_in_the_url(shop):
    at = open_page(shop, "analyst", **AROUND_T0)
    at.selectbox(key="rep_by").select("product").run()
    assert at.query_params["by"] == ["product"] or at.query_params["by"] == "product"
    table = at.dataframe[0].value
    assert set(table["product"]) == {"RED"}  # item sales count paid orders only


def test_a_drill_down_from_the_url_lists_the_orders_behind_the_bar(shop):
    pos = shop.orders[1]
    at = open_page(shop, "analyst", **AROUND_T0, drill="2025-03-03", key="pos")
    drilled = at.dataframe[1].value
    assert list(drilled["number"]) == [f"#{pos['number']}"]
    at.button(key="rep_clear").click().run()
    assert "drill" not in at.query_params


@pytest.mark.parametrize(
    "params",
    [
        {"range": "bogus"},
        {"range": "custom", "from": "not-a-date", "to": "2025-13-40"},
        {"channel": "web',drop table orders;--", "by": "<script>", "grain": "year"},
        {"range": "custom", "from": "2025-03-05", "to": "2025-03-01"},
        {"drill": "yesterday", "key": "x" * 5000},
    ],
)
def test_a_hostile_url_falls_back_to_the_defaults(shop, params):
    at = open_page(shop, "analyst", **params)
    assert titles(at) == ["Reports"]
    assert not at.error


def test_an_empty_store_says_what_to_wait_for(db, tenant):
    shop = seed_shop(db, tenant)  # not synced yet
    at = open_page(shop, "analyst", **AROUND_T0)
    assert "fill in once the worker" in texts(at, "info")
    assert metric(at, "Orders") == "0"


def test_the_workbench_runs_a_select_and_refuses_a_change(shop):
    at = open_page(shop, "analyst", WORKBENCH)
    at.text_area(key="wb_query").input("SELECT number, status FROM orders ORDER BY number")
    at.button(key="wb_run").click().run()
    assert not at.error
    result = at.dataframe[0].value  # the left column (the result) comes before the schema
    assert list(result["number"]) == sorted(o["number"] for o in shop.orders)
    at.text_area(key="wb_query").input("DROP TABLE orders")
    at.button(key="wb_run").click().run()
    assert "Only SELECT" in texts(at, "error")
    at.text_area(key="wb_query").input("SELECT * FROM read_csv('/etc/passwd')")
    at.button(key="wb_run").click().run()
    assert at.error and not at.exception


def test_exports_read_back():
    frame = pd.DataFrame(
        {"number": [1001, 1002], "customer": ["Ada", '=HYPERLINK("x")'], "at": pd.to_datetime([T0, T0])}
    )
    for fmt in FORMATS:
        data = as_bytes(frame, fmt)
        back = {
            "CSV": lambda b: pd.read_csv(io.BytesIO(b)),
            "XLSX": lambda b: pd.read_excel(io.BytesIO(b)),
            "Parquet": lambda b: pd.read_parquet(io.BytesIO(b)),
        }[fmt](data)
        assert list(back["number"]) == [1001, 1002], fmt
        assert list(back["customer"]) == list(frame["customer"]), fmt
