"""Opening a shop from the Tenants page (platform admin): the tenant and its first owner, who can then
sign in; bad input says why and creates nothing; nobody else may open a shop, even calling core."""

from __future__ import annotations

import uuid

import pytest
from app_helpers import app, sign_in, texts, titles

from core import auth, tenants
from core.commands import Actor
from core.errors import PermissionDenied, ValidationError

OWNER_PASSWORD = "owner password 1"


@pytest.fixture
def admin(db):
    name = f"admin-{uuid.uuid4().hex[:6]}"
    tenants.add_platform_admin(db, name, "platform password")
    at = sign_in(app(), name, "platform password")
    assert titles(at) == ["Tenants"]
    return at


def fill(at, name: str, owner: str = "olga", password: str = OWNER_PASSWORD, again: str | None = None):
    at.text_input(key="shop_name").input(name)
    at.selectbox(key="shop_currency").select("EUR")
    at.selectbox(key="shop_zone").select("Europe/Paris")
    at.text_input(key="shop_owner").input(owner)
    at.text_input(key="shop_password").input(password)
    at.text_input(key="shop_password_again").input(password if again is None else again)
    next(b for b in at.button if b.label == "Open the shop").click().run()
    assert not at.exception


def test_a_platform_admin_opens_a_shop_whose_owner_can_sign_in(db, admin):
    name = f"Chez Olga {uuid.uuid4().hex[:6]}"
    fill(admin, name)
    shop = next(t for t in tenants.list_tenants(db) if t.name == name)
    assert (shop.currency, shop.time_zone) == ("EUR", "Europe/Paris")
    assert f"Its owner signs in as olga@{shop.slug}" in texts(admin, "success")
    assert shop.slug in admin.dataframe[0].value.to_string()
    session = auth.authenticate(db, f"olga@{shop.slug}", OWNER_PASSWORD)
    assert (session.role, session.tenant_id) == ("owner", shop.id)


@pytest.mark.parametrize(
    ("owner", "password", "again", "words"),
    [
        ("olga", "short", None, "password"),
        ("olga", OWNER_PASSWORD, "something else", "The two passwords differ"),
        ("bad name!", OWNER_PASSWORD, None, "username"),
    ],
)
def test_bad_input_says_why_and_opens_nothing(db, admin, owner, password, again, words):
    before = len(tenants.list_tenants(db))
    fill(admin, f"Half shop {uuid.uuid4().hex[:6]}", owner, password, again)
    errors = texts(admin, "error")
    assert words in errors and "othing was created" in errors
    assert len(tenants.list_tenants(db)) == before


def test_only_a_platform_admin_opens_a_shop_even_through_core(db):
    before = len(tenants.list_tenants(db))
    for role in tenants.ROLES:
        with pytest.raises(PermissionDenied):
            tenants.open_shop(
                db, Actor("x", role), "Sneaky shop", owner_username="x", owner_password=OWNER_PASSWORD
            )
    with pytest.raises(ValidationError):
        tenants.open_shop(
            db,
            Actor("root", tenants.PLATFORM_ADMIN),
            "Bad zone",
            time_zone="Mars/Olympus",
            owner_username="x",
            owner_password=OWNER_PASSWORD,
        )
    assert len(tenants.list_tenants(db)) == before
