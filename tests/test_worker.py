"""The worker as a real process: it keeps asynchronous projections and the hash chain up to date,
expires unpaid reservations, leaves heartbeats, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from core import catalog, chain, customers, inventory, projections, tenants
from core import eventstore as es
from core.commands import CLI
from core.orders.handlers import place_order
from core.workers import JOBS, heartbeats


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the worker")


@pytest.fixture
def worker(owner_url):
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker", "--heartbeat", "0.5"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_worker_follows_seals_expires_and_stops_cleanly(db, tenant, worker):
    # Events to follow: a handful of appends.
    for n in range(5):
        with db.tenant(tenant.id) as conn:
            es.append(
                conn,
                [es.StreamAppend(f"note-{n}", "note", [es.NewEvent(event_type="NoteTaken")])],
                es.Metadata("test"),
            )
    # An order whose reservation ran out an hour ago.
    catalog.add_warehouse(db, tenant.id, CLI, code="MAIN", name="Main")
    catalog.add_product(db, tenant.id, CLI, sku="MUG", name="Mug", price=900)
    inventory.receive(db, tenant.id, CLI, sku="MUG", warehouse="MAIN", quantity=5)
    tenants.change_settings(db, tenant.id, CLI, reservation_minutes=1)
    buyer = customers.add_customer(db, tenant.id, CLI, name="Ada")["id"]
    order = place_order(
        db, tenant.id, CLI, customer_id=buyer, lines=[("MUG", 2)], at=datetime.now(UTC) - timedelta(hours=1)
    )

    counts = projections.EventTypeCounts()
    wait_for(
        lambda: (
            projections.lag(db, tenant.id, counts).events == 0
            and projections.lag(db, tenant.id, chain.SEALER).events == 0
        )
    )
    assert chain.verify(db, tenant.id).ok
    with db.tenant(tenant.id) as conn:
        notes = conn.execute("SELECT events FROM event_type_counts WHERE event_type = 'NoteTaken'").fetchone()
    assert notes == (5,)

    def expired():
        with db.tenant(tenant.id) as conn:
            return (
                conn.execute("SELECT status FROM orders WHERE id = %s", [order["order_id"]]).fetchone()[0]
                == "expired"
            )

    # The expiry job runs every 15 s over every tenant; a tenant an earlier test left failing (its
    # gateway closed) must not keep this one's reservation from expiring.
    try:
        wait_for(expired, timeout=45.0)
    except AssertionError:
        raise AssertionError(f"not expired; heartbeats: {[h['jobs'] for h in heartbeats(db)][:3]}") from None
    assert inventory.stock_levels(db, tenant.id, CLI, sku="MUG")[0]["reserved"] == 0

    beat = wait_for(
        lambda: [h for h in heartbeats(db) if h["pid"] == worker.pid and len(h["jobs"]) == len(JOBS)]
    )[0]
    assert {"projections", "reservation_expiry"} <= set(beat["jobs"])
    # Only these jobs have work of this test's; the others also serve the tenants earlier tests left
    # behind (a charge or an email to a fake server long closed), whose errors are theirs.
    assert beat["jobs"]["projections"]["error"] is None
    assert tenant.slug not in (beat["jobs"]["reservation_expiry"]["error"] or "")  # others' are theirs

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    (last,) = [h for h in heartbeats(db) if h["pid"] == worker.pid]
    assert last["stopped_at"] is not None


def test_a_failing_job_shows_in_the_heartbeat_and_the_worker_keeps_running(db, owner, owner_url):
    # Revoke the worker's right to read checkpoints: the projections job fails, the rest goes on.
    owner.execute("REVOKE SELECT ON checkpoints FROM oms_app")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker", "--heartbeat", "0.5"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        beat = wait_for(
            lambda: [
                h
                for h in heartbeats(db)
                if h["pid"] == proc.pid and h["jobs"].get("projections", {}).get("error")
            ]
        )[0]
        assert "permission denied" in beat["jobs"]["projections"]["error"]
        assert proc.poll() is None
    finally:
        owner.execute("GRANT SELECT ON checkpoints TO oms_app")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
