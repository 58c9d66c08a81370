"""Audit-trail exports: a file (CSV, JSON Lines, Parquet) plus manifest that carries every field the chain
hash covers, so it verifies without the database; any edit, removal, insertion or swap of a row is named
by verify_file; the export itself is an event; permissions, bad input and tenant isolation hold."""

from __future__ import annotations

import csv
import json
import tracemalloc
import uuid
from datetime import datetime, timedelta

import pytest
from conftest import seal, snapshot
from typer.testing import CliRunner

from core import audit, catalog, chain, customers, inventory
from core import errors as audit_errors
from core import eventstore as es
from core.cli import app
from core.commands import CLI, Actor
from core.errors import PermissionDenied, ValidationError

MANAGER = Actor("mia", "manager")


def setup_shop(db, tid) -> None:
    catalog.add_warehouse(db, tid, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tid, CLI, sku="MUG", name="Mug «blue»", price=1250)
    catalog.add_product(db, tid, CLI, sku="CUP", name="Cup", price=800)
    inventory.receive(db, tid, CLI, sku="MUG", warehouse="MAIN", quantity=10)
    inventory.receive(db, tid, CLI, sku="CUP", warehouse="MAIN", quantity=5)
    customers.add_customer(db, tid, CLI, name="Ada", email="ada@example.com")
    customers.add_customer(db, tid, CLI, name="Bo", email="bo@example.com")


@pytest.fixture
def shop(db, tenant):
    setup_shop(db, tenant.id)
    seal(db, tenant.id)  # everything committed is sealed (other sessions may hold the follower back)
    return tenant


def events_of(owner, tid, stream_id=None) -> list[tuple]:
    sql = "SELECT event_type, data, metadata, event_id FROM events WHERE tenant_id = %s"
    args: list = [tid]
    if stream_id:
        sql += " AND stream_id = %s"
        args.append(stream_id)
    return owner.execute(sql + " ORDER BY position", args).fetchall()


def sealed_count(owner, tid) -> int:
    return owner.execute("SELECT count(*) FROM event_chain WHERE tenant_id = %s", [tid]).fetchone()[0]


# --- reading and rewriting export files, as a tamperer would ------------------------------------------


def read_rows(path, fmt) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def write_rows(path, fmt, rows: list[dict]) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=audit.FIELDS)
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=audit._arrow_schema()), path)


def do_export(db, tenant, tmp_path, fmt, actor=CLI, **kw):
    path = tmp_path / f"audit-{uuid.uuid4().hex[:6]}.{fmt}"
    result = audit.export(db, tenant.id, actor, path, fmt, **kw)
    return path, result


# --- an untouched export --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", audit.FORMATS)
def test_an_untouched_export_verifies(db, owner, shop, tmp_path, fmt):
    n = sealed_count(owner, shop.id)
    seen = []
    path, result = do_export(db, shop, tmp_path, fmt, progress=lambda done, total: seen.append((done, total)))
    assert path.is_file() and audit.manifest_path(path).is_file()
    assert seen[0] == (0, n) and seen[-1] == (n, n)
    manifest = json.loads(audit.manifest_path(path).read_text())
    head_seq, head_hash = chain.head(db, shop.id)
    assert (manifest["count"], manifest["first_seq"], manifest["last_seq"]) == (n, 1, n) == (n, 1, head_seq)
    assert manifest["head_hash"] == head_hash == result["head_hash"]
    assert manifest["prev_hash"] == chain.GENESIS.hex()
    assert (manifest["tenant_id"], manifest["tenant_slug"], manifest["tenant_name"]) == (
        str(shop.id),
        shop.slug,
        shop.name,
    )
    assert (manifest["format"], manifest["exported_by"]) == (fmt, "cli")
    assert result["chain_intact"] is True
    check = audit.verify_file(path)
    assert check.ok, check
    assert (check.checked, check.count, check.head_hash) == (n, n, head_hash)
    assert check.first_bad_seq is None and check.reason is None


