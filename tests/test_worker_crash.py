"""Crash safety: `oms worker` is killed with SIGKILL at random moments while it charges orders and
sends notifications, and started again, several times. Afterwards every notification was delivered
at least once, none is lost, and no order was captured twice at the gateway."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from fakes import FakeGateway

from core import catalog, customers, inventory
from core.commands import CLI
from core.notifications import channels
from core.notifications.smtp_sink import SmtpServer
from core.orders.handlers import place_order
from core.payments import service as payments

ORDERS = 60


def start_worker() -> subprocess.Popen:
    env = {**os.environ, "OMS_WORKER_LEASE_SECONDS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker", "--heartbeat", "0.5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def outstanding(owner, tid) -> tuple[int, int]:
    return owner.execute(
        "SELECT (SELECT count(*) FROM payments WHERE tenant_id = %(t)s AND status = 'pending'),"
        " (SELECT count(*) FROM notifications WHERE tenant_id = %(t)s AND status <> 'sent')",
        {"t": tid},
    ).fetchone()


def stuck(owner, tid) -> list[tuple]:
    """What is left undone, to say why in a failure."""
    return owner.execute(
        "SELECT topic, status, attempts, last_error, next_attempt_at - now(), lease_until - now(), leased_by"
        " FROM notifications WHERE tenant_id = %s AND status <> 'sent' LIMIT 5",
        [tid],
    ).fetchall()


@pytest.mark.timeout(240)
def test_killing_the_worker_at_random_loses_nothing_and_charges_once(db, owner, tenant, owner_url):
    gateway, smtp = FakeGateway(slow=0.1), SmtpServer()
    procs: list[subprocess.Popen] = []
    try:
        payments.set_gateways(db, tenant.id, CLI, [{"name": "main", "kind": "http", "url": gateway.url}])
        channels.set_channel(
            db,
            tenant.id,
            CLI,
            "email",
            {"host": smtp.host, "port": smtp.port, "starttls": False, "sender": "s@x.io"},
        )
        catalog.add_warehouse(db, tenant.id, CLI, code="MAIN", name="Main")
        catalog.add_product(db, tenant.id, CLI, sku="MUG", name="Mug", price=1250)
        inventory.receive(db, tenant.id, CLI, sku="MUG", warehouse="MAIN", quantity=ORDERS)
        buyer = customers.add_customer(db, tenant.id, CLI, name="Ada", email="ada@example.com")["id"]
        gateway.plan = ["slow"] * ORDERS  # each authorization takes a moment: kills land mid-call
        orders = []
        for _ in range(ORDERS):
            order = place_order(db, tenant.id, CLI, customer_id=buyer, lines=[("MUG", 1)])
            payments.request_payment(db, tenant.id, CLI, order["order_id"])
            orders.append(order)

        rng = random.Random(20261201)
        for _ in range(8):
            proc = start_worker()
            procs.append(proc)
            time.sleep(rng.uniform(1.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()

        final = start_worker()
        procs.append(final)
        deadline = time.monotonic() + 120
        while outstanding(owner, tenant.id) != (0, 0):
            assert time.monotonic() < deadline, (outstanding(owner, tenant.id), stuck(owner, tenant.id))
            time.sleep(0.5)
        while not owner.execute("SELECT 1 FROM worker_heartbeats WHERE pid = %s", [final.pid]).fetchone():
            time.sleep(0.2)  # SIGTERM is handled once the worker is up: it beats when it is
        final.terminate()
        assert final.wait(timeout=30) == 0

        statuses = owner.execute(
            "SELECT status, count(*) FROM orders WHERE tenant_id = %s GROUP BY status", [tenant.id]
        ).fetchall()
        assert statuses == [("paid", ORDERS)]
        assert {f"order-{o['number']}" for o in orders} == set(gateway.charged)
        assert max(gateway.charged.values()) == 1 and max(gateway.captures.values()) == 1
        keys = {
            r[0]
            for r in owner.execute("SELECT dedupe_key FROM notifications WHERE tenant_id = %s", [tenant.id])
        }
        assert len(keys) == 2 * ORDERS  # reserved and paid, per order
        delivered = {m["X-OMS-Dedupe-Key"] for m in smtp.messages}
        assert keys <= delivered
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        gateway.close()
        smtp.close()
