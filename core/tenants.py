"""Tenants (the businesses sharing this installation), their users and the platform administrators.

Creating and listing tenants crosses tenants, so it goes through the narrow SECURITY DEFINER
functions of migration 0001; everything inside a tenant runs in that tenant's transaction.
Each change is also an event in the tenant's log, for the audit trail (password hashes stay out of it).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import bcrypt
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from core import eventstore as es
from core.db import Database, as_tenant_id
from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from core.projections import Projection, fold

if TYPE_CHECKING:
    from core.commands import Actor

ROLES = ("owner", "manager", "clerk", "analyst")
PLATFORM_ADMIN = "platform_admin"
MIN_PASSWORD = 8

TENANT_BY_ID = "SELECT id, slug, name, currency::text, time_zone, created_at FROM tenants WHERE id = %s"
ALL_TENANTS = "SELECT id, slug, name, currency, time_zone, created_at FROM oms_platform_tenants()"
CREATE_TENANT = "SELECT oms_platform_create_tenant(%s, %s, %s, %s, %s)"
ADD_CREDENTIALS = (
    "INSERT INTO user_credentials (tenant_id, user_id, password_hash) VALUES (oms_current_tenant(), %s, %s)"
)
LIST_USERS = "SELECT id, username, display_name, role, active, created_at FROM users ORDER BY username"
ADD_ADMIN = "SELECT oms_platform_add_admin(%s, %s)"


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    slug: str
    name: str
    currency: str
    time_zone: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    username: str
    display_name: str
    role: str
    active: bool
    created_at: datetime


class NewTenant(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    time_zone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        v = v.strip()
        if not v or not v.isprintable():
            raise ValueError("name must be printable text")
        return v

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v[:60]}'") from None
        return v


class NewUser(BaseModel):
    username: str
    role: str
    password: str = Field(min_length=MIN_PASSWORD, max_length=72)  # bcrypt reads 72 bytes at most
    display_name: str = Field(default="", max_length=200)

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,62}", v):
            raise ValueError(
                "use 2 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return v

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in (*ROLES, PLATFORM_ADMIN):
            raise ValueError(f"role must be one of {', '.join((*ROLES, PLATFORM_ADMIN))}")
        return v


def checked(model: type[BaseModel], **values: object) -> BaseModel:
    """Validate input with pydantic and turn its report into one clear sentence."""
    try:
        return model(**values)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise ValidationError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63] or "tenant"


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode()[:72], password_hash.encode())


def create_tenant(
    db: Database,
    name: str,
    *,
    slug: str | None = None,
    currency: str = "USD",
    time_zone: str = "UTC",
    actor: str = "platform",
) -> Tenant:
    new = checked(NewTenant, name=name, slug=slug or slugify(name), currency=currency, time_zone=time_zone)
    tid = uuid.uuid4()
    with db.connection() as conn, conn.transaction():
        try:
            conn.execute(CREATE_TENANT, [tid, new.slug, new.name, new.currency, new.time_zone])
        except pg_errors.UniqueViolation:
            raise Conflict(f"a tenant with the slug '{new.slug}' already exists") from None
        event = es.NewEvent(event_type="TenantCreated", data=new.model_dump())
        es.append(
            conn, [es.StreamAppend(f"tenant-{tid}", "tenant", [event])], es.Metadata(actor), tenant_id=tid
        )
    return get_tenant(db, tid)


def open_shop(
    db: Database,
    actor: Actor,
    name: str,
    *,
    currency: str = "USD",
    time_zone: str = "UTC",
    owner_username: str,
    owner_password: str,
) -> Tenant:
    """A platform admin opens a shop: the tenant and its first owner. Everything is checked before
    anything is written, so bad input leaves no half-made shop."""
    if actor.role != PLATFORM_ADMIN:
        raise PermissionDenied("only a platform admin opens shops")
    new = checked(NewTenant, name=name, slug=slugify(name), currency=currency, time_zone=time_zone)
    checked(NewUser, username=owner_username, role="owner", password=owner_password)
    tenant = create_tenant(
        db, new.name, currency=new.currency, time_zone=new.time_zone, actor=f"platform:{actor.name}"
    )
    add_user(db, tenant.id, owner_username, "owner", owner_password, actor=f"platform:{actor.name}")
    return tenant


def get_tenant(db: Database, tenant_id: object) -> Tenant:
    tid = as_tenant_id(tenant_id)
    with db.tenant(tid) as conn:
        row = conn.execute(TENANT_BY_ID, [tid]).fetchone()
    if not row:
        raise NotFound(f"no tenant with id {tid}")
    return Tenant(*row)


def list_tenants(db: Database) -> list[Tenant]:
    with db.connection() as conn:
        return [Tenant(*r) for r in conn.execute(ALL_TENANTS)]


def resolve_tenant(db: Database, ref: str) -> Tenant:
    """A tenant from its id or its slug, as people type it on the command line."""
    ref = str(ref).strip()
    for t in list_tenants(db):
        if ref in (str(t.id), t.slug):
            return t
    raise NotFound(f"no tenant '{ref[:60]}'")


def add_user(
    db: Database,
    tenant_id: object,
    username: str,
    role: str,
    password: str,
    *,
    display_name: str = "",
    actor: str = "platform",
) -> User:
    new = checked(NewUser, username=username, role=role, password=password, display_name=display_name)
    if new.role == PLATFORM_ADMIN:
        raise ValidationError("a platform admin belongs to no tenant: add it without a tenant")
    uid = uuid.uuid4()
    event = es.NewEvent(
        event_type="UserAdded",
        data={
            "user_id": str(uid),
            "username": new.username,
            "role": new.role,
            "display_name": new.display_name,
        },
    )
    with db.tenant(tenant_id) as conn:
        try:
            result = es.append(conn, [es.StreamAppend(f"user-{uid}", "user", [event])], es.Metadata(actor))
            fold(conn, result, USERS)
            conn.execute(ADD_CREDENTIALS, [uid, hash_password(new.password)])
        except pg_errors.UniqueViolation:
            raise Conflict(f"the username '{new.username}' is taken in this tenant") from None
        except es.NotFound:
            raise NotFound(f"no tenant with id {tenant_id}") from None
    return next(u for u in list_users(db, tenant_id) if u.id == uid)


def list_users(db: Database, tenant_id: object) -> list[User]:
    with db.tenant(tenant_id) as conn:
        return [User(*r) for r in conn.execute(LIST_USERS)]


def list_staff(db: Database, tenant_id: object, actor) -> list[User]:
    """The tenant's users, for someone who manages them (the owner)."""
    from core.commands import require

    require(actor, "users.manage")
    return list_users(db, tenant_id)