@pytest.mark.parametrize("fmt", audit.FORMATS)
def test_exported_rows_carry_the_chain_hash_and_recompute_it_byte_for_byte(db, owner, shop, tmp_path, fmt):
    path, _ = do_export(db, shop, tmp_path, fmt)
    rows = read_rows(path, fmt)
    stored = dict(
        owner.execute(
            "SELECT seq, encode(hash, 'hex') FROM event_chain WHERE tenant_id = %s", [shop.id]
        ).fetchall()
    )
    previous = chain.GENESIS
    with db.tenant(shop.id) as conn:
        by_position = {e.position: e for e in es.read_all(conn, as_stored=True)}
    for row in rows:
        seq = int(row["seq"])
        assert row["hash"] == stored[seq]
        # The exported fields give exactly the bytes chain.canonical gives for the stored event.
        _, _, rebuilt, _ = audit._event(row)
        original = by_position[int(row["position"])]
        assert chain.canonical(row["tenant_id"], seq, rebuilt) == chain.canonical(str(shop.id), seq, original)
        previous = audit.row_hash(previous, row)
        assert previous.hex() == row["hash"]
    assert [int(r["seq"]) for r in rows] == sorted(stored)
    assert set(rows[0]) == set(audit.FIELDS)


# --- tampering with a jsonl or csv file ------------------------------------------------------------------

EDITS = {
    "data": lambda v: v.replace("}", ',"x":1}', 1) if v != "{}" else '{"x":1}',
    "metadata": lambda v: v.replace('"cli"', '"someone"'),
    "event_type": lambda v: v + "d",
    "stream_id": lambda v: v + "x",
    "event_id": lambda v: str(uuid.uuid4()),
    "recorded_at": lambda v: (datetime.fromisoformat(v) + timedelta(microseconds=1)).isoformat(),
    "position": lambda v: int(v) + 1,
    "version": lambda v: int(v) + 1,
    "schema_version": lambda v: int(v) + 1,
    "tenant_id": lambda v: str(uuid.uuid4()),
    "hash": lambda v: ("0" if v[0] != "0" else "1") + v[1:],
}


def tampered(db, shop, tmp_path, fmt):
    path, _ = do_export(db, shop, tmp_path, fmt)
    rows = read_rows(path, fmt)
    assert len(rows) >= 8
    return path, rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("field", sorted(EDITS))
def test_editing_one_field_of_one_row_is_named(db, shop, tmp_path, fmt, field):
    path, rows = tampered(db, shop, tmp_path, fmt)
    target = rows[4]
    before = target[field]
    target[field] = EDITS[field](before)
    assert str(target[field]) != str(before)
    write_rows(path, fmt, rows)
    check = audit.verify_file(path)
    assert not check.ok
    assert (check.reason, check.first_bad_seq, check.checked) == ("edited", 5, 4)
    assert check.first_bad_event_id == str(target["event_id"])


TEXT_ONLY_EDITS = {
    "recorded_at": lambda v: v.replace("+00:00", "1+00:00") if "." in v else v.replace("+", ".0000001+"),
    "data": lambda v: v.replace(":", ": ", 1),
    "version": lambda v: f"0{v}",
}


