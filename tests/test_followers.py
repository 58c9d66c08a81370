"""Followers (invariant 5) and projections (invariant 2): a checkpointed reader sees every committed event
exactly once and in order, even one that commits late with a lower position; read models built by
followers or inline equal what a rebuild from the log gives."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from conftest import catch_up, followable

from core import eventstore as es
from core import tenants
from core.projections import EventTypeCounts, follow, lag, rebuild
from core.tenants import USERS

WRITERS = 8
RUN_SECONDS = 3.0
HOLD_SECONDS = 1.0


def ev(event_type: str = "OrderPlaced", **data) -> es.NewEvent:
    return es.NewEvent(event_type=event_type, data=data)


def event_ids(owner, tenant_id) -> list[uuid.UUID]:
    return [r[0] for r in owner.execute("SELECT event_id FROM events WHERE tenant_id = %s", [tenant_id])]


def assert_follower_order(events: list[es.RecordedEvent]) -> None:
    """Strictly increasing (txid, position), and each stream's versions 1, 2, 3... in that order."""
    keys = [(e.txid, e.position) for e in events]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "not in (txid, position) order"
    versions: dict[str, list[int]] = defaultdict(list)
    for e in events:
        versions[e.stream_id].append(e.version)
    out_of_order = {s: v for s, v in versions.items() if v != list(range(v[0], v[0] + len(v)))}
    assert out_of_order == {}, "streams whose versions a follower sees out of order"


def test_a_follower_sees_every_event_once_and_in_order_while_8_writers_append(db, owner, tenant):
    stop = threading.Event()
    held = []  # how many times writer 0 held its transaction open
    errors: list[BaseException] = []

    def writer(w: int) -> int:
        appended = 0
        try:
            while not stop.is_set():
                stream = f"order-{w}-{uuid.uuid4().hex[:12]}"
                events = [ev("OrderPlaced", w=w), ev("OrderPaid", w=w), ev("OrderShipped", w=w)]
                with db.tenant(tenant.id) as conn:
                    es.append(conn, [es.StreamAppend(stream, "order", events)], es.Metadata(f"writer-{w}"))
                    if w == 0:  # commit late, with positions lower than the events others commit meanwhile
                        held.append(stream)
                        time.sleep(HOLD_SECONDS)
                appended += 3
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        return appended

    seen: list[es.RecordedEvent] = []
    cursor = [0, 0]

    def poll() -> int:
        with db.tenant(tenant.id) as conn:
            batch = es.read_after(conn, cursor[0], cursor[1], 500, as_stored=True)
        if batch:
            seen.extend(batch)
            cursor[:] = [batch[-1].txid, batch[-1].position]
        return len(batch)

    start = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(writer, w) for w in range(WRITERS)]
        while time.monotonic() - start < RUN_SECONDS:
            poll()
            time.sleep(0.005)
        stop.set()
        appended = sum(f.result() for f in futures)
    assert errors == []

    stored = event_ids(owner, tenant.id)
    deadline = time.monotonic() + 30  # another session on the server may hold the snapshot horizon back
    while len(seen) < len(stored) and time.monotonic() < deadline:
        if not poll():
            time.sleep(0.05)
    poll()  # and nothing more after that

    assert len(held) >= 2, "the late-committing writer did not run often enough to test anything"
    assert appended >= 300, f"only {appended} events appended: the test exercised little"
    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "the follower saw an event twice"
    assert set(ids) == set(stored), (
        f"missed {len(set(stored) - set(ids))} events, saw {len(set(ids) - set(stored))} not stored"
    )
    assert len(stored) == appended + 1  # + TenantCreated
    assert_follower_order(seen)
    # The hazard happened: events came to the follower out of position order (a late commit with lower
    # positions), and it did not skip them.
    positions = [e.position for e in seen]
    assert any(b < a for a, b in zip(positions, positions[1:], strict=False)), "no late commit was exercised"
    held_streams = {e.stream_id for e in seen if e.stream_id in held}
    assert held_streams == set(held)


def test_a_multi_stream_append_that_waits_keeps_each_streams_order_for_followers(db, owner, tenant):
    """An append to two existing streams whose first stream is locked by another writer: it takes its
    transaction id, waits, and meanwhile a third transaction (with a later id) appends the next version of
    the second stream and commits. Followers read in (txid, position) order, so the second stream's
    versions must still come out in order (or the waiting append must fail with a conflict)."""
    with db.tenant(tenant.id) as conn:
        es.append(
            conn,
            [
                es.StreamAppend("stock-z", "stock", [ev("StockAdded")]),
                es.StreamAppend("order-y", "order", [ev()]),
            ],
            es.Metadata("t"),
        )
    locked, release = threading.Event(), threading.Event()

    def lock_z() -> None:
        with db.tenant(tenant.id) as conn:
            es.append(
                conn, [es.StreamAppend("stock-z", "stock", [ev("StockReserved")], 1)], es.Metadata("t0")
            )
            locked.set()
            release.wait(10)

    def both():
        assert locked.wait(10)
        try:
            with db.tenant(tenant.id) as conn:
                return es.append(
                    conn,
                    [
                        es.StreamAppend("stock-z", "stock", [ev("StockReserved")], None),
                        es.StreamAppend("order-y", "order", [ev("OrderNoted")], None),
                    ],
                    es.Metadata("t2"),
                )
        except es.ConcurrencyError as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        f0 = pool.submit(lock_z)
        f2 = pool.submit(both)
        deadline = time.monotonic() + 10
        while not owner.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the two-stream append never waited"
            time.sleep(0.01)
        with db.tenant(tenant.id) as conn:  # a later transaction appends version 2 of order-y and commits
            es.append(conn, [es.StreamAppend("order-y", "order", [ev("OrderPaid")], 1)], es.Metadata("t1"))
        release.set()
        f0.result()
        f2.result()

    followable(db, tenant.id)
    with db.tenant(tenant.id) as conn:
        followed = es.read_after(conn, 0, 0, 10_000, as_stored=True)
        everything = list(es.read_all(conn, as_stored=True))
    assert {e.event_id for e in followed} == set(event_ids(owner, tenant.id))
    assert [(e.stream_id, e.version) for e in followed if e.stream_id == "order-y"] == [
        ("order-y", v) for v in range(1, 1 + sum(e.stream_id == "order-y" for e in followed))
    ], "a follower sees order-y's versions out of order"
    assert_follower_order(everything)


