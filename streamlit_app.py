"""The Streamlit entry point: sign-in, then the pages the signed-in person's role allows (pages/)."""

import streamlit as st

from app.navigation import pages_for
from app.session import account_sidebar, current_session, sign_in_page

st.set_page_config(page_title="OMS", layout="wide")
if (session := current_session()) is None:
    st.navigation([st.Page(sign_in_page, title="Sign in", url_path="sign-in")], position="hidden").run()
else:
    account_sidebar(session)
    st.navigation(pages_for(session)).run()