@pytest.mark.parametrize("field", sorted(TEXT_ONLY_EDITS))
def test_a_change_of_text_that_parses_to_the_same_value_is_an_edit(db, shop, tmp_path, field):
    path, rows = tampered(db, shop, tmp_path, "csv")
    rows[4][field] = TEXT_ONLY_EDITS[field](rows[4][field])
    write_rows(path, "csv", rows)
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "edited", 5)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_removing_a_row_is_named(db, shop, tmp_path, fmt, where):
    path, rows = tampered(db, shop, tmp_path, fmt)
    index = {"first": 0, "middle": 3, "last": len(rows) - 1}[where]
    removed = rows.pop(index)
    write_rows(path, fmt, rows)
    check = audit.verify_file(path)
    assert not check.ok
    assert (check.reason, check.first_bad_seq) == ("removed", int(removed["seq"]))
    assert check.checked == index


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_duplicated_row_is_named_as_inserted(db, shop, tmp_path, fmt):
    path, rows = tampered(db, shop, tmp_path, fmt)
    rows.insert(4, dict(rows[3]))
    write_rows(path, fmt, rows)
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "inserted", int(rows[3]["seq"]))
    assert check.first_bad_event_id == rows[3]["event_id"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("before_original", [False, True])
def test_a_forged_row_is_named_as_inserted(db, shop, tmp_path, fmt, before_original):
    path, rows = tampered(db, shop, tmp_path, fmt)
    forged = dict(rows[3], event_id=str(uuid.uuid4()), data='{"forged":true}')
    rows.insert(3 if before_original else 4, forged)
    write_rows(path, fmt, rows)
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "inserted", int(forged["seq"]))
    assert check.first_bad_event_id == forged["event_id"]
    assert check.checked == (3 if before_original else 4)  # after its original, the original still checks


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_forged_row_with_a_correct_hash_appended_at_the_end_is_named(db, shop, tmp_path, fmt):
    # Anyone can compute sha256: a well-formed extra row links, but it lies outside the manifest's range.
    path, rows = tampered(db, shop, tmp_path, fmt)
    last = rows[-1]
    forged = dict(
        last, seq=int(last["seq"]) + 1, event_id=str(uuid.uuid4()), version=int(last["version"]) + 1
    )
    forged["hash"] = audit.row_hash(bytes.fromhex(last["hash"]), forged).hex()
    write_rows(path, fmt, [*rows, forged])
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "inserted", forged["seq"])
    assert check.checked == len(rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("index", [0, 4])
def test_swapping_two_adjacent_rows_is_named_as_reordered(db, shop, tmp_path, fmt, index):
    path, rows = tampered(db, shop, tmp_path, fmt)
    rows[index], rows[index + 1] = rows[index + 1], rows[index]
    write_rows(path, fmt, rows)
    check = audit.verify_file(path)
    # The first row out of its place is named: the later event, found where the earlier one belongs.
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "reordered", index + 2)
    assert check.first_bad_event_id == rows[index]["event_id"]
    assert check.checked == index


def test_a_manifest_whose_head_or_count_was_changed_is_named(db, shop, tmp_path):
    path, _ = do_export(db, shop, tmp_path, "jsonl")
    mpath = audit.manifest_path(path)
    manifest = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**manifest, "head_hash": "00" * 32}))
    check = audit.verify_file(path)
    assert not check.ok and check.reason.startswith("head mismatch")
    mpath.write_text(json.dumps({**manifest, "count": manifest["count"] + 1}))
    check = audit.verify_file(path)
    assert not check.ok and check.reason.startswith("count mismatch")
    mpath.unlink()
    with pytest.raises(ValidationError, match="no manifest"):
        audit.verify_file(path)


def test_a_parquet_edit_is_named(db, shop, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _ = do_export(db, shop, tmp_path, "parquet")
    table = pq.read_table(path)
    assert table.schema.field("seq").type == pa.int64()
    rows = table.to_pylist()
    rows[2]["data"] = rows[2]["data"].replace("Main", "Mian") if "Main" in rows[2]["data"] else '{"x":1}'
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "edited", 3)
    assert check.first_bad_event_id == rows[2]["event_id"]


def test_a_change_in_the_database_shows_in_the_export(db, owner, shop, tmp_path):
    # The export copies what is stored; an event changed behind the chain's back fails verification.
    position = owner.execute(
        "SELECT position FROM event_chain WHERE tenant_id = %s AND seq = 6", [shop.id]
    ).fetchone()[0]
    owner.execute("UPDATE events SET data = data || '{\"x\": 1}' WHERE position = %s", [position])
    path, result = do_export(db, shop, tmp_path, "jsonl")
    assert result["chain_intact"] is False
    check = audit.verify_file(path)
    assert (check.ok, check.reason, check.first_bad_seq) == (False, "edited", 6)


# --- date ranges ----------------------------------------------------------------------------------------


