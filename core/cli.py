"""The `oms` command line. Every command takes --json; errors print one line and exit non-zero."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from core.errors import OmsError, ValidationError

app = typer.Typer(help="OMS: order management on an event-sourced core.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants: the businesses sharing this installation.", no_args_is_help=True)
user_app = typer.Typer(help="Users of a tenant, and platform admins.", no_args_is_help=True)
events_app = typer.Typer(help="The event log.", no_args_is_help=True)
projections_app = typer.Typer(help="Read models folded from the event log.", no_args_is_help=True)
chain_app = typer.Typer(help="The per-tenant hash chain over the event log.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON line last.", no_args_is_help=True)
for sub, name in [
    (db_app, "db"),
    (tenant_app, "tenant"),
    (user_app, "user"),
    (events_app, "events"),
    (projections_app, "projections"),
    (chain_app, "chain"),
    (bench_app, "bench"),
]:
    app.add_typer(sub, name=name)

console = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id or slug.")]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID | datetime):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit(as_json: bool, value: Any, text: Callable[[], None] | str | None = None) -> None:
    """Print a result: one JSON document, or the human form."""
    if as_json:
        print(json.dumps(_plain(value), ensure_ascii=False))
    elif callable(text):
        text()
    else:
        console.print(text if text is not None else value)


def command(fn: Callable) -> Callable:
    """Turn every expected failure into one line on stderr (or JSON) and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        try:
            return fn(*args, **kwargs)
        except OmsError as exc:
            message, code = str(exc), 1
        except psycopg.OperationalError as exc:
            message, code = f"cannot reach the database: {str(exc).strip().splitlines()[0]}", 1
        except psycopg.Error as exc:
            message, code = f"database error: {str(exc).strip().splitlines()[0]}", 2
        if as_json:
            print(json.dumps({"error": message}))
        else:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code)

    return wrapper


@functools.cache
def database():
    from core.db import Database

    return Database(application_name="oms-cli", max_size=2)


def tenant_of(ref: str):
    from core.tenants import resolve_tenant

    return resolve_tenant(database(), ref)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Callable[[], None]:
    def show() -> None:
        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*[str(v) for v in r])
        console.print(t if rows else f"{title}: none yet")

    return show


@db_app.command("migrate")
@command
def db_migrate(as_json: JsonOpt = False) -> None:
    """Apply the migrations not applied yet (as the owner role)."""
    from core.migrate import migrate

    applied = migrate()
    emit(
        as_json, {"applied": applied}, f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}"
    )


