from core import eventstore as es


def test_append_and_read_back(db, tenant):
    event = es.NewEvent(event_type="OrderPlaced", data={"total": 1250})
    with db.tenant(tenant.id) as conn:
        result = es.append(conn, [es.StreamAppend("order-1", "order", [event])], es.Metadata("tester"))
        stored = es.read_stream(conn, "order-1")
    assert [e.event_id for e in result.events] == [event.event_id]
    assert [(e.event_type, e.data, e.metadata["actor"]) for e in stored] == [
        ("OrderPlaced", {"total": 1250}, "tester")
    ]
