"""Who is signed in, for this browser session: sign-in form, signed cookie, sign-out, tenant context.

streamlit-authenticator 0.4.2 checks passwords only against a credentials dict it holds in memory, so it
cannot check them through PostgreSQL. We use its cookie handling (a JWT signed with the cookie secret,
set and deleted through extra-streamlit-components' CookieManager, read back from st.context.cookies) and
its session-state keys; the password check, lockout and account state are core.auth's. The
Authenticate object is created once per session and kept in session state.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import psycopg
import psycopg_pool
import streamlit as st
import streamlit_authenticator as stauth

from app.database import database
from core import auth, tenants
from core.auth import Session, SignInError
from core.commands import Actor
from core.errors import OmsError
from core.settings import get_settings

COOKIE_NAME = "oms_auth"
COOKIE_DAYS = 1.0
AUTHENTICATOR = "oms_authenticator"
SESSION = "oms_session"
SET_COOKIE = "oms_cookie_to_set"
DELETE_COOKIE = "oms_cookie_to_delete"
NOTICE = "oms_sign_in_notice"
# The database not answering: shown as a sentence, never a traceback.
UNAVAILABLE = (psycopg.Error, psycopg_pool.PoolTimeout, OSError)
DB_DOWN = (
    "The database is not reachable, so you cannot sign in right now. Check that PostgreSQL is running"
    " and DATABASE_URL points at it, then reload this page."
)


def authenticator() -> stauth.Authenticate:
    """The session's one Authenticate object (its constructor renders the cookie component once)."""
    if AUTHENTICATOR not in st.session_state:
        st.session_state[AUTHENTICATOR] = stauth.Authenticate(
            {"usernames": {}},
            cookie_name=COOKIE_NAME,
            cookie_key=get_settings().cookie_key(),
            cookie_expiry_days=COOKIE_DAYS,
            auto_hash=False,
        )
    return st.session_state[AUTHENTICATOR]


def current_session() -> Session | None:
    """The signed-in session: from session state, else from a valid signed cookie (a refresh or a new
    tab), else None. Also sets or deletes the cookie a sign-in or sign-out of the previous run asked for:
    the cookie component has to render in a run that completes, not one cut short by st.rerun()."""
    authn = authenticator()
    if st.session_state.pop(DELETE_COOKIE, False):
        authn.cookie_controller.delete_cookie()
    session = st.session_state.get(SESSION)
    if session is None:
        token = authn.cookie_controller.get_cookie()  # None/False after a sign-out in this session
        if token:
            try:
                session = auth.restore(database(), token["username"])
            except OmsError as exc:
                st.session_state[NOTICE] = str(exc)
            except UNAVAILABLE:
                st.session_state[NOTICE] = DB_DOWN
            if session is not None:
                _remember(session)
    if session is not None and st.session_state.pop(SET_COOKIE, False):
        authn.cookie_controller.set_cookie()
    return session


def _remember(session: Session) -> None:
    st.session_state[SESSION] = session
    # streamlit-authenticator's own keys: the cookie it signs carries st.session_state["username"].
    st.session_state["username"] = session.login
    st.session_state["name"] = session.display_name
    st.session_state["authentication_status"] = True
    st.session_state["roles"] = [session.role]
    st.session_state["logout"] = None


def sign_in_page() -> None:
    """The sign-in form: a login written username@shop and a password."""
    st.title("Sign in to OMS")
    if notice := st.session_state.pop(NOTICE, None):
        st.info(notice)
    with st.form("sign_in", clear_on_submit=False):
        login = st.text_input(
            "Login", key="sign_in_login", placeholder="username@shop", autocomplete="username"
        )
        password = st.text_input("Password", key="sign_in_password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    st.caption("Your login is your username, '@', and your shop's short name, for example anna@acme.")
    if submitted:
        try:
            session = auth.authenticate(database(), login, password)
        except SignInError as exc:
            st.error(str(exc))
            return
        except UNAVAILABLE:
            st.error(DB_DOWN)
            return
        _remember(session)
        st.session_state[SET_COOKIE] = True
        st.rerun()


def sign_out() -> None:
    """Forget the session here; the next run deletes the cookie and shows the sign-in form."""
    authenticator().authentication_controller.logout()  # sets session_state["logout"], clears its keys
    st.session_state.pop(SESSION, None)
    st.session_state.pop(SET_COOKIE, None)
    st.session_state[DELETE_COOKIE] = True


def account_sidebar(session: Session) -> None:
    with st.sidebar:
        where = f" · {tenant(session).name}" if session.tenant_id else " · platform"
        st.caption(f"Signed in as **{session.display_name}** ({session.role.replace('_', ' ')}){where}")
        st.button("Sign out", key="sign_out", on_click=sign_out, use_container_width=True)


def require_session() -> Session:
    """For pages: the signed-in session (navigation lists a page only for a signed-in user)."""
    session = st.session_state.get(SESSION)
    if session is None:
        st.warning("Please sign in.")
        st.stop()
    return session


@dataclass(frozen=True)
class TenantContext:
    """What a tenant page needs: the tenant, and the signed-in actor acting in it."""

    session: Session
    tenant: tenants.Tenant

    @property
    def tenant_id(self):
        return self.tenant.id

    @property
    def actor(self) -> Actor:
        return self.session.actor

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tenant.time_zone)


@st.cache_data(ttl=300, show_spinner=False)
def _tenant(tenant_id: str) -> tenants.Tenant:
    # Keyed by tenant id: st.cache_data is shared by every session.
    return tenants.get_tenant(database(), tenant_id)


def refresh_tenant() -> None:
    """Forget the cached shop details, after the owner changed its currency or time zone."""
    _tenant.clear()


def tenant(session: Session) -> tenants.Tenant:
    return _tenant(str(session.tenant_id))


def tenant_context() -> TenantContext:
    session = require_session()
    if session.tenant_id is None:
        st.info("This page belongs to a shop; a platform admin sees no shop's data.")
        st.stop()
    return TenantContext(session, tenant(session))
