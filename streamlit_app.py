"""The Streamlit entry point: page setup and navigation only; pages live in pages/."""

import streamlit as st

st.set_page_config(page_title="OMS", layout="wide")
st.navigation([st.Page("pages/system.py", title="System", icon=":material/monitor_heart:")]).run()
