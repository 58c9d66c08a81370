"""Tenants (platform admin): the shops on this installation. No shop's orders are visible here."""

import pandas as pd
import streamlit as st

from app.database import database
from app.format import local_time
from app.session import require_session
from core import tenants

session = require_session()
st.title("Tenants")
if not session.is_platform_admin:
    st.error("Only a platform admin sees the tenants.")
    st.stop()

shops = tenants.list_tenants(database())
if not shops:
    st.info(
        "No shop yet. Create one with `oms tenant create NAME`, then its first owner with `oms user add`."
    )
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