@tenant_app.command("create")
@command
def tenant_create(
    name: str,
    slug: Annotated[
        str | None, typer.Option(help="URL-safe short name; derived from NAME if left out.")
    ] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. EUR.")] = "USD",
    time_zone: Annotated[str, typer.Option("--time-zone", help="IANA zone, e.g. Europe/Berlin.")] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant."""
    from core.tenants import create_tenant

    t = create_tenant(database(), name, slug=slug, currency=currency, time_zone=time_zone, actor="cli")
    emit(as_json, t, f"created tenant {t.slug} ({t.id})")


@tenant_app.command("list")
@command
def tenant_list(as_json: JsonOpt = False) -> None:
    """List every tenant."""
    from core.tenants import list_tenants

    ts = list_tenants(database())
    rows = [[t.slug, t.name, t.currency, t.time_zone, t.id] for t in ts]
    emit(as_json, ts, table("Tenants", ["slug", "name", "currency", "time zone", "id"], rows))


@user_app.command("add")
@command
def user_add(
    username: Annotated[str, typer.Option(help="Lowercase letters, digits, '.', '_' or '-'.")],
    role: Annotated[str, typer.Option(help="owner, manager, clerk, analyst, or platform_admin.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id or slug (not for platform_admin).")] = None,
    display_name: Annotated[str, typer.Option("--display-name")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a user to a tenant (or a platform admin). The password comes from a prompt or stdin."""
    from core import tenants

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if role == tenants.PLATFORM_ADMIN:
        if tenant:
            raise ValidationError("a platform admin belongs to no tenant: leave out --tenant")
        tenants.add_platform_admin(database(), username, password)
        emit(as_json, {"username": username, "role": role}, f"added platform admin {username}")
        return
    if not tenant:
        raise ValidationError("--tenant is required for a tenant user")
    t = tenant_of(tenant)
    user = tenants.add_user(
        database(), t.id, username, role, password, display_name=display_name, actor="cli"
    )
    emit(as_json, user, f"added {user.role} {user.username} to {t.slug}")


@user_app.command("list")
@command
def user_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List a tenant's users."""
    from core.tenants import list_users

    users = list_users(database(), tenant_of(tenant).id)
    rows = [[u.username, u.role, u.display_name, "yes" if u.active else "no"] for u in users]
    emit(as_json, users, table("Users", ["username", "role", "name", "active"], rows))


@events_app.command("tail")
@command
def events_tail(
    tenant: TenantOpt,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many recent events to show first.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls with --follow.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Show a tenant's latest events, in log order; with --follow, keep printing new ones."""
    from core import eventstore as es

    t = tenant_of(tenant)
    db = database()

    def show(event: es.RecordedEvent) -> None:
        if as_json:
            print(json.dumps(_plain(event), ensure_ascii=False), flush=True)
        else:
            at = event.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
            actor = event.metadata.get("actor", "?")
            console.print(
                f"{event.position:>10}  {at}  {event.stream_id}@{event.version}  "
                f"[bold]{event.event_type}[/bold]  by {actor}",
                highlight=False,
            )

    with db.tenant(t.id) as conn:
        recent = es.read_last(conn, limit)
    for event in recent:
        show(event)
    cursor = (recent[-1].txid, recent[-1].position) if recent else (0, 0)
    while follow:
        with db.tenant(t.id) as conn:
            batch = es.read_after(conn, *cursor, limit=1000)
        for event in batch:
            show(event)
        if batch:
            cursor = (batch[-1].txid, batch[-1].position)
        else:
            time.sleep(interval)


@projections_app.command("rebuild")
@command
def projections_rebuild(
    tenant: TenantOpt,
    name: Annotated[
        str | None, typer.Argument(help="One projection; all rebuildable ones if left out.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild read models from the event log."""
    from core import projections

    t = tenant_of(tenant)
    known = projections.registry()
    if name and name not in known:
        raise ValidationError(f"no projection '{name}'; known: {', '.join(sorted(known))}")
    chosen = [known[name]] if name else [p for p in known.values() if p.rebuildable]
    done = {p.name: projections.rebuild(database(), t.id, p) for p in chosen}
    emit(
        as_json,
        {"tenant": t.slug, "events_folded": done},
        "\n".join(f"rebuilt {n} from {c} events" for n, c in done.items()),
    )


@projections_app.command("status")
@command
def projections_status(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """How far behind the log each projection is."""
    from core import chain, projections

    t = tenant_of(tenant)
    rows = []
    for p in [*projections.registry().values(), chain.SEALER]:
        lag = projections.lag(database(), t.id, p)
        rows.append(
            {"projection": p.name, "kind": p.kind, "lag_events": lag.events, "lag_seconds": lag.seconds}
        )
    emit(
        as_json,
        rows,
        table(
            "Projections",
            ["projection", "kind", "lag (events)", "lag (s)"],
            [[r["projection"], r["kind"], r["lag_events"], round(r["lag_seconds"], 1)] for r in rows],
        ),
    )


@chain_app.command("seal")
@command
def chain_seal(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Seal the tenant's committed events into its hash chain now (the worker does this continuously)."""
    from core import chain

    t = tenant_of(tenant)
    n = chain.seal(database(), t.id)
    seq, head = chain.head(database(), t.id)
    emit(as_json, {"sealed": n, "head_seq": seq, "head_hash": head}, f"sealed {n} events; head {seq} {head}")


@chain_app.command("verify")
@command
def chain_verify(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Recompute the tenant's hash chain and name the first event that was edited or removed."""
    from core import chain

    result = chain.verify(database(), tenant_of(tenant).id)
    if result.ok:
        emit(as_json, result, f"chain verified: {result.checked} events, head {result.head_hash}")
        return
    emit(
        as_json,
        result,
        f"chain BROKEN at seq {result.first_bad_seq} (position {result.first_bad_position},"
        f" event {result.first_bad_event_id}): {result.reason}",
    )
    raise typer.Exit(3)


@bench_app.command("append")
@command
def bench_append(
    clients: Annotated[int, typer.Option(min=1, max=64)] = 8,
    seconds: Annotated[float, typer.Option(min=1, max=600)] = 10.0,
    tenants: Annotated[int, typer.Option(min=1, max=64)] = 1,
    as_json: JsonOpt = True,
) -> None:
    """Append new 3-event streams from concurrent clients; print one JSON line last."""
    from core import bench

    print(json.dumps(bench.append(clients=clients, seconds=seconds, tenants=tenants)))


@app.command("up")
@command
def up(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Run the product: database (embedded unless DATABASE_URL is set), migrations, the app."""
    from core.launcher import up as launch

    raise typer.Exit(launch(port=port, host=host))


def main() -> None:
    app()
