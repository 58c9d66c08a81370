"""The zero-config path of `./run`: no DATABASE_URL, so an embedded PostgreSQL under the data directory,
migrations, then the app; a SIGTERM stops the app and the embedded server cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def test_up_starts_embedded_database_and_app_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OMS_APP_DATABASE_URL")}
    env["OMS_DATA_DIR"] = str(tmp_path)
    # `oms up` calls the same function; this test does not depend on the CLI wiring.
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from core.launcher import up; raise SystemExit(up(port={port}))"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    pgdata = tmp_path / "pg"
    try:
        url = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if match := re.match(r"OMS is running at (http://\S+)$", line.strip()):
                url = match.group(1)
        assert url == f"http://127.0.0.1:{port}", "no 'OMS is running at' line:\n" + "".join(output)

        assert _get(f"{url}/_stcore/health") == 200
        assert _get(f"{url}/") == 200
        app_processes = psutil.Process(proc.pid).children(recursive=True)
        assert any("streamlit" in " ".join(p.cmdline()) for p in app_processes)
        assert any(p.cmdline()[-1:] == ["worker"] for p in app_processes), "no worker beside the app"
        assert (pgdata / "PG_VERSION").is_file()
        assert _postmaster_pid(pgdata) is not None, "the embedded server is not running"

        proc.send_signal(signal.SIGTERM)
        proc.wait(EXIT_TIMEOUT_S)

        assert proc.returncode == 0, "".join(output)
        assert not any(p.is_running() for p in app_processes), "the app outlived `up`"
        assert (pgdata / "PG_VERSION").is_file()
        assert _postmaster_pid(pgdata) is None, "the embedded server outlived `up`"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if (leftover := _postmaster_pid(pgdata)) is not None and psutil.pid_exists(leftover):
            psutil.Process(leftover).terminate()
