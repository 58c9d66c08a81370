"""Running a command: permission check, idempotency, one tenant transaction, retry on a lost race.

Every command handler in core/ goes through execute(). A command carries an idempotency key; the
first result is kept in command_log in the same transaction as the command's events, so a retry
returns that result and writes nothing. Event ids are derived from the key as well, so even an
append that raced its own retry is stored once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from core import eventstore as es
from core.db import Database, as_tenant_id
from core.errors import ConcurrencyError, Conflict, OmsError, PermissionDenied, ValidationError
from core.projections import Projection, fold

GET_RESULT = "SELECT command, result FROM command_log WHERE idempotency_key = %s"
# The same lookup as a column of a handler's first read (see execute's lookup_in_handler): [command, result].
KEY_LOOKUP = "(SELECT json_build_array(command, result) FROM command_log WHERE idempotency_key = %(key)s)"
SAVE_RESULT = (
    "INSERT INTO command_log (tenant_id, idempotency_key, command, result)"
    " VALUES (oms_current_tenant(), %s, %s, %s)"
)
KEY_NAMESPACE = uuid.UUID("6f1c9a52-4d0e-4a7b-9a37-2c1c1f0e9b11")
MAX_ATTEMPTS = 8

# Which roles may do what. The app hides what a role may not do; this is the check that counts.
PERMISSIONS: dict[str, frozenset[str]] = {
    "orders.view": frozenset({"owner", "manager", "clerk"}),
    "orders.place": frozenset({"owner", "manager", "clerk"}),
    "orders.pay": frozenset({"owner", "manager", "clerk"}),
    "orders.fulfil": frozenset({"owner", "manager", "clerk"}),
    "orders.cancel": frozenset({"owner", "manager", "clerk"}),
    "orders.return": frozenset({"owner", "manager", "clerk"}),
    "orders.expire": frozenset({"owner", "manager", "system"}),
    "stock.view": frozenset({"owner", "manager", "clerk", "analyst"}),
    "stock.move": frozenset({"owner", "manager", "clerk"}),
    "catalog.view": frozenset({"owner", "manager", "clerk", "analyst"}),
    "catalog.manage": frozenset({"owner", "manager"}),
    "customers.view": frozenset({"owner", "manager", "clerk"}),
    "customers.manage": frozenset({"owner", "manager", "clerk"}),
    "warehouses.manage": frozenset({"owner"}),
    "settings.manage": frozenset({"owner"}),
    "users.manage": frozenset({"owner"}),
    "payments.view": frozenset({"owner", "manager"}),
    "notifications.view": frozenset({"owner", "manager"}),
    "notifications.manage": frozenset({"owner", "manager"}),
    "reports.view": frozenset({"owner", "manager", "analyst"}),
    "alerts.manage": frozenset({"owner", "manager"}),
    "audit.export": frozenset({"owner", "manager"}),
    "system.view": frozenset({"owner", "manager"}),
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a user of the tenant (by role), the CLI operator, or the worker ('system')."""

    name: str
    role: str

    def can(self, action: str) -> bool:
        return self.role in PERMISSIONS.get(action, frozenset()) or (
            self.role == "system" and action in SYSTEM_ACTIONS
        )


# The worker and the CLI operator act for the business, but never as a person.
SYSTEM_ACTIONS = frozenset(a for a in PERMISSIONS if not a.startswith(("users.", "settings.")))
CLI = Actor("cli", "owner")
SYSTEM = Actor("worker", "system")


def require(actor: Actor, action: str) -> None:
    if not actor.can(action):
        noun, _, verb = action.partition(".")
        raise PermissionDenied(f"a {actor.role} may not {verb} {noun}")


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate a command's input; pydantic's report becomes one clear sentence."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "__root__") or "input"
        msg = first["msg"].removeprefix("Value error, ")
        raise ValidationError(f"{where}: {msg}") from None


def business_time(at: datetime | None) -> datetime:
    """When a command says it happened: now, or a given aware time (the demo plays history)."""
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValidationError("times must be dates with a time zone")
    return at


def check_key(key: str | None) -> str:
    if key is None:
        return str(uuid.uuid4())
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise ValidationError("idempotency key must be 1 to 200 printable characters")
    return key


def derived_id(tenant_id: uuid.UUID, key: str, purpose: str) -> uuid.UUID:
    """A stable id for something a command creates: the same key always names the same thing."""
    return uuid.uuid5(KEY_NAMESPACE, f"{tenant_id}:{key}:{purpose}")


