"""Sign-in: who a login names, whether the password is right, lockout, and changing a password.

A tenant user signs in as `username@tenant-slug`, a platform admin with a bare username. The lookup and
the lockout bookkeeping cross tenants, so they go through the narrow SECURITY DEFINER functions of
migration 0004; the bcrypt check happens here. Every refusal is one clear sentence and writes nothing
but the failure count.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from core import eventstore as es
from core.commands import Actor
from core.db import Database
from core.errors import OmsError, ValidationError
from core.tenants import MIN_PASSWORD, PLATFORM_ADMIN, NewUser, check_password, checked, hash_password

MAX_FAILURES = 5
LOCK_MINUTES = 15
LOOKUP = (
    "SELECT tenant_id, tenant_slug, user_id, username, display_name, role, active, password_hash,"
    " locked_until FROM oms_sign_in_lookup(%s)"
)
RECORD = "SELECT oms_sign_in_record(%s, %s, %s, %s)"
SET_PASSWORD = "UPDATE user_credentials SET password_hash = %s, changed_at = now() WHERE user_id = %s"
SET_ADMIN_PASSWORD = "SELECT oms_platform_admin_set_password(%s, %s)"
LOGIN_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}(@[a-z0-9][a-z0-9-]{0,62})?$")
# Checked when a login names nobody, so an unknown login takes as long as a wrong password.
_DUMMY_HASH = hash_password("not a password of anyone")


class SignInError(OmsError):
    """Wrong login or password, a locked or deactivated account: the message says which it may say."""


class AccountLocked(SignInError):
    def __init__(self, until: datetime):
        self.until = until
        super().__init__(
            f"too many failed sign-ins: this account is locked until {until:%H:%M} UTC; try again then"
        )


WRONG = "wrong login or password (a login is username@shop, for example anna@acme)"


@dataclass(frozen=True)
class Session:
    """The signed-in person: a tenant's user, or a platform admin (tenant_id None)."""

    login: str
    username: str
    display_name: str
    role: str
    tenant_id: uuid.UUID | None = None
    tenant_slug: str | None = None
    user_id: uuid.UUID | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role)

    @property
    def is_platform_admin(self) -> bool:
        return self.role == PLATFORM_ADMIN


def normalise_login(login: object) -> str:
    if not isinstance(login, str):
        raise SignInError(WRONG)
    text = login.strip().lower()
    if not LOGIN_PATTERN.fullmatch(text):
        raise SignInError(WRONG)
    return text


def _lookup(db: Database, login: str) -> tuple | None:
    with db.connection() as conn:
        return conn.execute(LOOKUP, [login]).fetchone()


def _session(login: str, row: tuple) -> Session:
    tenant_id, slug, user_id, username, display_name, role, *_ = row
    return Session(login, username, display_name or username, role, tenant_id, slug, user_id)


def authenticate(db: Database, login: object, password: object) -> Session:
    """The session for a right login and password; SignInError (or AccountLocked) otherwise.
    A failure counts towards the lockout; the MAX_FAILURES-th in a row locks the account."""
    text = normalise_login(login)
    if not isinstance(password, str) or not password:
        raise SignInError("enter your password")
    row = _lookup(db, text)
    if row is None:
        check_password(password, _DUMMY_HASH)
        raise SignInError(WRONG)
    active, password_hash, locked_until = row[6], row[7], row[8]
    if locked_until is not None and locked_until > datetime.now(UTC):
        raise AccountLocked(locked_until)
    ok = check_password(password, password_hash)
    with db.connection() as conn:
        until = conn.execute(RECORD, [text, ok, MAX_FAILURES, LOCK_MINUTES]).fetchone()[0]
    if not ok:
        if until is not None and until > datetime.now(UTC):
            raise AccountLocked(until)
        raise SignInError(WRONG)
    if not active:
        raise SignInError("this account is deactivated; ask the shop's owner to reactivate it")
    return _session(text, row)


def restore(db: Database, login: object) -> Session:
    """The session for a login whose signed cookie is still valid: the account must still exist, be
    active and not locked. Role and name are read afresh, so a role change applies on the next visit."""
    text = normalise_login(login)
    row = _lookup(db, text)
    if row is None or not row[6]:
        raise SignInError("your sign-in has ended; please sign in again")
    if row[8] is not None and row[8] > datetime.now(UTC):
        raise AccountLocked(row[8])
    return _session(text, row)


def change_password(db: Database, session: Session, current: object, new: object) -> None:
    """Change the signed-in person's own password after checking the current one."""
    if not isinstance(new, str) or len(new) < MIN_PASSWORD:
        raise ValidationError(f"the new password needs at least {MIN_PASSWORD} characters")
    checked(NewUser, username=session.username, role=session.role, password=new)
    if new == current:
        raise ValidationError("the new password is the same as the current one")
    try:
        authenticate(db, session.login, current)
    except AccountLocked:
        raise
    except SignInError:  # a wrong current password counts towards the lockout like any other
        raise SignInError("the current password is wrong; the password was not changed") from None
    new_hash = hash_password(new)
    if session.is_platform_admin:
        with db.connection() as conn:
            conn.execute(SET_ADMIN_PASSWORD, [session.username, new_hash])
        return
    event = es.NewEvent(event_type="UserPasswordChanged", data={"user_id": str(session.user_id)})
    with db.tenant(session.tenant_id) as conn:
        conn.execute(SET_PASSWORD, [new_hash, session.user_id])
        es.append(
            conn,
            [es.StreamAppend(f"user-{session.user_id}", "user", [event], expected_version=None)],
            es.Metadata(session.username),
        )