def counts_from_log(owner, tenant_id) -> set[tuple]:
    return set(
        owner.execute(
            "SELECT event_type, count(*), max(recorded_at) FROM events WHERE tenant_id = %s GROUP BY 1",
            [tenant_id],
        ).fetchall()
    )


def counts_table(owner, tenant_id) -> set[tuple]:
    return set(
        owner.execute(
            "SELECT event_type, events, last_recorded FROM event_type_counts WHERE tenant_id = %s",
            [tenant_id],
        ).fetchall()
    )


def append_mix(db, tenant_id, streams: int, label: str = "") -> int:
    types = ["OrderPlaced", "OrderPaid", "OrderShipped", "StockReserved", "CustomerAdded"]
    n = 0
    for s in range(streams):
        events = [ev(types[(s + i) % len(types)], i=i) for i in range(1 + s % 4)]
        with db.tenant(tenant_id) as conn:
            es.append(conn, [es.StreamAppend(f"mix{label}-{s}", "order", events)], es.Metadata("t"))
        n += len(events)
    return n


def test_event_type_counts_equal_a_group_by_over_the_log_and_report_lag(db, owner, tenant):
    projection = EventTypeCounts()
    n = append_mix(db, tenant.id, 20) + 1  # + TenantCreated
    before = lag(db, tenant.id, projection)
    assert before.events == n
    assert before.seconds > 0
    assert catch_up(db, tenant.id, projection, batch=7) == n
    assert counts_table(owner, tenant.id) == counts_from_log(owner, tenant.id)
    assert lag(db, tenant.id, projection).events == 0
    more = append_mix(db, tenant.id, 3, label="b")
    assert lag(db, tenant.id, projection).events == more
    assert catch_up(db, tenant.id, projection) == more
    assert lag(db, tenant.id, projection).events == 0
    assert counts_table(owner, tenant.id) == counts_from_log(owner, tenant.id)


def test_rebuilding_event_type_counts_gives_the_live_table(db, owner, tenant):
    projection = EventTypeCounts()
    n = append_mix(db, tenant.id, 15) + 1
    catch_up(db, tenant.id, projection)
    live = counts_table(owner, tenant.id)
    assert live == counts_from_log(owner, tenant.id)
    owner.execute("UPDATE event_type_counts SET events = events + 100 WHERE tenant_id = %s", [tenant.id])
    assert rebuild(db, tenant.id, projection) == n
    assert counts_table(owner, tenant.id) == live
    assert lag(db, tenant.id, projection).events == 0


def users_table(owner, tenant_id) -> list[tuple]:
    return owner.execute("SELECT * FROM users WHERE tenant_id = %s ORDER BY id", [tenant_id]).fetchall()


def test_rebuilding_the_inline_users_projection_gives_the_live_table(db, owner, tenant, other_tenant):
    for i, role in enumerate(["owner", "manager", "clerk", "analyst"]):
        tenants.add_user(db, tenant.id, f"user{i}", role, "correct horse battery", display_name=f"User {i} ☃")
    tenants.add_user(db, other_tenant.id, "user0", "clerk", "correct horse battery")
    live = users_table(owner, tenant.id)
    other = users_table(owner, other_tenant.id)
    assert len(live) == 4
    owner.execute("UPDATE users SET role = 'analyst', display_name = 'x' WHERE tenant_id = %s", [tenant.id])
    rebuild(db, tenant.id, USERS)
    assert users_table(owner, tenant.id) == live
    assert users_table(owner, other_tenant.id) == other  # a rebuild touches its own tenant only
    assert [u.username for u in tenants.list_users(db, tenant.id)] == ["user0", "user1", "user2", "user3"]


def test_two_followers_of_one_projection_at_once_do_not_apply_twice(db, owner, tenant):
    projection = EventTypeCounts()
    total = append_mix(db, tenant.id, 40) + 1
    applied = [0, 0]
    writing = threading.Event()
    writing.set()

    def follower(i: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            applied[i] += follow(db, tenant.id, projection, batch=5)
            if not writing.is_set() and lag(db, tenant.id, projection).events == 0:
                return

    def writer() -> int:
        try:
            return append_mix(db, tenant.id, 20, label="w")
        finally:
            writing.clear()

    with ThreadPoolExecutor(3) as pool:
        followers = [pool.submit(follower, i) for i in range(2)]
        total += pool.submit(writer).result()
        for f in followers:
            f.result()
    final = catch_up(db, tenant.id, projection)
    assert all(applied), f"both followers should have applied batches: {applied}"
    assert sum(applied) + final == total
    assert counts_table(owner, tenant.id) == counts_from_log(owner, tenant.id)
