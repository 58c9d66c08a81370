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
audit_app = typer.Typer(help="Verifiable exports of a tenant's audit trail.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON line last.", no_args_is_help=True)
for sub, name in [
    (db_app, "db"),
    (tenant_app, "tenant"),
    (user_app, "user"),
    (events_app, "events"),
    (projections_app, "projections"),
    (chain_app, "chain"),
    (audit_app, "audit"),
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


@audit_app.command("export")
@command
def audit_export(
    tenant: TenantOpt,
    out: Annotated[
        str, typer.Option("--out", help="File to write; its manifest goes beside it as FILE.manifest.json.")
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or parquet; by default --out's extension.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time on (ISO 8601; UTC when no zone is given).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601; UTC when no zone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the tenant's sealed events with their chain hashes, verifiable without the database."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core import audit

    t = tenant_of(tenant)
    fmt = fmt or Path(out).suffix.lstrip(".") or "jsonl"
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("export", total=None)
        result = audit.export(
            database(),
            t.id,
            cli_actor(),
            out,
            fmt,
            since=since,
            until=until,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    span = f"seq {result['first_seq']}..{result['last_seq']}" if result["count"] else "no events in range"
    summary = f"exported {result['count']} events ({span}) to {result['path']}; head {result['head_hash']}"
    emit(as_json, result, lambda: console.print(summary, soft_wrap=True))  # one line, however narrow


@audit_app.command("verify")
@command
def audit_verify(
    file: Annotated[str, typer.Argument(help="An exported file; its FILE.manifest.json must be beside it.")],
    as_json: JsonOpt = False,
) -> None:
    """Recompute the chain over an exported file and name the first event edited, removed, inserted or
    reordered (no database needed)."""
    from core import audit

    result = audit.verify_file(file)
    if result.ok:
        message = f"export verified: {result.checked} events, head {result.head_hash}"
        emit(as_json, result, lambda: console.print(message, soft_wrap=True))
        return
    message = (
        f"export BROKEN at seq {result.first_bad_seq} (event {result.first_bad_event_id}): {result.reason}"
    )
    emit(as_json, result, lambda: console.print(message, soft_wrap=True))
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


@bench_app.command("cost")
@command
def bench_cost(
    operations: Annotated[int, typer.Option(min=10, max=1_000_000)] = 2000,
    as_json: JsonOpt = True,
) -> None:
    """Wall time, client CPU and PostgreSQL CPU per operation, one client; print one JSON line last."""
    from core import bench

    print(json.dumps(bench.cost(operations)))


@bench_app.command("intake")
@command
def bench_intake(
    clients: Annotated[int, typer.Option(min=1, max=64)] = 8,
    seconds: Annotated[float, typer.Option(min=1, max=600)] = 10.0,
    hot_sku: Annotated[bool, typer.Option("--hot-sku", help="Every order wants the same SKU.")] = False,
    skus: Annotated[int, typer.Option(min=2, max=100_000)] = 1000,
    as_json: JsonOpt = True,
) -> None:
    """Place two-line orders from concurrent clients into one tenant; print one JSON line last."""
    from core import bench

    print(json.dumps(bench.intake(clients=clients, seconds=seconds, hot_sku=hot_sku, skus=skus)))


@bench_app.command("worker")
@command
def bench_worker(
    notifications: Annotated[int, typer.Option(min=100, max=1_000_000)] = 20_000,
    workers: Annotated[int, typer.Option(min=1, max=16)] = 2,
    rate: Annotated[int, typer.Option(min=10, max=100_000, help="Notifications queued per second.")] = 2_000,
    as_json: JsonOpt = True,
) -> None:
    """Deliver queued emails through a local SMTP server; print one JSON line last."""
    from core import bench

    print(json.dumps(bench.worker(notifications=notifications, workers=workers, rate=rate)))


@bench_app.command("analytics")
@command
def bench_analytics(
    events: Annotated[int, typer.Option(min=1000, max=50_000_000)] = 5_000_000,
    probes: Annotated[int, typer.Option(min=1, max=1000, help="Orders timed for freshness.")] = 20,
    as_json: JsonOpt = True,
) -> None:
    """Fill a new tenant's log with EVENTS order events (bulk SQL), then time the analytic store's sync,
    the revenue report on DuckDB against PostgreSQL, freshness and the app's memory; one JSON line last."""
    from core import bench

    print(json.dumps(bench.analytics(events=events, probes=probes)))


@bench_app.command("ui")
@command
def bench_ui(
    orders: Annotated[int, typer.Option(min=100, max=10_000_000)] = 1_000_000,
    runs: Annotated[int, typer.Option(min=1, max=100, help="Reruns of each page after its first.")] = 5,
    customers: Annotated[int, typer.Option(min=10, max=1_000_000)] = 5_000,
    products: Annotated[int, typer.Option(min=10, max=10_000)] = 300,
    as_json: JsonOpt = True,
) -> None:
    """Fill a new tenant's read models with ORDERS orders, then time the first render of Overview,
    Orders and Inventory signed in as its owner (AppTest, server time); print one JSON line last."""
    from core import bench

    print(
        json.dumps(bench.ui(orders=orders, runs=runs, customers=customers, products=products, progress=True))
    )


# ---------------------------------------------------------------------------------------------------
# Catalog, stock, customers, orders, settings, demo. Every command goes through core functions as the
# CLI operator (owner); text output shows money in the tenant's currency, JSON keeps minor units.

product_app = typer.Typer(help="Products: SKU, name, category, price.", no_args_is_help=True)
warehouse_app = typer.Typer(help="Warehouses: code, name, region, allocation priority.", no_args_is_help=True)
stock_app = typer.Typer(help="Stock per SKU and warehouse, and its movements.", no_args_is_help=True)
customer_app = typer.Typer(help="Customers and their notification preferences.", no_args_is_help=True)
order_app = typer.Typer(
    help="Orders: place, pay, ship, deliver, cancel, return, look up.", no_args_is_help=True
)
settings_app = typer.Typer(help="A tenant's order settings.", no_args_is_help=True)
for sub, name in [
    (product_app, "product"),
    (warehouse_app, "warehouse"),
    (stock_app, "stock"),
    (customer_app, "customer"),
    (order_app, "order"),
    (settings_app, "settings"),
]:
    app.add_typer(sub, name=name)

KeyOpt = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Repeating a command with the same key returns its first result."),
]
OrderArg = Annotated[str, typer.Argument(help="Order number (1001 or #1001) or id.")]


def cli_actor():
    from core.commands import CLI

    return CLI


def money(amount: int | None, currency: str) -> str:
    """Minor units as the tenant shows them: 'USD 1,234.50'."""
    if amount is None:
        return ""
    sign, amount = ("-" if amount < 0 else ""), abs(int(amount))
    return f"{currency.strip()} {sign}{amount // 100:,}.{amount % 100:02d}"


def local_time(value: Any, zone: str) -> str:
    from zoneinfo import ZoneInfo

    if value in (None, ""):
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def parse_pairs(specs: list[str] | None, what: str, example: str, numeric_key: bool) -> list[tuple[Any, int]]:
    """--line values 'KEY:QTY'; a malformed one is a clear error naming it."""
    import re

    pairs = []
    for spec in specs or []:
        head, sep, qty = str(spec).rpartition(":")
        head = head.strip()
        ok = sep and head and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", qty)
        if ok and numeric_key and not re.fullmatch(r"\d{1,6}", head):
            ok = False
        if not ok:
            raise ValidationError(
                f"--line must look like {what}:QTY (e.g. {example}), not '{str(spec)[:60]}'"
            )
        pairs.append((int(head) if numeric_key else head, int(qty)))
    return pairs


def parse_day(value: str | None, option: str):
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(f"{option} must be a date like 2026-01-31, not '{value[:40]}'") from None


@product_app.command("add")
@command
def product_add(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option(help="Stock keeping unit, e.g. TSHIRT-M (upper case is used).")],
    name: Annotated[str, typer.Option()],
    price: Annotated[int, typer.Option(help="Price in minor units (cents), e.g. 1250 for 12.50.")],
    category: Annotated[str, typer.Option()] = "",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a product to the catalog."""
    from core.catalog import add_product

    t = tenant_of(tenant)
    p = add_product(
        database(), t.id, cli_actor(), key=key, sku=sku, name=name, category=category, price=price
    )
    emit(as_json, p, f"added product {p['sku']} {p['name']} at {money(p['price'], t.currency)}")


@product_app.command("list")
@command
def product_list(
    tenant: TenantOpt,
    search: Annotated[str, typer.Option(help="Part of a SKU or name.")] = "",
    category: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """List products."""
    from core.catalog import list_products

    t = tenant_of(tenant)
    ps = list_products(database(), t.id, cli_actor(), search=search, category=category, limit=1000)
    rows = [
        [p["sku"], p["name"], p["category"], money(p["price"], t.currency), "yes" if p["active"] else "no"]
        for p in ps
    ]
    emit(as_json, ps, table("Products", ["sku", "name", "category", "price", "active"], rows))


@warehouse_app.command("add")
@command
def warehouse_add(
    tenant: TenantOpt,
    code: Annotated[str, typer.Option(help="Short code, e.g. NJ1.")],
    name: Annotated[str, typer.Option()],
    region: Annotated[str, typer.Option()] = "",
    priority: Annotated[int, typer.Option(help="Lower goes first when allocating.")] = 100,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a warehouse."""
    from core.catalog import add_warehouse

    t = tenant_of(tenant)
    w = add_warehouse(
        database(), t.id, cli_actor(), key=key, code=code, name=name, region=region, priority=priority
    )
    emit(as_json, w, f"added warehouse {w['code']} {w['name']} (priority {w['priority']})")


@warehouse_app.command("list")
@command
def warehouse_list(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """List warehouses in allocation order."""
    from core.catalog import list_warehouses

    ws = list_warehouses(database(), tenant_of(tenant).id, cli_actor())
    rows = [[w["code"], w["name"], w["region"], w["priority"], "yes" if w["active"] else "no"] for w in ws]
    emit(as_json, ws, table("Warehouses", ["code", "name", "region", "priority", "active"], rows))


def _stock_text(row: dict[str, Any]) -> str:
    return (
        f"{row['sku']} in {row['warehouse']}: on hand {row['on_hand']}, reserved {row['reserved']},"
        f" available {row['available']}"
    )


@stock_app.command("receive")
@command
def stock_receive(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option()],
    warehouse: Annotated[str, typer.Option()],
    quantity: Annotated[int, typer.Option()],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Receive units into a warehouse."""
    from core.inventory import receive

    row = receive(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        key=key,
        sku=sku,
        warehouse=warehouse,
        quantity=quantity,
    )
    emit(as_json, row, _stock_text(row))


@stock_app.command("adjust")
@command
def stock_adjust(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option()],
    warehouse: Annotated[str, typer.Option()],
    change: Annotated[int, typer.Option(help="Units to add (positive) or remove (negative).")],
    reason: Annotated[str, typer.Option(help="Why, e.g. 'damaged' or 'cycle count'.")],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Correct the units on hand, with a reason."""
    from core.inventory import adjust

    row = adjust(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        key=key,
        sku=sku,
        warehouse=warehouse,
        change=change,
        reason=reason,
    )
    emit(as_json, row, _stock_text(row))


@stock_app.command("transfer")
@command
def stock_transfer(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option()],
    source: Annotated[str, typer.Option("--from", help="Warehouse the units leave.")],
    destination: Annotated[str, typer.Option("--to", help="Warehouse the units arrive at.")],
    quantity: Annotated[int, typer.Option()],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move units between warehouses."""
    from core.inventory import transfer

    result = transfer(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        key=key,
        sku=sku,
        source=source,
        destination=destination,
        quantity=quantity,
    )
    emit(as_json, result, f"{_stock_text(result['from'])}\n{_stock_text(result['to'])}")


@stock_app.command("reorder")
@command
def stock_reorder(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option()],
    warehouse: Annotated[str, typer.Option()],
    point: Annotated[int, typer.Option(help="Available units at or below which the SKU counts as low.")],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the reorder point of a SKU in a warehouse."""
    from core.inventory import set_reorder_point

    row = set_reorder_point(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        key=key,
        sku=sku,
        warehouse=warehouse,
        reorder_point=point,
    )
    emit(as_json, row, f"{_stock_text(row)}; reorder point {row['reorder_point']}")


@stock_app.command("show")
@command
def stock_show(
    tenant: TenantOpt,
    sku: Annotated[str, typer.Option()] = "",
    warehouse: Annotated[str, typer.Option()] = "",
    low: Annotated[bool, typer.Option("--low", help="Only rows at or below their reorder point.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stock levels per SKU and warehouse."""
    from core.inventory import stock_levels

    rows = stock_levels(
        database(), tenant_of(tenant).id, cli_actor(), sku=sku, warehouse=warehouse, low_only=low
    )
    emit(
        as_json,
        rows,
        table(
            "Stock",
            ["sku", "warehouse", "on hand", "reserved", "available", "reorder point", "low"],
            [
                [r["sku"], r["warehouse"], r["on_hand"], r["reserved"], r["available"], r["reorder_point"]]
                + ["LOW" if r["low"] else ""]
                for r in rows
            ],
        ),
    )


@customer_app.command("add")
@command
def customer_add(
    tenant: TenantOpt,
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()] = "",
    phone: Annotated[str, typer.Option()] = "",
    notify_email: Annotated[bool, typer.Option("--notify-email/--no-notify-email")] = True,
    notify_sms: Annotated[bool, typer.Option("--notify-sms/--no-notify-sms")] = False,
    notify_push: Annotated[bool, typer.Option("--notify-push/--no-notify-push")] = False,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a customer."""
    from core.customers import add_customer

    c = add_customer(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        key=key,
        name=name,
        email=email,
        phone=phone,
        notify_email=notify_email,
        notify_sms=notify_sms,
        notify_push=notify_push,
    )
    emit(as_json, c, f"added customer {c['name']} ({c['id']})")


@customer_app.command("list")
@command
def customer_list(
    tenant: TenantOpt,
    search: Annotated[str, typer.Option(help="Part of a name, email or phone number.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """List customers."""
    from core.customers import list_customers

    cs = list_customers(database(), tenant_of(tenant).id, cli_actor(), search=search, limit=1000)
    rows = [
        [
            c["name"],
            c["email"],
            c["phone"],
            " ".join(ch for ch in ("email", "sms", "push") if c[f"notify_{ch}"]),
            c["id"],
        ]
        for c in cs
    ]
    emit(as_json, cs, table("Customers", ["name", "email", "phone", "notify by", "id"], rows))


def _customer_id(tenant_id: Any, ref: str) -> str:
    """A customer from its id, or from its exact email address or name when that is unambiguous."""
    from core.customers import list_customers

    ref = ref.strip()
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    found = [
        c
        for c in list_customers(database(), tenant_id, cli_actor(), search=ref, limit=1000)
        if ref.lower() in (c["email"].lower(), c["name"].lower())
    ]
    if not found:
        from core.errors import NotFound

        raise NotFound(f"no customer '{ref[:60]}' (give the id, email or full name)")
    if len(found) > 1:
        raise ValidationError(f"{len(found)} customers match '{ref[:60]}': give the customer id")
    return str(found[0]["id"])


@order_app.command("place")
@command
def order_place(
    tenant: TenantOpt,
    customer: Annotated[str, typer.Option(help="Customer id, email or full name.")],
    line: Annotated[list[str] | None, typer.Option("--line", help="SKU:QTY; repeat for more lines.")] = None,
    channel: Annotated[str, typer.Option(help="web, pos, marketplace or phone.")] = "web",
    shipping_fee: Annotated[int, typer.Option("--shipping-fee", help="In minor units.")] = 0,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Place an order: all of it is reserved, or it is rejected as out of stock and nothing is."""
    from core.orders.handlers import place_order
    from core.orders.model import OutOfStock

    lines = parse_pairs(line, "SKU", "TSHIRT-M:2", numeric_key=False)
    if not lines:
        raise ValidationError("an order needs at least one --line SKU:QTY")
    t = tenant_of(tenant)
    try:
        r = place_order(
            database(),
            t.id,
            cli_actor(),
            customer_id=_customer_id(t.id, customer),
            lines=lines,
            channel=channel,
            shipping_fee=shipping_fee,
            key=key,
        )
    except OutOfStock as exc:
        if not as_json:
            raise
        print(json.dumps({"error": str(exc), "number": exc.number, "status": "rejected", "short": exc.short}))
        raise typer.Exit(1) from None
    where = ", ".join(f"{a['quantity']} {a['sku']} from {a['warehouse']}" for a in r["allocations"])
    emit(
        as_json,
        r,
        f"order #{r['number']} {r['status']}: {money(r['total'], r['currency'])}; {where}",
    )


def _order_text(r: dict[str, Any]) -> str:
    return f"order #{r['number']} is {r['status']} ({', '.join(r['events']) or 'nothing changed'})"


@order_app.command("pay")
@command
def order_pay(
    tenant: TenantOpt,
    order: OrderArg,
    amount: Annotated[int | None, typer.Option(help="Minor units; the order total if left out.")] = None,
    method: Annotated[str, typer.Option()] = "manual",
    reference: Annotated[str, typer.Option()] = "",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the payment of a reserved order."""
    from core.orders.handlers import pay_order

    r = pay_order(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        order,
        amount=amount,
        method=method,
        reference=reference,
        key=key,
    )
    emit(as_json, r, _order_text(r))


@order_app.command("ship")
@command
def order_ship(
    tenant: TenantOpt,
    order: OrderArg,
    carrier: Annotated[str, typer.Option()],
    tracking: Annotated[str, typer.Option()],
    warehouse: Annotated[str | None, typer.Option(help="Ship one warehouse's part; all if left out.")] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ship a paid order (one shipment per warehouse it was allocated from)."""
    from core.orders.handlers import ship_order

    r = ship_order(
        database(),
        tenant_of(tenant).id,
        cli_actor(),
        order,
        carrier=carrier,
        tracking=tracking,
        warehouse=warehouse,
        key=key,
    )
    emit(as_json, r, _order_text(r))


@order_app.command("deliver")
@command
def order_deliver(tenant: TenantOpt, order: OrderArg, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Mark a shipped order delivered."""
    from core.orders.handlers import deliver_order

    r = deliver_order(database(), tenant_of(tenant).id, cli_actor(), order, key=key)
    emit(as_json, r, _order_text(r))


@order_app.command("cancel")
@command
def order_cancel(
    tenant: TenantOpt,
    order: OrderArg,
    reason: Annotated[str, typer.Option()] = "",
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel an order before shipment: its reservations are released and a payment refunded."""
    from core.orders.handlers import cancel_order

    r = cancel_order(database(), tenant_of(tenant).id, cli_actor(), order, reason=reason, key=key)
    emit(as_json, r, _order_text(r))


@order_app.command("return")
@command
def order_return(
    tenant: TenantOpt,
    order: OrderArg,
    warehouse: Annotated[str, typer.Option(help="Warehouse the returned units go back into.")],
    line: Annotated[
        list[str] | None, typer.Option("--line", help="LINE_NO:QTY; repeat for more lines.")
    ] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take back delivered units and refund them."""
    from core.orders.handlers import return_items

    pairs = parse_pairs(line, "LINE_NO", "1:2", numeric_key=True)
    if not pairs:
        raise ValidationError("a return needs at least one --line LINE_NO:QTY")
    items: dict[int, int] = {}
    for line_no, qty in pairs:
        if line_no in items:
            raise ValidationError(f"line {line_no} is given twice")
        items[line_no] = qty
    r = return_items(
        database(), tenant_of(tenant).id, cli_actor(), order, items=items, warehouse=warehouse, key=key
    )
    emit(as_json, r, _order_text(r))


@order_app.command("expire")
@command
def order_expire(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Release every reservation that ran out unpaid (the worker does this on a schedule)."""
    from core.orders.handlers import expire_reservations

    done = expire_reservations(database(), tenant_of(tenant).id, cli_actor())
    numbers = ", ".join(f"#{r['number']}" for r in done)
    emit(as_json, done, f"expired {len(done)} reservation(s){': ' + numbers if numbers else ''}")


@order_app.command("show")
@command
def order_show(tenant: TenantOpt, order: OrderArg, as_json: JsonOpt = False) -> None:
    """One order: lines, allocations, shipments and the timeline of its events."""
    from core.orders.queries import order_detail

    t = tenant_of(tenant)
    d = order_detail(database(), t.id, cli_actor(), order)
    cur, zone = d["currency"], t.time_zone

    def show() -> None:
        console.print(
            f"[bold]Order #{d['number']}[/bold]  {d['status']}  ({d['id']})\n"
            f"customer {d['customer_name']} ({d['customer_id']}), channel {d['channel']},"
            f" placed {local_time(d['placed_at'], zone)} ({zone})\n"
            f"subtotal {money(d['subtotal'], cur)}  shipping {money(d['shipping_fee'], cur)}"
            f"  tax {money(d['tax'], cur)}  total {money(d['total'], cur)}"
            f"  paid {money(d['paid_amount'], cur)}  refunded {money(d['refunded_amount'], cur)}",
            highlight=False,
        )
        table(
            "Lines",
            ["line", "sku", "name", "qty", "unit price", "line total", "returned"],
            [
                [x["line_no"], x["sku"], x["name"], x["quantity"], money(x["unit_price"], cur)]
                + [money(x["line_total"], cur), x["returned_quantity"]]
                for x in d["lines"]
            ],
        )()
        table(
            "Allocations",
            ["sku", "warehouse", "qty", "state"],
            [[a["sku"], a["warehouse"], a["quantity"], a["state"]] for a in d["allocations"]],
        )()
        table(
            "Shipments",
            ["warehouse", "carrier", "tracking", "shipped"],
            [
                [s["warehouse"], s["carrier"], s["tracking"], local_time(s["shipped_at"], zone)]
                for s in d["shipments"]
            ],
        )()
        table(
            "Timeline",
            ["#", "at", "event", "status", "by"],
            [
                [e["version"], local_time(e["at"], zone), e["type"], e["data"].get("status", ""), e["actor"]]
                for e in d["timeline"]
            ],
        )()

    emit(as_json, d, show)


@order_app.command("list")
@command
def order_list(
    tenant: TenantOpt,
    status: Annotated[list[str] | None, typer.Option(help="Repeat or separate with commas.")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="Repeat or separate with commas.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id, email or full name.")] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (tenant time).")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (tenant time).")] = None,
    search: Annotated[str, typer.Option(help="An order number or part of a customer name.")] = "",
    page: Annotated[int, typer.Option()] = 1,
    page_size: Annotated[int, typer.Option("--page-size")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List orders, newest first, filtered and paginated."""
    from core.orders.queries import OrderFilter, list_orders

    def split(values: list[str] | None) -> tuple[str, ...]:
        return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())

    t = tenant_of(tenant)
    filters = OrderFilter(
        status=split(status),
        channel=split(channel),
        customer_id=_customer_id(t.id, customer) if customer else None,
        date_from=parse_day(date_from, "--from"),
        date_to=parse_day(date_to, "--to"),
        text=search,
    )
    result = list_orders(database(), t.id, cli_actor(), filters, page=page, page_size=page_size)
    out = {
        "rows": result.rows,
        "page": result.page,
        "page_size": result.page_size,
        "has_next": result.has_next,
    }
    show = table(
        f"Orders (page {result.page}{', more on the next' if result.has_next else ''})",
        ["number", "placed", "customer", "channel", "status", "total", "refunded"],
        [
            [
                f"#{r['number']}",
                local_time(r["placed_at"], t.time_zone),
                r["customer_name"],
                r["channel"],
                r["status"],
                money(r["total"], r["currency"]),
                money(r["refunded_amount"], r["currency"]) if r["refunded_amount"] else "",
            ]
            for r in result.rows
        ],
    )
    emit(as_json, out, show)


def _settings_text(t: Any, s: dict[str, Any]) -> str:
    return (
        f"{t.slug}: allocation {s['allocation_strategy']}, reservations hold {s['reservation_minutes']} min,"
        f" tax {s['tax_rate_bp'] / 100:g}% ({s['tax_rate_bp']} bp), currency {t.currency},"
        f" time zone {t.time_zone}"
    )


@settings_app.command("show")
@command
def settings_show(tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """Show the tenant's order settings."""
    from core.tenants import get_settings

    t = tenant_of(tenant)
    s = get_settings(database(), t.id)
    emit(as_json, {**s, "currency": t.currency, "time_zone": t.time_zone}, _settings_text(t, s))


@settings_app.command("set")
@command
def settings_set(
    tenant: TenantOpt,
    allocation_strategy: Annotated[
        str | None, typer.Option("--allocation-strategy", help="priority or most_available.")
    ] = None,
    reservation_minutes: Annotated[
        int | None, typer.Option("--reservation-minutes", help="How long an unpaid order holds stock.")
    ] = None,
    tax_rate_bp: Annotated[
        int | None, typer.Option("--tax-rate-bp", help="Tax rate in basis points: 2000 = 20%.")
    ] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the tenant's order settings."""
    from core.tenants import change_settings

    t = tenant_of(tenant)
    changes = {
        k: v
        for k, v in {
            "allocation_strategy": allocation_strategy,
            "reservation_minutes": reservation_minutes,
            "tax_rate_bp": tax_rate_bp,
        }.items()
        if v is not None
    }
    s = change_settings(database(), t.id, cli_actor(), key=key, **changes)
    emit(as_json, {**s, "currency": t.currency, "time_zone": t.time_zone}, _settings_text(t, s))


@app.command("demo")
@command
def demo(
    orders: Annotated[int, typer.Option(help="Orders in all, over the three shops.")] = 3000,
    seed: Annotated[int, typer.Option(help="The same seed gives the same history.")] = 7,
    prefix: Annotated[str, typer.Option(help="Slugs are PREFIX-electronics, -fashion, -books.")] = "demo",
    as_json: JsonOpt = False,
) -> None:
    """Create three demo shops with staff logins, stock, customers and months of order history."""
    from core import demo as demo_data
    from core.db import Database

    db = Database(application_name="oms-demo", max_size=4)
    try:
        if as_json:
            result = demo_data.seed_demo(db, orders=orders, seed=seed, prefix=prefix)
            print(json.dumps(result, ensure_ascii=False))
        else:
            result = demo_data.seed_with_progress(db, console, orders=orders, seed=seed, prefix=prefix)
            demo_data.print_summary(result, console)
    finally:
        db.close()


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


@app.command("worker")
@command
def worker(
    heartbeat: Annotated[float, typer.Option(min=0.2, max=60, help="Seconds between heartbeats.")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Run the background jobs (projections, hash chain, reservation expiry) until SIGTERM."""
    from jobs.worker import main as run_worker

    raise typer.Exit(run_worker(heartbeat))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