def test_a_date_range_exports_one_contiguous_verifiable_seq_range(db, owner, shop, tmp_path):
    times = owner.execute(
        "SELECT c.seq, e.recorded_at FROM event_chain c JOIN events e ON e.position = c.position"
        " WHERE c.tenant_id = %s ORDER BY c.seq",
        [shop.id],
    ).fetchall()
    since, until = times[3][1], times[-2][1]
    first = min(s for s, at in times if at >= since)
    last = max(s for s, at in times if at < until)
    assert 1 < first <= last < len(times)
    path, result = do_export(db, shop, tmp_path, "csv", since=since.isoformat(), until=until)
    manifest = json.loads(audit.manifest_path(path).read_text())
    assert (manifest["first_seq"], manifest["last_seq"], manifest["count"]) == (first, last, last - first + 1)
    before = owner.execute(
        "SELECT encode(hash, 'hex') FROM event_chain WHERE tenant_id = %s AND seq = %s", [shop.id, first - 1]
    ).fetchone()[0]
    assert manifest["prev_hash"] == before and manifest["since"] == since.isoformat()
    check = audit.verify_file(path)
    assert check.ok and check.checked == last - first + 1, check


def test_a_range_with_no_events_exports_an_empty_verifiable_file(db, shop, tmp_path):
    path, result = do_export(db, shop, tmp_path, "jsonl", since="2999-01-01")
    assert result["count"] == 0 and result["first_seq"] is None
    assert result["prev_hash"] == result["head_hash"] == chain.head(db, shop.id)[1]
    check = audit.verify_file(path)
    assert check.ok and check.checked == 0


# --- the export on the record, permissions, bad input, isolation -----------------------------------------


def test_an_export_is_recorded_as_an_event_with_its_actor(db, owner, shop, tmp_path):
    path, result = do_export(db, shop, tmp_path, "jsonl", actor=MANAGER)
    recorded = events_of(owner, shop.id, f"audit-{shop.id}")
    assert len(recorded) == 1
    event_type, data, metadata, event_id = recorded[0]
    assert (event_type, metadata["actor"], str(event_id)) == ("AuditTrailExported", "mia", result["event_id"])
    assert data["exported_by"] == "mia" and data["role"] == "manager" and data["format"] == "jsonl"
    assert (data["count"], data["head_hash"]) == (result["count"], result["head_hash"])
    assert json.loads(audit.manifest_path(path).read_text())["exported_by"] == "mia"
    # The next export seals and carries the first one's event, and still verifies.
    seal(db, shop.id)
    path2, result2 = do_export(db, shop, tmp_path, "jsonl")
    assert result2["count"] == result["count"] + 1
    assert read_rows(path2, "jsonl")[-1]["event_type"] == "AuditTrailExported"
    assert audit.verify_file(path2).ok


@pytest.mark.parametrize("role", ["clerk", "analyst"])
def test_a_clerk_or_analyst_may_not_export_and_nothing_is_written(db, owner, shop, tmp_path, role):
    before = snapshot(owner, shop.id)
    with pytest.raises(PermissionDenied):
        audit.export(db, shop.id, Actor("x", role), tmp_path / "out.jsonl", "jsonl")
    assert snapshot(owner, shop.id) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, says",
    [
        ({"fmt": "xml"}, "unknown format"),
        ({"name": "missing/out.jsonl"}, "does not exist"),
        ({"name": "."}, "directory"),
        ({"since": "2024-02-01", "until": "2024-01-01"}, "until must be later than since"),
        ({"since": "yesterday"}, "not an ISO 8601"),
    ],
    ids=["format", "missing directory", "a directory", "until before since", "bad date"],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(db, owner, shop, tmp_path, args, says):
    before = snapshot(owner, shop.id)
    fmt = args.pop("fmt", "jsonl")
    path = tmp_path / args.pop("name", "out.jsonl")
    with pytest.raises(ValidationError, match=says):
        audit.export(db, shop.id, CLI, path, fmt, **args)
    assert snapshot(owner, shop.id) == before
    assert list(tmp_path.iterdir()) == []


