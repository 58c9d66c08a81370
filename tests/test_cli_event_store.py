"""The issue-2 commands of `oms` on the test database: migrate, tenants, users, events tail (and --follow),
projections and the hash chain, each with --json, and errors as one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from conftest import followable
from typer.testing import CliRunner

from core import eventstore as es
from core.cli import app

pytestmark = pytest.mark.usefixtures("owner_url")
runner = CliRunner()


def oms(*args: object, stdin: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def ok_json(*args: object, stdin: str | None = None):
    result = oms(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails(*args: object, says: str, stdin: str | None = None) -> None:
    result = oms(*args, stdin=stdin)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and says in err, err


def new_slug() -> str:
    return f"cli-es-{uuid.uuid4().hex[:8]}"


def test_migrate_is_repeatable():
    assert ok_json("db", "migrate") == {"applied": []}  # the session fixture applied everything already


def test_tenant_create_and_list():
    slug = new_slug()
    created = ok_json(
        "tenant", "create", "Corner Shop", "--slug", slug, "--currency", "EUR", "--time-zone", "Europe/Paris"
    )
    assert (created["slug"], created["currency"], created["time_zone"]) == (slug, "EUR", "Europe/Paris")
    assert slug in [t["slug"] for t in ok_json("tenant", "list")]
    fails("tenant", "create", "Corner Shop", "--slug", slug, says="already exists")
    fails("tenant", "create", "Elsewhere", "--slug", new_slug(), "--time-zone", "Mars/Base", says="time zone")
    fails("tenant", "create", "Bad", "--slug", "Not A Slug", says="slug")


def test_user_add_reads_the_password_from_stdin_and_keeps_it_out_of_the_log(owner):
    slug = new_slug()
    tenant = ok_json("tenant", "create", "Users Shop", "--slug", slug)
    user = ok_json(
        "user",
        "add",
        "--tenant",
        slug,
        "--username",
        "ana",
        "--role",
        "manager",
        "--password-stdin",
        stdin="s3cret-pass\n",
    )
    assert (user["username"], user["role"]) == ("ana", "manager")
    assert [u["username"] for u in ok_json("user", "list", "--tenant", slug)] == ["ana"]
    (stored_hash,) = owner.execute(
        "SELECT password_hash FROM user_credentials WHERE tenant_id = %s", [tenant["id"]]
    ).fetchone()
    assert stored_hash.startswith("$2") and "s3cret-pass" not in stored_hash
    log = owner.execute("SELECT data::text FROM events WHERE tenant_id = %s", [tenant["id"]]).fetchall()
    assert not any("s3cret" in row[0] or stored_hash in row[0] for row in log)
    fails(
        "user",
        "add",
        "--tenant",
        slug,
        "--username",
        "ana",
        "--role",
        "clerk",
        "--password-stdin",
        stdin="another-pass\n",
        says="taken",
    )
    fails(
        "user",
        "add",
        "--tenant",
        slug,
        "--username",
        "bo",
        "--role",
        "boss",
        "--password-stdin",
        stdin="another-pass\n",
        says="role",
    )
    fails(
        "user",
        "add",
        "--tenant",
        slug,
        "--username",
        "bo",
        "--role",
        "clerk",
        "--password-stdin",
        stdin="short\n",
        says="password",
    )
    fails(
        "user",
        "add",
        "--tenant",
        "no-such-shop",
        "--username",
        "bo",
        "--role",
        "clerk",
        "--password-stdin",
        stdin="another-pass\n",
        says="no tenant",
    )
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    assert (
        ok_json(
            "user",
            "add",
            "--username",
            admin,
            "--role",
            "platform_admin",
            "--password-stdin",
            stdin="platform-pass\n",
        )["role"]
        == "platform_admin"
    )


def test_events_tail_shows_the_latest_events_in_order(db):
    slug = new_slug()
    tenant = ok_json("tenant", "create", "Tail Shop", "--slug", slug)
    for n in range(3):
        with db.tenant(tenant["id"]) as conn:
            es.append(
                conn,
                [es.StreamAppend(f"note-{n}", "note", [es.NewEvent(event_type="NoteTaken", data={"n": n})])],
                es.Metadata("t"),
            )
    followable(db, tenant["id"])
    result = oms("events", "tail", "--tenant", slug, "--limit", 2, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event_type"], e["data"]) for e in lines] == [("NoteTaken", {"n": 1}), ("NoteTaken", {"n": 2})]
    fails("events", "tail", "--tenant", "no-such-shop", says="no tenant")


def test_events_tail_follow_prints_new_events_as_they_commit(db):
    slug = new_slug()
    tenant = ok_json("tenant", "create", "Follow Shop", "--slug", slug)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.cli",
            "events",
            "tail",
            "--tenant",
            slug,
            "--follow",
            "--interval",
            "0.1",
            "--json",
        ],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(proc.stdout.readline())  # the TenantCreated event already in the log
        assert first["event_type"] == "TenantCreated"
        with db.tenant(tenant["id"]) as conn:
            es.append(
                conn,
                [es.StreamAppend("note-live", "note", [es.NewEvent(event_type="NoteTaken")])],
                es.Metadata("t"),
            )
        live = json.loads(proc.stdout.readline())
        assert (live["event_type"], live["stream_id"]) == ("NoteTaken", "note-live")
    finally:
        proc.kill()
        proc.wait(10)


def test_chain_seal_verify_and_a_broken_chain_exits_3(db, owner):
    slug = new_slug()
    tenant = ok_json("tenant", "create", "Chain Shop", "--slug", slug)
    with db.tenant(tenant["id"]) as conn:
        es.append(
            conn,
            [es.StreamAppend("note-1", "note", [es.NewEvent(event_type="NoteTaken", data={"a": 1})])],
            es.Metadata("t"),
        )
    followable(db, tenant["id"])
    sealed = ok_json("chain", "seal", "--tenant", slug)
    assert sealed["sealed"] == 2 and sealed["head_seq"] == 2
    assert ok_json("chain", "verify", "--tenant", slug)["ok"] is True
    owner.execute(
        "UPDATE events SET data = '{\"a\": 2}' WHERE tenant_id = %s AND stream_id = 'note-1'", [tenant["id"]]
    )
    broken = oms("chain", "verify", "--tenant", slug, "--json")
    assert broken.exit_code == 3
    report = json.loads(broken.stdout)
    assert (report["ok"], report["reason"], report["first_bad_seq"]) == (False, "edited", 2)


def test_projections_status_and_rebuild(db):
    slug = new_slug()
    ok_json("tenant", "create", "Projection Shop", "--slug", slug)
    status = {p["projection"]: p for p in ok_json("projections", "status", "--tenant", slug)}
    assert {"users", "orders", "stock", "event_type_counts", "chain"} <= set(status)
    assert status["users"]["lag_events"] == 0
    rebuilt = ok_json("projections", "rebuild", "--tenant", slug, "users")
    assert rebuilt["events_folded"] == {"users": 1}
    fails("projections", "rebuild", "--tenant", slug, "nonsense", says="no projection")
