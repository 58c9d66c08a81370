"""Real servers on loopback that stand in for the outside world: a payment gateway and an SMS/push
provider over HTTP (the SMTP server is core.notifications.smtp_sink, which the benchmark uses too).
Each records what it received, and can be told to fail: time out, answer 5xx, decline, refuse a
token."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = owner.handle(self.path, dict(self.headers), body)
                if status is None:  # drop the connection without an answer
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int | None, dict]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeGateway(_Base):
    """POST /authorize, /capture, /refund with an Idempotency-Key header.

    `plan` holds what the next authorize calls do: "ok", "decline", "5xx", "timeout" (answers after
    `slow` seconds, having charged) or "slow" (the same, but answered in time). A repeated key gets
    the first successful answer again and is not charged again. `captures` counts real captures per
    idempotency key and `charged` per order reference: both must never exceed 1. `refund_plan` does
    the same for /refund calls, and `refunds` counts real refunds per capture id.
    """

    def __init__(self, slow: float = 1.5):
        self.plan: list[str] = []
        self.slow = slow
        self.calls: list[tuple[str, str]] = []  # (path, idempotency key)
        self.answers: dict[str, dict] = {}
        self.auth_reference: dict[str, str] = {}
        self.captures: Counter[str] = Counter()
        self.charged: Counter[str] = Counter()
        self.refund_plan: list[str] = []  # the same steps, for the next refund calls
        self.refunds: Counter[str] = Counter()  # real refunds per capture id: must never exceed 1
        super().__init__()

    def handle(self, path, headers, body):
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            self.calls.append((path, key))
            if key in self.answers:
                return 200, self.answers[key]
            plan = {"/authorize": self.plan, "/refund": self.refund_plan}.get(path)
            step = plan.pop(0) if plan else "ok"
        if step == "5xx":
            return 503, {"message": "try later"}
        if step == "500":  # failed midway: the gateway may or may not have acted
            return 500, {"message": "internal error"}
        if step == "decline":
            return 402, {"code": "insufficient_funds", "message": "not enough money"}
        if step in ("timeout", "slow"):
            time.sleep(self.slow)
        with self.lock:
            if key in self.answers:  # a retry overtook this slow call
                return 200, self.answers[key]
            if path == "/authorize":
                answer = {"id": f"auth-{len(self.answers)}"}
                self.auth_reference[answer["id"]] = body.get("reference", "")
            elif path == "/capture":
                answer = {"id": f"cap-{len(self.answers)}"}
                self.captures[key] += 1
                self.charged[self.auth_reference.get(body.get("authorization"), "?")] += 1
            else:
                answer = {"id": f"ref-{len(self.answers)}"}
                self.refunds[body.get("capture", "?")] += 1
            self.answers[key] = answer
        return 200, answer

    @property
    def authorizations(self) -> int:
        return sum(1 for path, _ in self.calls if path == "/authorize")


class FakeProvider(_Base):
    """An SMS or push provider: records each message; refuses a wrong token; `failing` answers 500."""

    def __init__(self, token: str = "good-token"):
        self.token = token
        self.failing = False
        self.received: list[dict[str, Any]] = []
        super().__init__()

    def handle(self, path, headers, body):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "bad token"}
        if self.failing:
            return 500, {"message": "down"}
        with self.lock:
            self.received.append({**body, "idempotency_key": headers.get("Idempotency-Key")})
        return 200, {"ok": True}
