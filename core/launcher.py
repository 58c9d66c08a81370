"""`oms up`: the database (embedded when DATABASE_URL is unset), migrations, demo data on a first
start, then the worker and the Streamlit app.

The embedded PostgreSQL stays up for as long as this process runs, because this process asked pgserver for
it; pgserver stops it at interpreter exit. So stopping must end in a normal exit: SIGINT and SIGTERM are
turned into a clean shutdown of the app, never an abrupt death of this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import FrameType

from core.db import app_url, owner_url
from core.migrate import migrate
from core.settings import PROJECT_ROOT, get_settings

APP_SCRIPT = PROJECT_ROOT / "streamlit_app.py"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class _Stopped(Exception):
    """A stop signal arrived before the app was started."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def up(port: int = 8501, host: str = "127.0.0.1") -> int:
    """Run the product until stopped; return the app's exit code."""
    child: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            raise _Stopped(signum)
        for proc in (child, worker):
            if proc is not None and proc.poll() is None:
                proc.terminate()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        owner = owner_url(settings)
        migrate(owner, settings)
        # On a first start (no tenant yet), seed the demo shops and print their logins once.
        from core.demo import seed_if_empty

        seed_if_empty(app_url(settings))

        # The app gets the serving role's URL only, so it neither holds owner rights nor joins pgserver.
        env = os.environ | {"OMS_APP_DATABASE_URL": app_url(settings)}
        # One worker beside the app: async projections, the hash chain, reservation expiry.
        worker = subprocess.Popen([sys.executable, "-m", "core.cli", "worker"], cwd=PROJECT_ROOT, env=env)
        child = subprocess.Popen(_streamlit_command(port, host), cwd=PROJECT_ROOT, env=env)
        url = f"http://{host}:{port}"
        if not _wait_until_healthy(child, _probe_url(host, port)):
            if child.poll() is None:
                print(f"oms: the app did not answer on {url} within {READY_TIMEOUT_S:.0f} s", file=sys.stderr)
                _stop(child)
                return 1
            return _exit_code(child.returncode)
        print(f"OMS is running at {url}", flush=True)
        print(f"worker running (pid {worker.pid})", flush=True)
        return _exit_code(child.wait())
    except _Stopped as stopped:
        return 128 + stopped.signum
    finally:
        for proc in (child, worker):
            if proc is not None and proc.poll() is None:
                _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_code(returncode: int) -> int:
    """A child's return code as a shell would report it: killed by signal N is 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def _streamlit_command(port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


def _probe_url(host: str, port: int) -> str:
    """The health URL to poll: a wildcard bind address is probed through loopback."""
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in probe_host and not probe_host.startswith("["):
        probe_host = f"[{probe_host}]"
    return f"http://{probe_host}:{port}/_stcore/health"


def _wait_until_healthy(child: subprocess.Popen[bytes], health_url: str) -> bool:
    """True once the app answers 200 on its health endpoint; False if it exits or the timeout passes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
