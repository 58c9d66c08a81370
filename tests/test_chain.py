"""The per-tenant hash chain: sealed after commit, verified later, and a change to any stored event (made as
the owner, who is the only one able to) is named by verification."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import seal

from core import chain
from core import eventstore as es


def append_orders(
    db, tenant_id, streams: int, per_stream: int = 2, label: str = "o"
) -> list[es.RecordedEvent]:
    out = []
    for s in range(streams):
        events = [
            es.NewEvent(event_type="OrderPlaced", data={"note": f"abc{s}-{i}", "total": 100 + i})
            for i in range(per_stream)
        ]
        with db.tenant(tenant_id) as conn:
            out += es.append(
                conn, [es.StreamAppend(f"{label}-{s}", "order", events)], es.Metadata("t")
            ).events
    return out


def count_events(owner, tenant_id) -> int:
    return owner.execute("SELECT count(*) FROM events WHERE tenant_id = %s", [tenant_id]).fetchone()[0]


def chain_rows(owner, tenant_id) -> list[tuple]:
    return owner.execute(
        "SELECT seq, position, hash FROM event_chain WHERE tenant_id = %s ORDER BY seq", [tenant_id]
    ).fetchall()


def seq_of(owner, tenant_id, position) -> int:
    return owner.execute(
        "SELECT seq FROM event_chain WHERE tenant_id = %s AND position = %s", [tenant_id, position]
    ).fetchone()[0]


def test_a_sealed_chain_verifies(db, owner, tenant):
    append_orders(db, tenant.id, 10)
    n = count_events(owner, tenant.id)
    assert seal(db, tenant.id) == n
    result = chain.verify(db, tenant.id)
    assert result.ok, result
    assert (result.checked, result.head_seq) == (n, n)
    assert result.head_hash == chain.head(db, tenant.id)[1]
    assert result.first_bad_seq is None and result.reason is None
    rows = chain_rows(owner, tenant.id)
    assert [r[0] for r in rows] == list(range(1, n + 1))
    assert {r[1] for r in rows} == {
        r[0] for r in owner.execute("SELECT position FROM events WHERE tenant_id = %s", [tenant.id])
    }


def test_verification_of_an_empty_range_is_ok(db, tenant):
    # A tenant whose events are not sealed yet: nothing to check, nothing broken.
    result = chain.verify(db, tenant.id)
    assert result.ok and result.checked == 0 and result.head_seq == 0


@pytest.mark.parametrize(
    "column, change",
    [
        ("data", "jsonb_set(data, '{note}', to_jsonb(overlay(data ->> 'note' placing 'X' from 2 for 1)))"),
        ("data", "jsonb_set(data, '{total}', to_jsonb((data ->> 'total')::int + 1))"),
        ("metadata", "jsonb_set(metadata, '{actor}', '\"u\"')"),
        ("event_type", "'OrderPlacee'"),
        ("recorded_at", "recorded_at + interval '1 microsecond'"),
    ],
    ids=["one byte of data", "a number in data", "actor", "event type", "recorded_at"],
)
def test_changing_a_stored_event_makes_verification_name_it(db, owner, tenant, column, change):
    events = append_orders(db, tenant.id, 10)
    seal(db, tenant.id)
    target = events[9]
    before = owner.execute(f"SELECT {column} FROM events WHERE position = %s", [target.position]).fetchone()[
        0
    ]
    owner.execute(f"UPDATE events SET {column} = {change} WHERE position = %s", [target.position])
    after = owner.execute(f"SELECT {column} FROM events WHERE position = %s", [target.position]).fetchone()[0]
    assert after != before
    result = chain.verify(db, tenant.id)
    assert not result.ok
    assert result.reason == "edited"
    assert result.first_bad_position == target.position
    assert result.first_bad_event_id == str(target.event_id)
    assert result.first_bad_seq == seq_of(owner, tenant.id, target.position)
    assert result.checked == result.first_bad_seq - 1  # everything before it still verifies


def test_deleting_a_stored_event_makes_verification_name_its_place(db, owner, tenant):
    events = append_orders(db, tenant.id, 10)
    n = seal(db, tenant.id)
    target = events[4]
    seq = seq_of(owner, tenant.id, target.position)
    assert owner.execute("DELETE FROM events WHERE position = %s", [target.position]).rowcount == 1
    result = chain.verify(db, tenant.id)
    assert not result.ok
    assert result.reason == "removed"
    assert result.first_bad_position == target.position
    assert result.first_bad_seq == seq
    assert result.checked == seq - 1
    assert result.head_seq == n


def test_a_change_in_one_tenant_does_not_break_anothers_chain(db, owner, tenant, other_tenant):
    events = append_orders(db, tenant.id, 3)
    append_orders(db, other_tenant.id, 3)
    seal(db, tenant.id)
    seal(db, other_tenant.id)
    owner.execute("UPDATE events SET data = '{}' WHERE position = %s", [events[0].position])
    assert not chain.verify(db, tenant.id).ok
    assert chain.verify(db, other_tenant.id).ok


def test_sealing_is_incremental(db, owner, tenant):
    append_orders(db, tenant.id, 5)
    first = seal(db, tenant.id)
    sealed = chain_rows(owner, tenant.id)
    assert seal(db, tenant.id) == 0  # nothing new: nothing sealed twice
    more = append_orders(db, tenant.id, 4, label="more")
    assert seal(db, tenant.id) == len(more)
    rows = chain_rows(owner, tenant.id)
    assert rows[: len(sealed)] == sealed, "sealing again rewrote earlier links"
    assert [r[0] for r in rows] == list(range(1, first + len(more) + 1))
    assert {r[1] for r in rows[len(sealed) :]} == {e.position for e in more}
    result = chain.verify(db, tenant.id)
    assert result.ok and result.checked == first + len(more)
    # A range from the middle verifies on its own, starting from the stored hash before it.
    middle = chain.verify(db, tenant.id, first=first + 1)
    assert middle.ok and middle.checked == len(more)


def test_two_sealers_at_once_do_not_fork_the_chain(db, owner, tenant):
    append_orders(db, tenant.id, 60, per_stream=3)
    barrier = threading.Barrier(3)
    stop = threading.Event()

    def sealer() -> int:
        barrier.wait(timeout=10)
        total = 0
        while not stop.is_set():
            total += seal(db, tenant.id, batch=7)
        return total + seal(db, tenant.id, batch=7)

    def writer() -> int:
        barrier.wait(timeout=10)
        try:
            return len(append_orders(db, tenant.id, 30, label=f"w{uuid.uuid4().hex[:4]}"))
        finally:
            stop.set()

    with ThreadPoolExecutor(3) as pool:
        sealers = [pool.submit(sealer) for _ in range(2)]
        pool.submit(writer).result()
        sealed = [f.result() for f in sealers]
    sealed_total = sum(sealed) + seal(db, tenant.id)
    n = count_events(owner, tenant.id)
    assert sealed_total == n, f"sealed {sealed} by the two sealers, {n} events"
    rows = chain_rows(owner, tenant.id)
    assert [r[0] for r in rows] == list(range(1, n + 1)), "sequence numbers have gaps or repeats"
    assert len({r[1] for r in rows}) == n, "an event was sealed twice"
    result = chain.verify(db, tenant.id)
    assert result.ok and result.checked == n
