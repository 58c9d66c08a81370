"""A local SMTP server (aiosmtpd) that keeps what it receives: for `oms bench worker` and the tests.

Loopback only; it accepts any sender and recipient and stores each message parsed, with the time it
arrived.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller


class _Inbox:
    def __init__(self):
        self.received: list[tuple[bytes, list[str], float]] = []  # raw message, recipients, arrival
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:  # kept raw: parsing costs more than receiving, and only tests need it
            self.received.append((envelope.content, list(envelope.rcpt_tos), time.time()))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a free loopback port, keeping every email it receives."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.inbox = _Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port)
        self.controller.start()
        self.host, self.port = "127.0.0.1", port

    def _received(self) -> list[tuple[bytes, list[str], float]]:
        with self.inbox.lock:
            return list(self.inbox.received)

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        """Every email, parsed, with the envelope recipients in X-Envelope-To."""
        parsed = []
        for raw, rcpt, _at in self._received():
            message = email.message_from_bytes(raw, policy=email.policy.default)
            message["X-Envelope-To"] = ", ".join(rcpt)
            parsed.append(message)
        return parsed

    def arrivals(self, header: str) -> list[tuple[str, float]]:
        """(value of the header, arrival time) for every email: headers only, fast."""
        parser = BytesHeaderParser()
        return [(parser.parsebytes(raw).get(header, ""), at) for raw, _rcpt, at in self._received()]

    def close(self) -> None:
        self.controller.stop()
