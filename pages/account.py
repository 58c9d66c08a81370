"""Account: who is signed in, and changing one's own password."""

import streamlit as st

from app.database import database
from app.session import UNAVAILABLE, require_session
from core import auth
from core.errors import OmsError
from core.tenants import MIN_PASSWORD

session = require_session()
st.title("Account")
st.write(f"**{session.display_name}** · login `{session.login}` · role {session.role.replace('_', ' ')}")
if session.role == "analyst":
    st.info("Reports for analysts are on their way; until then, this page is where your account lives.")

st.subheader("Change password")
with st.form("change_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="pw_current")
    new = st.text_input(f"New password (at least {MIN_PASSWORD} characters)", type="password", key="pw_new")
    again = st.text_input("New password again", type="password", key="pw_again")
    submitted = st.form_submit_button("Change password")
if submitted:
    if new != again:
        st.error("The two new passwords differ; the password was not changed.")
    else:
        try:
            auth.change_password(database(), session, current, new)
        except OmsError as exc:
            st.error(str(exc))
        except UNAVAILABLE:
            st.error("The database is not reachable; the password was not changed. Try again shortly.")
        else:
            st.success("Password changed. Use the new one next time you sign in.")