# Locked, so two owners demoting each other at once cannot leave the shop with none.
ACTIVE_OWNERS = "SELECT id FROM users WHERE role = 'owner' AND active FOR UPDATE"
USER_BY_NAME = "SELECT id, role, active FROM users WHERE username = %s"


def change_staff(
    db: Database,
    tenant_id: object,
    actor,
    username: str,
    *,
    role: str | None = None,
    active: bool | None = None,
    key: str | None = None,
) -> dict:
    """The owner changes a user's role or (de)activates the account. A deactivated user cannot sign in
    and an open session ends at the next page. The last active owner can be neither demoted nor
    deactivated: the shop would have nobody to manage it."""
    from core.commands import Context, execute

    if role is not None and role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}")
    if active is not None and not isinstance(active, bool):
        raise ValidationError("active must be true or false")
    if role is None and active is None:
        raise ValidationError("say what changes: a role, or active")
    name = str(username).strip().lower()[:63]

    def handle(ctx: Context) -> dict:
        row = ctx.conn.execute(USER_BY_NAME, [name]).fetchone()
        ctx.check_replay()
        if not row:
            raise NotFound(f"no user '{name}' in this shop")
        uid, current_role, is_active = row
        events = []
        if role is not None and role != current_role:
            events.append(
                ("UserRoleChanged", {"user_id": str(uid), "role": role, "previous_role": current_role})
            )
        if active is not None and active != is_active:
            events.append(("UserReactivated" if active else "UserDeactivated", {"user_id": str(uid)}))
        if not events:
            raise ValidationError(f"{name} already has that role and status: nothing to change")
        leaves_owners = (
            current_role == "owner" and is_active and (role not in (None, "owner") or active is False)
        )
        if leaves_owners and not [o for (o,) in ctx.conn.execute(ACTIVE_OWNERS) if o != uid]:
            raise ValidationError(f"{name} is the shop's last active owner: make someone else owner first")
        ctx.record(f"user-{uid}", "user", events, None, USERS)
        return {
            "username": name,
            "role": role or current_role,
            "active": is_active if active is None else active,
        }

    return execute(db, tenant_id, actor, "users.manage", key, handle)


