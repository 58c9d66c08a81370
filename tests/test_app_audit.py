"""The Audit trail page through AppTest, signed in through the real form: who sees it, filters over
the real event log, a clear message for a bad filter, and an export that is recorded and verifies."""

from __future__ import annotations

import pytest
from app_helpers import app, seed_shop, sign_in, texts, titles
from conftest import catch_up

from app.navigation import page_specs
from core import audit
from core.errors import PermissionDenied
from core.projections import EventTypeCounts

AUDIT = "pages/audit.py"


@pytest.fixture
def shop(db, tenant):
    seeded = seed_shop(db, tenant)
    catch_up(db, tenant.id, EventTypeCounts())  # what the worker does: the type filter lists these
    return seeded


def audit_page(shop, role: str):
    at = sign_in(app(), shop.login(role))
    at.switch_page(AUDIT).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("role", ["owner", "manager"])
def test_owners_and_managers_read_the_log_newest_first(db, shop, role):
    at = audit_page(shop, role)
    assert titles(at) == ["Audit trail"]
    table = at.dataframe[0].value
    assert list(table["Position"]) == sorted(table["Position"], reverse=True)
    assert {"OrderPlaced", "OrderPaid", "ProductAdded"} <= set(table["Event"])


@pytest.mark.parametrize("role", ["clerk", "analyst"])
def test_clerks_and_analysts_get_no_audit_page_and_core_refuses_them(db, shop, role):
    at = sign_in(app(), shop.login(role))
    assert "Audit trail" not in [p.title for p in page_specs(at.session_state["oms_session"])]
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(AUDIT)
    actor = at.session_state["oms_session"].actor
    with pytest.raises(PermissionDenied):
        audit.browse(db, shop.tenant.id, actor)


def test_filters_by_order_and_type_and_a_bad_order_is_a_message(shop, other_tenant, db):
    seed_shop(db, other_tenant)  # the same order numbers in another shop must not show
    at = audit_page(shop, "manager")
    first = shop.orders[0]
    at.text_input(key="audit_order").input(str(first["number"])).run()
    table = at.dataframe[0].value
    assert set(table["Stream"]) == {f"order-{first['order_id']}"}
    assert list(table["Event"])[::-1][:2] == ["OrderPlaced", "OrderReserved"]

    at.multiselect(key="audit_types").select("OrderPaid").run()
    assert list(at.dataframe[0].value["Event"]) == ["OrderPaid"]

    at.text_input(key="audit_order").input("999999").run()
    assert not at.exception
    assert "no order #999999" in texts(at, "warning")
    assert "No event matches these filters" in texts(at, "info")


def test_an_export_is_offered_for_download_recorded_and_verifies(db, owner, shop, tmp_path):
    at = audit_page(shop, "manager")
    at.selectbox(key="audit_format").select("jsonl").run()
    at.button(key="audit_export").click().run()
    assert not at.exception
    assert "Exported" in texts(at, "success")
    files = at.session_state["audit_files"]
    name = f"{shop.tenant.slug}-audit.jsonl"
    assert set(files) == {name, f"{name}.manifest.json"}
    for file_name, content in files.items():
        (tmp_path / file_name).write_bytes(content)
    result = audit.verify_file(tmp_path / name)
    assert result.ok and result.checked > 10
    [(who,)] = owner.execute(
        "SELECT metadata->>'actor' FROM events WHERE tenant_id = %s AND event_type = 'AuditTrailExported'",
        [shop.tenant.id],
    ).fetchall()
    assert who == at.session_state["oms_session"].actor.name
