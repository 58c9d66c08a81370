"""Payment gateways: authorize, capture and refund, each with an idempotency key.

An answer is a GatewayResult: succeeded, declined (a hard no, with the gateway's code; never retried)
or transient (worth another try). `uncertain` marks a transient failure after which the gateway may
still have acted (a timeout, a 5xx): the charge must be retried at that gateway with the same key,
never moved to another gateway, or the customer could be charged twice.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

Outcome = Literal["succeeded", "declined", "transient"]
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
NOT_PROCESSED = (429, 503)  # "too many requests", "unavailable": refused before acting


@dataclass(frozen=True)
class GatewayResult:
    outcome: Outcome
    reference: str = ""
    code: str = ""
    message: str = ""
    uncertain: bool = False


class Gateway(Protocol):
    name: str

    def authorize(self, key: str, amount: int, currency: str, reference: str) -> GatewayResult: ...
    def capture(self, key: str, authorization: str, amount: int) -> GatewayResult: ...
    def refund(self, key: str, capture: str, amount: int) -> GatewayResult: ...


class SimulatedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["simulated"] = "simulated"
    latency_ms: int = Field(default=0, ge=0, le=10_000, strict=True)
    transient_rate: float = Field(default=0.0, ge=0, le=1)
    decline_rate: float = Field(default=0.0, ge=0, le=1)
    seed: int = Field(default=0, strict=True)


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["http"] = "http"
    url: HttpUrl
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, v: HttpUrl) -> HttpUrl:
        if v.scheme not in ("http", "https"):
            raise ValueError("the gateway URL must start with http:// or https://")
        return v


class SimulatedGateway:
    """A gateway in the process, for the demo: latency, transient failures and declines at set rates.

    Seeded per idempotency key: a card that is declined stays declined; a transient failure may pass
    on the next try; a key that succeeded answers the same again without charging twice.
    """

    def __init__(self, config: SimulatedConfig):
        self.name, self.config = config.name, config
        self._answers: dict[str, GatewayResult] = {}
        self._tries: dict[str, int] = {}
        self._lock = threading.Lock()

    def _answer(self, op: str, key: str) -> GatewayResult:
        c = self.config
        if c.latency_ms:
            time.sleep(c.latency_ms / 1000)
        with self._lock:
            if (done := self._answers.get(f"{op}:{key}")) is not None:
                return done
            tries = self._tries[f"{op}:{key}"] = self._tries.get(f"{op}:{key}", 0) + 1
        if op == "authorize" and random.Random(f"{c.seed}:{key}:decline").random() < c.decline_rate:
            return GatewayResult("declined", code="card_declined", message="the card was declined")
        if random.Random(f"{c.seed}:{op}:{key}:{tries}").random() < c.transient_rate:
            return GatewayResult("transient", code="unavailable", message="simulated outage")
        digest = hashlib.sha256(f"{c.seed}:{op}:{key}".encode()).hexdigest()[:16]
        result = GatewayResult("succeeded", reference=f"{op[:4]}_{digest}")
        with self._lock:
            self._answers[f"{op}:{key}"] = result
        return result

    def authorize(self, key: str, amount: int, currency: str, reference: str) -> GatewayResult:
        return self._answer("authorize", key)

    def capture(self, key: str, authorization: str, amount: int) -> GatewayResult:
        return self._answer("capture", key)

    def refund(self, key: str, capture: str, amount: int) -> GatewayResult:
        return self._answer("refund", key)


class HttpGateway:
    """A JSON REST gateway: POST {url}/authorize|capture|refund with an Idempotency-Key header.

    2xx is success, 4xx a decline (the body's "code"), 5xx, 429 and timeouts transient. Certain
    (the gateway did not act, so another gateway may be tried): a refused connection, 503 and 429.
    Uncertain: a timeout and any other 5xx.
    """

    def __init__(self, config: HttpConfig, token: str = ""):
        self.name, self.config = config.name, config
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=str(config.url).rstrip("/"), timeout=config.timeout_seconds, headers=headers
        )

    def _post(self, op: str, key: str, body: dict[str, Any]) -> GatewayResult:
        try:
            response = self._client.post(f"/{op}", json=body, headers={"Idempotency-Key": f"{key}:{op}"})
        except httpx.ConnectError as exc:
            return GatewayResult("transient", code="unreachable", message=str(exc)[:200] or "unreachable")
        except httpx.TimeoutException:
            return GatewayResult(
                "transient",
                code="timeout",
                message=f"no answer within {self.config.timeout_seconds:g} s",
                uncertain=True,
            )
        except httpx.HTTPError as exc:
            return GatewayResult("transient", code="network", message=str(exc)[:200], uncertain=True)
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status_code >= 500 or response.status_code == 429:
            return GatewayResult(
                "transient",
                code=f"http_{response.status_code}",
                message=str(data.get("message", response.reason_phrase))[:200],
                uncertain=response.status_code not in NOT_PROCESSED,
            )
        if response.status_code >= 400:
            return GatewayResult(
                "declined",
                code=str(data.get("code") or f"http_{response.status_code}")[:60],
                message=str(data.get("message", response.reason_phrase))[:200],
            )
        return GatewayResult("succeeded", reference=str(data.get("id", ""))[:200])

    def authorize(self, key: str, amount: int, currency: str, reference: str) -> GatewayResult:
        return self._post("authorize", key, {"amount": amount, "currency": currency, "reference": reference})

    def capture(self, key: str, authorization: str, amount: int) -> GatewayResult:
        return self._post("capture", key, {"authorization": authorization, "amount": amount})

    def refund(self, key: str, capture: str, amount: int) -> GatewayResult:
        return self._post("refund", key, {"capture": capture, "amount": amount})


def parse_config(data: dict[str, Any]) -> SimulatedConfig | HttpConfig:
    """A gateway's settings, checked; the kind decides which fields it takes."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "http":
        return HttpConfig.model_validate(data)
    if kind in (None, "simulated"):
        return SimulatedConfig.model_validate(data)
    raise ValueError(f"gateway kind must be 'simulated' or 'http', not {str(kind)[:30]!r}")


def build(config: dict[str, Any], token: str = "") -> Gateway:
    parsed = parse_config(config)
    if isinstance(parsed, HttpConfig):
        return HttpGateway(parsed, token)
    return SimulatedGateway(parsed)


def charge(gateway: Gateway, key: str, amount: int, currency: str, reference: str) -> GatewayResult:
    """Authorize and capture under one idempotency key: a retry with the same key charges once."""
    auth = gateway.authorize(key, amount, currency, reference)
    if auth.outcome != "succeeded":
        return auth
    return gateway.capture(key, auth.reference, amount)