def add_staff(
    db: Database,
    tenant_id: object,
    actor,
    *,
    username: str,
    role: str,
    password: str,
    display_name: str = "",
) -> User:
    """Add a user to the tenant as its owner does it: checked for users.manage, recorded under the
    actor's name. Usernames are kept in lower case (sign-in is case-insensitive)."""
    from core.commands import require

    require(actor, "users.manage")
    if isinstance(username, str):
        username = username.strip().lower()
    if isinstance(display_name, str):
        display_name = display_name.strip()
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}")
    return add_user(db, tenant_id, username, role, password, display_name=display_name, actor=actor.name)


def add_platform_admin(db: Database, username: str, password: str) -> None:
    new = checked(NewUser, username=username, role=PLATFORM_ADMIN, password=password)
    with db.connection() as conn:
        try:
            conn.execute(ADD_ADMIN, [new.username, hash_password(new.password)])
        except pg_errors.UniqueViolation:
            raise Conflict(f"the platform admin '{new.username}' already exists") from None


class UsersProjection(Projection):
    """The users table, folded inline from User* events. Credentials are not in events."""

    name = "users"
    tables = ("users",)
    kind = "inline"
    INSERT = (
        "INSERT INTO users (tenant_id, id, username, display_name, role, created_at, updated_at)"
        " VALUES (oms_current_tenant(), %s, %s, %s, %s, %s, %s)"
    )
    SET_ROLE = "UPDATE users SET role = %s, updated_at = %s WHERE id = %s"
    SET_ACTIVE = "UPDATE users SET active = %s, updated_at = %s WHERE id = %s"

    def apply(self, conn, event: es.RecordedEvent) -> None:
        d, at = event.data, event.recorded_at
        match event.event_type:
            case "UserAdded":
                conn.execute(self.INSERT, [d["user_id"], d["username"], d["display_name"], d["role"], at, at])
            case "UserRoleChanged":
                conn.execute(self.SET_ROLE, [d["role"], at, d["user_id"]])
            case "UserDeactivated" | "UserReactivated":
                conn.execute(self.SET_ACTIVE, [event.event_type == "UserReactivated", at, d["user_id"]])


USERS = UsersProjection()


# Passwords and tokens of a tenant's gateways and channels: kept out of the event log.
SAVE_SECRET = (
    "INSERT INTO tenant_secrets (tenant_id, name, value, updated_at)"
    " VALUES (oms_current_tenant(), %s, %s, now())"
    " ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value, updated_at = now()"
)
SETTINGS_COLUMNS = (
    "allocation_strategy",
    "reservation_minutes",
    "tax_rate_bp",
    "payment_attempt_limit",
    "payment_backoff_seconds",
    "circuit_failures",
    "circuit_reset_seconds",
    "notification_attempt_limit",
    "gateways",  # set by core.payments.service.set_gateways
    "notification_channels",  # set by core.notifications.settings.set_channel
)
# The retry policies: (lowest, highest, what it is) for each.
LIMITS = {
    "payment_attempt_limit": (1, 10, "payment attempts"),
    "payment_backoff_seconds": (1, 3600, "the first retry delay in seconds"),
    "circuit_failures": (1, 100, "failures that open a gateway's circuit"),
    "circuit_reset_seconds": (1, 86_400, "seconds an open circuit waits before a trial call"),
    "notification_attempt_limit": (1, 20, "notification delivery attempts"),
}