def test_another_tenants_export_holds_none_of_this_tenants_events(db, owner, shop, other_tenant, tmp_path):
    setup_shop(db, other_tenant.id)
    seal(db, other_tenant.id)
    path, result = do_export(db, other_tenant, tmp_path, "jsonl")
    rows = read_rows(path, "jsonl")
    assert rows and result["count"] == len(rows) == sealed_count(owner, other_tenant.id)
    mine = {str(e[3]) for e in events_of(owner, shop.id)}
    assert {r["tenant_id"] for r in rows} == {str(other_tenant.id)}
    assert not mine & {r["event_id"] for r in rows}
    assert audit.verify_file(path).ok


# --- the command line ------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_export_then_verify_and_an_edited_line_exits_3(db, shop, tmp_path):
    out = tmp_path / "trail.jsonl"
    done = runner.invoke(app, ["audit", "export", "--tenant", shop.slug, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().startswith("exported ") and len(done.stdout.strip().splitlines()) == 1
    as_json = runner.invoke(app, ["audit", "verify", str(out), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["ok"] is True
    lines = out.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    row["event_type"] += "d"
    lines[2] = json.dumps(row, ensure_ascii=False)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = runner.invoke(app, ["audit", "verify", str(out)])
    assert broken.exit_code == 3
    assert broken.stdout.strip() == f"export BROKEN at seq 3 (event {row['event_id']}): edited"


def test_cli_export_as_json_and_errors_in_one_line(db, shop, tmp_path):
    out = tmp_path / "trail.csv"
    done = runner.invoke(app, ["audit", "export", "--tenant", str(shop.id), "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["format"] == "csv" and summary["count"] == summary["last_seq"]
    verified = runner.invoke(app, ["audit", "verify", str(out)])
    assert verified.exit_code == 0 and verified.stdout.startswith("export verified")
    bad = runner.invoke(
        app, ["audit", "export", "--tenant", shop.slug, "--out", str(tmp_path / "x.txt"), "--format", "xml"]
    )
    assert bad.exit_code == 1
    err = bad.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: unknown format"), err
    missing = runner.invoke(app, ["audit", "verify", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no export file")


# --- memory stays flat ----------------------------------------------------------------------------------


def test_export_memory_stays_flat(db, tenant, tmp_path):
    for s in range(20):
        events = [
            es.NewEvent(event_type="NoteTaken", data={"note": f"note {s}-{i} " + "x" * 200, "n": i})
            for i in range(1000)
        ]
        with db.tenant(tenant.id) as conn:
            es.append(conn, [es.StreamAppend(f"note-{s}", "note", events)], es.Metadata("t"))
    seal(db, tenant.id)
    path = tmp_path / "big.jsonl"
    tracemalloc.start()
    try:
        result = audit.export(db, tenant.id, CLI, path, "jsonl", batch=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["count"] >= 20_000
    size = path.stat().st_size
    assert size > 10_000_000
    assert peak < 4_000_000, (peak, size)  # a few batches' worth, not the whole file
    assert audit.verify_file(path).ok


def test_browsing_the_log_checks_its_filters_and_reads_them_literally(db, shop, tenant):
    for bad, words in [
        ({"since": "yesterday"}, "not an ISO 8601"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "ends before it starts"),
        ({"customer": "not-a-uuid"}, "is not a customer id"),
        ({"order": "#999999"}, "no order #999999"),
        ({"limit": 0}, "limit must be"),
        ({"limit": 10**9}, "limit must be"),
        ({"types": "OrderPlaced"}, "list of names"),
    ]:
        with pytest.raises((ValidationError, audit_errors.NotFound), match=words):
            audit.browse(db, tenant.id, CLI, **bad)
    everything = audit.browse(db, tenant.id, CLI, limit=1000)
    assert everything and audit.browse(db, tenant.id, CLI, by="%") == []  # a wildcard is just a character
    assert audit.browse(db, tenant.id, CLI, by=CLI.name) == [e for e in everything if e["actor"] == CLI.name]
    with pytest.raises(PermissionDenied):
        audit.browse(db, tenant.id, Actor("cleo", "clerk"))
