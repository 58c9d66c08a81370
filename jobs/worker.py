"""`oms worker`: APScheduler runs the jobs core/workers.py defines, one batch at a time.

SIGTERM or SIGINT lets the batch in hand finish, records a last heartbeat and exits.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from core.batch import BatchReport
from core.db import Database
from core.workers import JOBS, Heartbeat

log = logging.getLogger("oms.worker")


def run_job(heartbeat: Heartbeat, name: str) -> None:
    work, _ = JOBS[name]
    started, t0 = datetime.now(UTC), time.perf_counter()
    try:
        done, error = work(heartbeat.db, heartbeat.worker_id), None
        if isinstance(done, BatchReport):  # the job ran; some items failed in ways an operator must see
            processed, error = done.processed, "; ".join(done.problems)[:500] or None
        else:
            processed = done
    except Exception as exc:  # a failing job is reported in the heartbeat and tried again next tick
        log.exception("job %s failed", name)
        processed, error = None, f"{type(exc).__name__}: {exc}"[:500]
    heartbeat.record(name, started, time.perf_counter() - t0, processed, error)


def main(heartbeat_seconds: float = 2.0) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
    # One connection per job and the heartbeat's, and two more for each of the two jobs that sync the
    # analytic store (it reads two tables at a time on connections of its own): no job waits for another's.
    db = Database(application_name="oms-worker", max_size=len(JOBS) + 1 + 4)
    heartbeat = Heartbeat(db)
    scheduler = BlockingScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    for name, (_, seconds) in JOBS.items():
        scheduler.add_job(
            run_job,
            "interval",
            args=[heartbeat, name],
            seconds=seconds,
            id=name,
            next_run_time=datetime.now(UTC),
        )
    scheduler.add_job(
        heartbeat.beat, "interval", seconds=heartbeat_seconds, id="heartbeat", next_run_time=datetime.now(UTC)
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the batch in hand", signum)
        scheduler.shutdown(wait=True)  # waits for running jobs; then start() below returns

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker %s started", heartbeat.worker_id)
    scheduler.start()
    heartbeat.beat(stopped=True)
    db.close()
    log.info("worker %s stopped", heartbeat.worker_id)
    return 0