class Replay(Exception):
    """The key was seen before: roll back and return the first result."""

    def __init__(self, result: dict[str, Any]):
        self.result = result


@dataclass
class Context:
    conn: psycopg.Connection
    tenant_id: uuid.UUID
    actor: Actor
    key: str
    action: str
    prior: psycopg.Cursor | None = None
    command: str = ""  # the command_log lookup, sent with the handler's first reads

    def event_id(self, n: int) -> uuid.UUID:
        return derived_id(self.tenant_id, self.key, f"event:{n}")

    def record(
        self,
        stream_id: str,
        stream_type: str,
        events: list[tuple[str, dict[str, Any]]],
        expected_version: int | None,
        *inline: Projection,
        correlation_id: uuid.UUID | None = None,
    ) -> es.AppendResult:
        """Append this command's events (ids derived from its key) to one stream, then fold them
        into the inline read models they change, in the command's transaction."""
        new = [
            es.NewEvent(event_type=t, data=d, event_id=self.event_id(i)) for i, (t, d) in enumerate(events)
        ]
        result = es.append(
            self.conn,
            [es.StreamAppend(stream_id, stream_type, new, expected_version=expected_version)],
            es.Metadata(self.actor.name, correlation_id=correlation_id),
        )
        fold(self.conn, result, *inline)
        return result

    def check_replay(self) -> None:
        """Call after queuing the reads and before writing: a known key ends the command here."""
        if self.prior is None:
            return
        row, self.prior = self.prior.fetchone(), None
        self._replay(row)

    def replay_if_found(self, found: Any) -> None:
        """For a handler whose first read carries KEY_LOOKUP: pass that column; a known key ends here."""
        self.prior = None
        self._replay(found)

    def _replay(self, row: Any) -> None:
        if row:
            if row[0] != self.command:
                raise Conflict(
                    f"idempotency key '{self.key[:60]}' was already used to {row[0].replace('_', ' ')}"
                )
            raise Replay(json.loads(row[1]) if isinstance(row[1], str) else row[1])


def execute(
    db: Database,
    tenant_id: object,
    actor: Actor,
    action: str,
    key: str | None,
    handler: Callable[[Context], dict[str, Any]],
    *,
    command: str | None = None,
    lookup_in_handler: bool = False,
) -> dict[str, Any]:
    """Run handler(ctx) once per idempotency key, in one tenant transaction, and return its result.

    The key is looked up before the handler runs, unless lookup_in_handler: then the handler's first
    read carries the lookup itself (KEY_LOOKUP, with the key as %(key)s) and it passes that column to
    ctx.replay_if_found() before writing (one statement fewer on a hot path).
    A lost race (stream version, stock check, the same key in flight) rolls back and runs the
    handler again with fresh reads, up to MAX_ATTEMPTS times.
    """
    require(actor, action)
    tid = as_tenant_id(tenant_id)
    key = check_key(key)
    # The command's name, kept with its key: by default the function that defined the handler.
    command = command or handler.__qualname__.split(".<locals>")[0]
    for attempt in range(MAX_ATTEMPTS):
        try:
            with db.tenant(tid, pipeline=True) as conn:
                prior = None if lookup_in_handler else conn.execute(GET_RESULT, [key])
                ctx = Context(conn, tid, actor, key, action, prior=prior, command=command)
                if not lookup_in_handler:
                    ctx.check_replay()
                try:
                    result = handler(ctx)
                except OmsError:
                    ctx.check_replay()  # a repeated command whose first run changed the state it checks
                    raise
                ctx.check_replay()
                conn.execute(SAVE_RESULT, [key, command, Jsonb(result)])
                return result
        except Replay as replay:
            return replay.result
        except (
            ConcurrencyError,
            pg_errors.UniqueViolation,
            pg_errors.SerializationFailure,
            pg_errors.DeadlockDetected,
            # The stock CHECK refused a change decided on levels that moved after they were read:
            # the handler reads again and decides again (reserve elsewhere, reject, or refuse).
            pg_errors.CheckViolation,
        ):
            if attempt == MAX_ATTEMPTS - 1:
                raise Conflict("too many concurrent changes to the same data; please try again") from None
        except pg_errors.ForeignKeyViolation as exc:
            raise ValidationError(f"unknown reference: {exc.diag.message_detail or exc}") from None
    raise AssertionError("unreachable")