ALLOCATION_STRATEGIES = ("priority", "most_available")
MAX_RESERVATION_MINUTES = 43_200  # 30 days
MAX_TAX_RATE_BP = 10_000  # 100 %


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown setting is named, not ignored

    allocation_strategy: str | None = None
    reservation_minutes: int | None = Field(default=None, strict=True)
    tax_rate_bp: int | None = Field(default=None, strict=True)
    payment_attempt_limit: int | None = Field(default=None, strict=True)
    payment_backoff_seconds: int | None = Field(default=None, strict=True)
    circuit_failures: int | None = Field(default=None, strict=True)
    circuit_reset_seconds: int | None = Field(default=None, strict=True)
    notification_attempt_limit: int | None = Field(default=None, strict=True)

    # Range checks with sentences a shop owner understands (the CLI and the app show them as they are).
    @field_validator("allocation_strategy")
    @classmethod
    def _strategy(cls, v: str | None) -> str | None:
        if v is not None and v not in ALLOCATION_STRATEGIES:
            raise ValueError("the allocation strategy must be 'priority' or 'most_available'")
        return v

    @field_validator("reservation_minutes")
    @classmethod
    def _minutes(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= MAX_RESERVATION_MINUTES:
            raise ValueError(
                f"the reservation time must be from 1 to {MAX_RESERVATION_MINUTES:,} minutes (30 days)"
            )
        return v

    @field_validator("tax_rate_bp")
    @classmethod
    def _tax(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v <= MAX_TAX_RATE_BP:
            raise ValueError("the tax rate must be from 0 to 10,000 basis points (0% to 100%)")
        return v

    @field_validator(*LIMITS)
    @classmethod
    def _limits(cls, v: int | None, info) -> int | None:
        low, high, what = LIMITS[info.field_name]
        if v is not None and not low <= v <= high:
            raise ValueError(f"{what} must be from {low:,} to {high:,}")
        return v


def get_settings(db: Database, tenant_id: object) -> dict:
    with db.tenant(tenant_id) as conn:
        row = conn.execute(f"SELECT {', '.join(SETTINGS_COLUMNS)} FROM tenant_settings").fetchone()
    if not row:
        raise NotFound(f"no tenant with id {tenant_id}")
    return dict(zip(SETTINGS_COLUMNS, row, strict=True))


def change_settings(
    db: Database, tenant_id: object, actor, *, key: str | None = None, **changes: object
) -> dict:
    """Change the tenant's order settings (allocation strategy, reservation time, tax rate) and
    retry policies (payment attempts and backoff, circuit breaker, notification attempts)."""
    from core.commands import Context, execute, parse

    change = parse(SettingsChange, changes)
    data = change.model_dump(exclude_none=True)
    if not data:
        raise ValidationError("nothing to change")

    def handle(ctx: Context) -> dict:
        ctx.record(f"tenant-{ctx.tenant_id}", "tenant", [("TenantSettingsChanged", data)], None, SETTINGS)
        row = ctx.conn.execute(f"SELECT {', '.join(SETTINGS_COLUMNS)} FROM tenant_settings").fetchone()
        return dict(zip(SETTINGS_COLUMNS, row, strict=True))

    return execute(db, tenant_id, actor, "settings.manage", key, handle)


SET_PROFILE = "UPDATE tenants SET currency = %s, time_zone = %s WHERE id = oms_current_tenant()"


def change_profile(
    db: Database, tenant_id: object, actor, *, currency: str, time_zone: str, key: str | None = None
) -> Tenant:
    """The owner sets the shop's currency and time zone. Orders keep the currency they were placed
    in; new orders, reports and times on every page use the new ones."""
    from core.commands import Context, execute

    tenant = get_tenant(db, tenant_id)
    new = checked(NewTenant, name=tenant.name, slug=tenant.slug, currency=currency, time_zone=time_zone)
    if (new.currency, new.time_zone) == (tenant.currency, tenant.time_zone):
        raise ValidationError("nothing to change: that is the shop's currency and time zone already")

    def handle(ctx: Context) -> dict:
        data = {"currency": new.currency, "time_zone": new.time_zone}
        ctx.record(f"tenant-{ctx.tenant_id}", "tenant", [("TenantProfileChanged", data)], None, SETTINGS)
        return data

    execute(db, tenant_id, actor, "settings.manage", key, handle)
    return get_tenant(db, tenant_id)


class SettingsProjection(Projection):
    """tenant_settings from TenantSettingsChanged, and the tenant's currency and time zone from
    TenantProfileChanged. The rows themselves are made with the tenant."""

    name = "tenant_settings"
    tables = ()
    kind = "inline"
    rebuildable = False  # the row is created by the platform, not by an event

    def apply(self, conn, event: es.RecordedEvent) -> None:
        if event.event_type == "TenantProfileChanged":
            conn.execute(SET_PROFILE, [event.data["currency"], event.data["time_zone"]])
            return
        if event.event_type != "TenantSettingsChanged":
            return
        changed = [c for c in SETTINGS_COLUMNS if c in event.data]
        sets = ", ".join(f"{c} = %s" for c in changed)
        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in (event.data[c] for c in changed)]
        conn.execute(f"UPDATE tenant_settings SET {sets}, updated_at = %s", [*values, event.recorded_at])


SETTINGS = SettingsProjection()
