"""The event store on a real PostgreSQL: optimistic concurrency (invariant 3), idempotent appends
(invariant 4), metadata and upcasting, and bad input that gets a clear error and writes nothing (invariant 8).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pydantic
import pytest

from core import eventstore as es
from core.errors import ConcurrencyError, NotFound, ValidationError

WRITERS = 8


def ev(event_type: str = "OrderPlaced", **data) -> es.NewEvent:
    return es.NewEvent(event_type=event_type, data=data)


def stored(owner, tenant_id) -> tuple[int, int]:
    """(events, streams) stored for a tenant, counted as the owner."""
    return owner.execute(
        "SELECT (SELECT count(*) FROM events WHERE tenant_id = %(t)s),"
        " (SELECT count(*) FROM streams WHERE tenant_id = %(t)s)",
        {"t": tenant_id},
    ).fetchone()


def stream_rows(owner, tenant_id, stream_id) -> list[tuple]:
    return owner.execute(
        "SELECT version, event_id, position FROM events WHERE tenant_id = %s AND stream_id = %s"
        " ORDER BY version",
        [tenant_id, stream_id],
    ).fetchall()


def test_concurrent_appends_with_the_same_expected_version_let_exactly_one_win(db, owner, tenant):
    stream = "order-contended"
    with db.tenant(tenant.id) as conn:
        es.append(conn, [es.StreamAppend(stream, "order", [ev(n=0)])], es.Metadata("t"))
    rounds, per_append = 6, 2
    barrier = threading.Barrier(WRITERS)
    outcomes: list[list] = [[] for _ in range(rounds)]
    winners: dict[int, list[uuid.UUID]] = {}
    lock = threading.Lock()

    def writer(w: int) -> None:
        for r in range(rounds):
            expected = 1 + r * per_append
            events = [ev(writer=w, round=r, i=i) for i in range(per_append)]
            barrier.wait(timeout=30)
            try:
                with db.tenant(tenant.id) as conn:
                    result = es.append(
                        conn,
                        [es.StreamAppend(stream, "order", events, expected_version=expected)],
                        es.Metadata("t"),
                    )
                with lock:
                    outcomes[r].append(("won", w))
                    winners[r] = [e.event_id for e in events]
                assert [e.version for e in result.events] == [expected + 1, expected + 2]
            except ConcurrencyError as exc:
                with lock:
                    outcomes[r].append(("lost", w, exc.expected, exc.actual))
            barrier.wait(timeout=30)  # the next round starts when every writer has finished this one

    with ThreadPoolExecutor(WRITERS) as pool:
        for f in [pool.submit(writer, w) for w in range(WRITERS)]:
            f.result()

    for r, results in enumerate(outcomes):
        expected = 1 + r * per_append
        assert len(results) == WRITERS
        assert [o[0] for o in results].count("won") == 1, f"round {r}: {results}"
        for o in results:
            if o[0] == "lost":
                assert o[2:] == (expected, expected + per_append), f"round {r}: the error names the versions"
    rows = stream_rows(owner, tenant.id, stream)
    assert [v for v, _, _ in rows] == list(range(1, 2 + rounds * per_append))
    # What is stored is exactly the winners' events: no overwrite, nothing from a loser.
    assert [eid for _, eid, _ in rows[1:]] == [eid for r in range(rounds) for eid in winners[r]]
    with db.tenant(tenant.id) as conn:
        assert es.stream_version(conn, stream) == 1 + rounds * per_append


def test_a_retried_append_returns_the_first_result_and_stores_nothing(db, owner, tenant):
    batch = [
        es.StreamAppend("order-r1", "order", [ev(n=1), ev("OrderPaid", n=2)]),
        es.StreamAppend("stock-r1", "stock", [ev("StockReserved", n=3)]),
    ]
    with db.tenant(tenant.id) as conn:
        first = es.append(conn, batch, es.Metadata("t"))
    counts = stored(owner, tenant.id)
    with db.tenant(tenant.id) as conn:
        again = es.append(conn, batch, es.Metadata("t"))
    assert not first.duplicate
    assert again.duplicate
    key = [(e.stream_id, e.version, e.position, e.event_id, e.recorded_at) for e in first.events]
    assert [(e.stream_id, e.version, e.position, e.event_id, e.recorded_at) for e in again.events] == key
    assert stored(owner, tenant.id) == counts
    assert owner.execute(
        "SELECT version FROM streams WHERE tenant_id = %s AND stream_id = 'order-r1'", [tenant.id]
    ).fetchone() == (2,)


def test_a_retry_of_an_append_to_an_existing_stream_is_recognised(db, owner, tenant):
    with db.tenant(tenant.id) as conn:
        es.append(conn, [es.StreamAppend("order-r2", "order", [ev()])], es.Metadata("t"))
    batch = [es.StreamAppend("order-r2", "order", [ev("OrderPaid")], expected_version=1)]
    with db.tenant(tenant.id) as conn:
        first = es.append(conn, batch, es.Metadata("t"))
    counts = stored(owner, tenant.id)
    # The retry names a version the stream is no longer at: it is still the same append, not a conflict.
    with db.tenant(tenant.id) as conn:
        again = es.append(conn, batch, es.Metadata("t"))
    assert again.duplicate
    assert [e.position for e in again.events] == [e.position for e in first.events]
    assert stored(owner, tenant.id) == counts


def _retry_while_first_is_open(db, tenant, batch) -> tuple[es.AppendResult, object]:
    """Append `batch` in a transaction held open while a retry of it runs; return both outcomes."""
    appended, release = threading.Event(), threading.Event()

    def first() -> es.AppendResult:
        with db.tenant(tenant.id) as conn:
            result = es.append(conn, batch, es.Metadata("t"))
            appended.set()
            release.wait(10)
        return result

    def retry():
        assert appended.wait(10)
        try:
            with db.tenant(tenant.id) as conn:
                return es.append(conn, batch, es.Metadata("t"))
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
            return exc

    with ThreadPoolExecutor(2) as pool:
        f1 = pool.submit(first)
        f2 = pool.submit(retry)
        time.sleep(0.3)  # the retry is now waiting on the first append's locks
        release.set()
        return f1.result(), f2.result()


RETRY_CASES = {
    "new stream": (False, 0),
    "new stream, any version": (False, None),
    "existing stream": (True, 1),
    "existing stream, any version": (True, None),
}


def _retry_case(db, owner, tenant, case: str) -> tuple[str, list[es.StreamAppend]]:
    exists, expected_version = RETRY_CASES[case]
    stream = f"order-retry-{uuid.uuid4().hex[:8]}"
    if exists:
        with db.tenant(tenant.id) as conn:
            es.append(conn, [es.StreamAppend(stream, "order", [ev(n=0)])], es.Metadata("t"))
    events = [ev("OrderPaid", n=1), ev("OrderShipped", n=2)]
    return stream, [es.StreamAppend(stream, "order", events, expected_version=expected_version)]


@pytest.mark.parametrize("case", RETRY_CASES)
def test_a_concurrent_retry_stores_the_batch_once(db, owner, tenant, case):
    stream, batch = _retry_case(db, owner, tenant, case)
    before = stored(owner, tenant.id)
    first, _ = _retry_while_first_is_open(db, tenant, batch)
    assert not first.duplicate
    assert stored(owner, tenant.id) == (before[0] + 2, before[1] + (0 if RETRY_CASES[case][0] else 1))
    ids = [eid for _, eid, _ in stream_rows(owner, tenant.id, stream)]
    assert ids[-2:] == [e.event_id for e in batch[0].events]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", RETRY_CASES)
def test_a_concurrent_retry_returns_the_first_result(db, owner, tenant, case):
    """Invariant 4: a retry returns the first result, also when it arrives while the first append is still
    committing (a client that timed out and retried). A conflict or an 'event id already used' error tells
    the client its append failed when it did not."""
    _, batch = _retry_case(db, owner, tenant, case)
    first, retry = _retry_while_first_is_open(db, tenant, batch)
    assert isinstance(retry, es.AppendResult), f"the retry failed with {type(retry).__name__}: {retry}"
    assert retry.duplicate
    assert [e.position for e in retry.events] == [e.position for e in first.events]


def test_expected_version_none_appends_at_the_end(db, owner, tenant):
    with db.tenant(tenant.id) as conn:
        created = es.append(
            conn, [es.StreamAppend("order-any", "order", [ev()], expected_version=None)], es.Metadata("t")
        )
    assert [e.version for e in created.events] == [1]
    for expected_end in (3, 4):
        n = 2 if expected_end == 3 else 1
        with db.tenant(tenant.id) as conn:
            result = es.append(
                conn,
                [
                    es.StreamAppend(
                        "order-any", "order", [ev("OrderPaid") for _ in range(n)], expected_version=None
                    )
                ],
                es.Metadata("t"),
            )
        assert result.version_of("order-any") == expected_end
    assert [v for v, _, _ in stream_rows(owner, tenant.id, "order-any")] == [1, 2, 3, 4]


def test_concurrent_appends_at_any_version_all_land(db, owner, tenant):
    with db.tenant(tenant.id) as conn:
        es.append(conn, [es.StreamAppend("order-anyc", "order", [ev()])], es.Metadata("t"))
    barrier = threading.Barrier(WRITERS)

    def writer(_: int) -> None:
        barrier.wait(timeout=30)
        for _ in range(5):
            with db.tenant(tenant.id) as conn:
                es.append(
                    conn, [es.StreamAppend("order-anyc", "order", [ev("OrderPaid")], None)], es.Metadata("t")
                )

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))
    assert [v for v, _, _ in stream_rows(owner, tenant.id, "order-anyc")] == list(range(1, 2 + WRITERS * 5))


def test_metadata_round_trips(db, owner, tenant):
    correlation, causation = uuid.uuid4(), uuid.uuid4()
    event = es.NewEvent(event_type="OrderPlaced", data={"total": 1250, "note": "naïve ☃"}, schema_version=3)
    before = datetime.now(UTC)
    with db.tenant(tenant.id) as conn:
        result = es.append(
            conn,
            [es.StreamAppend("order-meta", "order", [event])],
            es.Metadata("alice", correlation, causation),
        )
        (read,) = es.read_stream(conn, "order-meta")
    after = datetime.now(UTC)
    assert read.metadata == {
        "actor": "alice",
        "correlation_id": str(correlation),
        "causation_id": str(causation),
    }
    assert read.schema_version == 3
    assert read.data == {"total": 1250, "note": "naïve ☃"}
    assert read.event_id == event.event_id
    assert read.recorded_at.tzinfo is not None
    assert before - timedelta(seconds=5) <= read.recorded_at <= after + timedelta(seconds=5)
    (appended,) = result.events
    assert (appended.recorded_at, appended.position, appended.version, appended.metadata) == (
        read.recorded_at,
        read.position,
        read.version,
        read.metadata,
    )
    assert owner.execute(
        "SELECT schema_version, metadata ->> 'actor', metadata ->> 'correlation_id' FROM events"
        " WHERE event_id = %s",
        [event.event_id],
    ).fetchone() == (3, "alice", str(correlation))


@pytest.fixture
def renamed_type():
    """A fresh event type with an upcaster from schema 1 to 2; the registry entry is removed afterwards."""
    event_type = f"WidgetRenamed{uuid.uuid4().hex[:8]}"

    @es.upcaster(event_type, 1)
    def v1_to_v2(data: dict) -> dict:
        return {"title": data["name"], "source": "v1"}

    yield event_type
    es.UPCASTERS.pop((event_type, 1), None)


def test_an_upcaster_changes_what_is_read_not_what_is_stored(db, owner, tenant, renamed_type):
    old = es.NewEvent(event_type=renamed_type, data={"name": "blue"}, schema_version=1)
    new = es.NewEvent(event_type=renamed_type, data={"title": "red", "source": "v2"}, schema_version=2)
    with db.tenant(tenant.id) as conn:
        es.append(conn, [es.StreamAppend("widget-1", "widget", [old, new])], es.Metadata("t"))
        read = es.read_stream(conn, "widget-1")
        raw = [e for e in es.read_all(conn, as_stored=True) if e.stream_id == "widget-1"]
    assert [(e.schema_version, e.data) for e in read] == [
        (2, {"title": "blue", "source": "v1"}),
        (2, {"title": "red", "source": "v2"}),
    ]
    assert [(e.schema_version, e.data) for e in raw] == [
        (1, {"name": "blue"}),
        (2, {"title": "red", "source": "v2"}),
    ]
    assert owner.execute(
        "SELECT schema_version, data FROM events WHERE tenant_id = %s AND stream_id = 'widget-1'"
        " ORDER BY version",
        [tenant.id],
    ).fetchall() == [(1, {"name": "blue"}), (2, {"title": "red", "source": "v2"})]


def test_after_the_upcaster_is_removed_reads_are_as_stored(db, tenant):
    # Guards the fixture above: the registry is global, and a leaked upcaster would change other tests.
    event_type = f"WidgetMoved{uuid.uuid4().hex[:8]}"
    es.upcaster(event_type, 1)(lambda data: {"moved": True})
    es.UPCASTERS.pop((event_type, 1))
    with db.tenant(tenant.id) as conn:
        es.append(
            conn,
            [es.StreamAppend("widget-2", "widget", [es.NewEvent(event_type=event_type)])],
            es.Metadata("t"),
        )
        (read,) = es.read_stream(conn, "widget-2")
    assert (read.schema_version, read.data) == (1, {})


def test_a_transaction_older_than_a_streams_last_version_cannot_append_to_it(db, owner, tenant):
    """Followers read in (txid, position) order, so a transaction whose xid predates the stream's latest
    version must not append after it: it gets a ConcurrencyError and a fresh transaction succeeds."""
    with db.tenant(tenant.id) as conn:
        es.append(conn, [es.StreamAppend("order-fw", "order", [ev()])], es.Metadata("t"))
    with pytest.raises(ConcurrencyError), db.tenant(tenant.id) as conn:
        # This transaction takes its xid now, with an unrelated write...
        conn.execute("INSERT INTO checkpoints (tenant_id, follower) VALUES (oms_current_tenant(), 'probe')")
        # ...then another transaction appends version 2 and commits...
        with db.tenant(tenant.id) as other:
            es.append(other, [es.StreamAppend("order-fw", "order", [ev("OrderPaid")], 1)], es.Metadata("t"))
        # ...so version 3 from here would sort before version 2 for a follower.
        es.append(conn, [es.StreamAppend("order-fw", "order", [ev("OrderShipped")], None)], es.Metadata("t"))
    assert owner.execute("SELECT count(*) FROM checkpoints WHERE follower = 'probe'").fetchone() == (0,)
    with db.tenant(tenant.id) as conn:
        conn.execute("INSERT INTO checkpoints (tenant_id, follower) VALUES (oms_current_tenant(), 'probe')")
        es.append(conn, [es.StreamAppend("order-fw", "order", [ev("OrderShipped")], 2)], es.Metadata("t"))
    assert [v for v, _, _ in stream_rows(owner, tenant.id, "order-fw")] == [1, 2, 3]


# Bad input: each case is a callable that builds and appends inside a tenant transaction.

HOSTILE_STREAM_IDS = [
    "'; DROP TABLE events; --",
    "",
    "x" * 500,
    "order 1",
    "order-1\n",
    "-order",
    "order/1",
    "../../etc/passwd",
    "order\x00",
    "ordér-1",
    None,
    42,
]


def _append(db, tenant_id, build):
    with db.tenant(tenant_id) as conn:
        return es.append(conn, build(), es.Metadata("t"))


@pytest.mark.parametrize("stream_id", HOSTILE_STREAM_IDS, ids=repr)
def test_a_bad_stream_id_is_a_clear_error_and_writes_nothing(db, owner, tenant, stream_id):
    before = stored(owner, tenant.id)
    with pytest.raises(ValidationError, match="not a valid stream id"):
        _append(db, tenant.id, lambda: [es.StreamAppend(stream_id, "order", [ev()])])
    assert stored(owner, tenant.id) == before


@pytest.mark.parametrize("stream_type", ["", "Order", "order type", "order\n", "x" * 100, None])
def test_a_bad_stream_type_is_a_clear_error_and_writes_nothing(db, owner, tenant, stream_type):
    before = stored(owner, tenant.id)
    with pytest.raises(ValidationError, match="not a valid stream type"):
        _append(db, tenant.id, lambda: [es.StreamAppend("order-st", stream_type, [ev()])])
    assert stored(owner, tenant.id) == before


@pytest.mark.parametrize(
    "event_type",
    ["", "orderPlaced", "Order Placed", "Order-Placed", "OrderPlaced\n", "X" * 101, "Ördered", 7, None],
)
def test_a_bad_event_type_is_a_clear_error_and_writes_nothing(db, owner, tenant, event_type):
    before = stored(owner, tenant.id)
    with pytest.raises(pydantic.ValidationError, match="event_type"):
        _append(
            db,
            tenant.id,
            lambda: [es.StreamAppend("order-et", "order", [es.NewEvent(event_type=event_type)])],
        )
    assert stored(owner, tenant.id) == before


@pytest.mark.parametrize(
    "data",
    [
        {"tags": {"a", "b"}},
        {"at": datetime(2024, 1, 1, tzinfo=UTC)},
        {"total": math.nan},
        {"total": math.inf},
        {"price": Decimal("1.10")},
        {"blob": b"\x00\x01"},
        {"nested": [{"deep": object()}]},
    ],
    ids=["set", "datetime", "nan", "inf", "decimal", "bytes", "object"],
)
def test_data_that_is_not_json_is_a_clear_error_and_writes_nothing(db, owner, tenant, data):
    before = stored(owner, tenant.id)
    with pytest.raises(pydantic.ValidationError, match="event data must be JSON"):
        _append(db, tenant.id, lambda: [es.StreamAppend("order-json", "order", [ev(**data)])])
    assert stored(owner, tenant.id) == before


def test_data_the_database_cannot_store_is_a_clear_error_and_writes_nothing(db, owner, tenant):
    # Valid JSON that jsonb refuses (a NUL character): the server's error, translated, and a rollback.
    before = stored(owner, tenant.id)
    with pytest.raises(ValidationError, match="invalid value"):
        _append(db, tenant.id, lambda: [es.StreamAppend("order-nul", "order", [ev(note="a\x00b")])])
    assert stored(owner, tenant.id) == before


def test_a_payload_over_one_megabyte_is_a_clear_error_and_writes_nothing(db, owner, tenant):
    before = stored(owner, tenant.id)
    with pytest.raises(pydantic.ValidationError, match="larger than 1024 KB"):
        _append(
            db,
            tenant.id,
            lambda: [es.StreamAppend("order-big", "order", [ev(blob="x" * es.MAX_EVENT_BYTES)])],
        )
    # Multi-byte characters count as bytes, not characters.
    with pytest.raises(pydantic.ValidationError, match="larger than"):
        ev(blob="€" * (es.MAX_EVENT_BYTES // 3 + 10))
    assert stored(owner, tenant.id) == before
    # Just under the limit is accepted: the limit is the documented one, not something smaller.
    with db.tenant(tenant.id) as conn:
        es.append(
            conn,
            [es.StreamAppend("order-big", "order", [ev(blob="x" * (es.MAX_EVENT_BYTES - 100))])],
            es.Metadata("t"),
        )
    assert stored(owner, tenant.id) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize("tenant_id", ["nope", "", "1234", "00000000-0000-0000-0000-00000000000g", None, 12])
def test_a_malformed_tenant_id_is_a_clear_error_and_writes_nothing(db, owner, tenant_id):
    before = owner.execute("SELECT count(*) FROM events").fetchone()[0]
    with pytest.raises(ValidationError, match="not a valid tenant id"), db.tenant(tenant_id) as conn:
        es.append(conn, [es.StreamAppend("order-bad-tenant", "order", [ev()])], es.Metadata("t"))
    assert owner.execute("SELECT count(*) FROM events").fetchone()[0] == before


def test_a_malformed_tenant_id_passed_to_append_is_a_clear_error(db, owner):
    before = owner.execute("SELECT count(*) FROM events").fetchone()[0]
    with db.connection() as conn, pytest.raises(ValidationError):
        es.append(
            conn, [es.StreamAppend("order-bad-tenant", "order", [ev()])], es.Metadata("t"), tenant_id="nope"
        )
    assert owner.execute("SELECT count(*) FROM events").fetchone()[0] == before


@pytest.mark.parametrize("how", ["tenant transaction", "tenant_id argument"])
def test_an_unknown_tenant_is_not_found_and_writes_nothing(db, owner, how):
    unknown = uuid.uuid4()
    before = owner.execute("SELECT count(*) FROM events").fetchone()[0]
    with pytest.raises(NotFound):
        if how == "tenant transaction":
            with db.tenant(unknown) as conn:
                es.append(conn, [es.StreamAppend("order-ghost", "order", [ev()])], es.Metadata("t"))
        else:
            with db.connection() as conn:
                es.append(
                    conn,
                    [es.StreamAppend("order-ghost", "order", [ev()])],
                    es.Metadata("t"),
                    tenant_id=unknown,
                )
    assert owner.execute("SELECT count(*) FROM events").fetchone()[0] == before
    assert owner.execute("SELECT count(*) FROM streams WHERE tenant_id = %s", [unknown]).fetchone() == (0,)


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda: es.NewEvent(event_type="OrderPlaced", event_id="nope"), pydantic.ValidationError),
        (lambda: es.NewEvent(event_type="OrderPlaced", schema_version=0), pydantic.ValidationError),
        (lambda: es.StreamAppend("order-x", "order", []), ValidationError),
        (lambda: es.StreamAppend("order-x", "order", [ev()], expected_version=-1), ValidationError),
        (lambda: es.StreamAppend("order-x", "order", [ev()], expected_version="1"), ValidationError),
    ],
    ids=["event id", "schema version", "no events", "negative version", "text version"],
)
def test_other_malformed_input_is_a_clear_error(build, error):
    with pytest.raises(error):
        build()


def test_the_same_event_id_twice_in_one_append_is_refused(db, owner, tenant):
    event = ev()
    before = stored(owner, tenant.id)
    with pytest.raises(ValidationError, match="appears twice"):
        _append(db, tenant.id, lambda: [es.StreamAppend("order-twice", "order", [event, event])])
    assert stored(owner, tenant.id) == before
