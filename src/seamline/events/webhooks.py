"""Outbound webhooks: sign, POST, log every attempt, disable an endpoint that keeps failing."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import structlog
from sqlalchemy import update
from sqlalchemy.orm import Session

from seamline import __version__
from seamline.db.engine import Database
from seamline.events import signing
from seamline.events.models import Delivery, WebhookAttempt, WebhookEndpoint
from seamline.events.registry import Leased, Outcome
from seamline.kit import clock
from seamline.kit.crypto import SecretBox

log = structlog.get_logger("seamline.webhooks")

PREFIX = "webhook:"


def consumer_name(endpoint_id: str) -> str:
    return f"{PREFIX}{endpoint_id}"


def signing_secrets(endpoint: WebhookEndpoint, box: SecretBox, now: datetime) -> list[str]:
    """The current secret, plus the previous one while its grace period after rotation lasts."""
    secrets = [box.open(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(box.open(endpoint.previous_secret_encrypted))
    return secrets


def body_of(item: Leased) -> bytes:
    return json.dumps(item.event.envelope(), separators=(",", ":"), sort_keys=True).encode()


class WebhookSender:
    """Delivers leased webhook items over HTTP (a few in parallel), outside any transaction."""

    def __init__(
        self,
        box: SecretBox,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        parallel: int = 8,
    ) -> None:
        self.box = box
        self.client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self.parallel = parallel

    def close(self) -> None:
        self.client.close()

    def send(self, db: Database, items: list[Leased]) -> None:
        ids = {item.consumer[len(PREFIX) :] for item in items}
        now = clock.now()
        with db.transaction(readonly=True) as session:
            endpoints = {
                e.id: (e.url, e.status, signing_secrets(e, self.box, now))
                for e in (session.get(WebhookEndpoint, i) for i in ids)
                if e is not None
            }
        jobs = []
        for item in items:
            target = endpoints.get(item.consumer[len(PREFIX) :])
            if target is None:
                item.outcome = Outcome(False, "endpoint was deleted", final=True)
            elif target[1] != "enabled":
                item.outcome = Outcome(False, "endpoint is disabled", final=True)
            else:
                jobs.append((item, target[0], target[2]))
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(jobs))) as pool:
            for item, outcome in zip(
                (j[0] for j in jobs), pool.map(lambda j: self._post(*j), jobs), strict=True
            ):
                item.outcome = outcome

    def _post(self, item: Leased, url: str, secrets: list[str]) -> Outcome:
        body = body_of(item)
        timestamp = int(clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Seamline-Webhooks/{__version__}",
            "Seamline-Event-Id": item.event.id,
            "Seamline-Event-Type": item.event.type,
            "Seamline-Signature": signing.header(body, secrets, timestamp),
        }
        started = time.perf_counter()
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            elapsed = int((time.perf_counter() - started) * 1000)
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:500], duration_ms=elapsed)
        elapsed = int((time.perf_counter() - started) * 1000)
        ok = 200 <= response.status_code < 300
        return Outcome(
            ok,
            None if ok else f"HTTP {response.status_code}",
            status_code=response.status_code,
            duration_ms=elapsed,
            excerpt=response.text[:1000] if response.content else None,
        )

    def record(self, session: Session, item: Leased, *, next_retry_at: datetime | None) -> None:
        """Log the attempt; when the schedule is exhausted, disable the endpoint."""
        endpoint_id = item.consumer[len(PREFIX) :]
        outcome = item.outcome
        if session.get(WebhookEndpoint, endpoint_id) is None:
            return
        session.add(
            WebhookAttempt(
                endpoint_id=endpoint_id,
                event_id=item.event.id,
                event_type=item.event.type,
                attempt=item.attempts,
                ok=outcome.ok,
                status_code=outcome.status_code,
                error=outcome.error,
                response_excerpt=outcome.excerpt,
                duration_ms=outcome.duration_ms,
                attempted_at=clock.now(),
                next_retry_at=next_retry_at,
            )
        )
        if not outcome.ok and next_retry_at is None and not outcome.final:
            disable_endpoint(session, endpoint_id, reason="deliveries failed for about 3 days")


def disable_endpoint(session: Session, endpoint_id: str, *, reason: str) -> None:
    """Stop sending to an endpoint; its pending deliveries become dead letters (replayable)."""
    now = clock.now()
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status == "enabled")
        .values(status="disabled", disabled_reason=reason, disabled_at=now, updated_at=now)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.consumer == consumer_name(endpoint_id), Delivery.status == "pending")
        .values(status="dead", last_error=f"endpoint disabled: {reason}", locked_until=None)
    )
    log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id, reason=reason)
