"""Tenants (platform admin): the shops on this installation, and opening a new one with its first owner.
No shop's orders are visible here."""

from zoneinfo import available_timezones

import pandas as pd
import streamlit as st

from app.database import database
from app.format import local_time
from app.session import UNAVAILABLE, require_session
from core import tenants
from core.errors import OmsError
from core.money import COMMON_CURRENCIES

ZONES = sorted(available_timezones())

session = require_session()
st.title("Tenants")
if not session.is_platform_admin:
    st.error("Only a platform admin sees the tenants.")
    st.stop()

shops = tenants.list_tenants(database())
if flash := st.session_state.pop("tenants_flash", None):
    st.success(flash)

with st.expander("Open a new shop", expanded=not shops), st.form("open_shop", clear_on_submit=False):
    c = st.columns(3)
    name = c[0].text_input("Shop name", key="shop_name")
    currency = c[1].selectbox("Currency", COMMON_CURRENCIES, key="shop_currency")
    zone = c[2].selectbox("Time zone", ZONES, index=ZONES.index("UTC"), key="shop_zone")
    o = st.columns(3)
    owner = o[0].text_input("First owner's username", key="shop_owner")
    password = o[1].text_input("Owner's password", type="password", key="shop_password")
    again = o[2].text_input("Password again", type="password", key="shop_password_again")
    if st.form_submit_button("Open the shop"):
        if password != again:
            st.error("The two passwords differ; nothing was created.")
        else:
            try:
                shop = tenants.open_shop(
                    database(),
                    session.actor,
                    name,
                    currency=currency,
                    time_zone=zone,
                    owner_username=owner,
                    owner_password=password,
                )
            except OmsError as exc:
                st.error(f"{exc} Nothing was created.")
            except UNAVAILABLE:
                st.error("The database is not reachable; nothing was created. Try again shortly.")
            else:
                st.session_state.tenants_flash = (
                    f"{shop.name} is open. Its owner signs in as {owner.strip().lower()}@{shop.slug}."
                )
                st.rerun()

if not shops:
    st.info("No shop yet. Open the first one above; its owner then adds the staff in Settings.")
    st.stop()
st.dataframe(
    pd.DataFrame(
        [
            {
                "Name": t.name,
                "Slug (sign-in suffix)": t.slug,
                "Currency": t.currency,
                "Time zone": t.time_zone,
                "Created (UTC)": local_time(t.created_at, "UTC"),
            }
            for t in shops
        ]
    ),
    hide_index=True,
    use_container_width=True,
)
st.caption(f"{len(shops)} shops. Staff sign in as username@slug.")
