"""Outbound webhooks: sign, POST, log every attempt, disable an endpoint that keeps failing."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime

import httpx
import structlog
from cryptography.fernet import InvalidToken
from sqlalchemy import update
from sqlalchemy.orm import Session

from seamline import __version__
from seamline.db.engine import Database
from seamline.events import signing
from seamline.events.models import Delivery, WebhookAttempt, WebhookEndpoint
from seamline.events.registry import WEBHOOK_PREFIX, Leased, Outcome
from seamline.kit import clock
from seamline.kit.crypto import SecretBox

log = structlog.get_logger("seamline.webhooks")

PREFIX = WEBHOOK_PREFIX
# What is kept of a receiver's response body for the attempt log, and the most we ever read.
EXCERPT_CHARS = 1000
READ_LIMIT = 4096


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


def printable(text: str, limit: int) -> str:
    """Text safe to store and show: PostgreSQL refuses NUL, and logs should not carry escapes."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text[:limit])


def private_destination(url: str) -> str | None:
    """Why ``url`` must not be called from the server (an internal address), or ``None``.

    Every address the host resolves to must be public: a webhook must not become a way to
    reach the database, the cloud metadata service or anything else behind the firewall.
    """
    host = httpx.URL(url).host
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"cannot resolve {host}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            return f"{host} resolves to a non-public address ({address})"
    return None


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
        allow_private: bool = True,
    ) -> None:
        self.box = box
        self.client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        # httpx's timeout bounds each read; this bounds a whole attempt, so a receiver that
        # drips bytes cannot hold the worker (or outlive the lease).
        self.deadline = timeout * 2
        self.parallel = parallel
        self.allow_private = allow_private

    def close(self) -> None:
        self.client.close()

    def send(self, db: Database, items: list[Leased]) -> None:
        ids = {item.consumer[len(PREFIX) :] for item in items}
        now = clock.now()
        targets: dict[str, tuple[str, str, list[str]] | str] = {}
        with db.transaction(readonly=True) as session:
            for endpoint_id in ids:
                endpoint = session.get(WebhookEndpoint, endpoint_id)
                if endpoint is None:
                    continue
                try:
                    secrets = signing_secrets(endpoint, self.box, now)
                except InvalidToken:
                    # One endpoint whose secret cannot be opened must not fail the whole batch.
                    targets[endpoint_id] = "cannot decrypt the signing secret (secret key changed?)"
                    continue
                targets[endpoint_id] = (endpoint.url, endpoint.status, secrets)
        jobs = []
        for item in items:
            target = targets.get(item.consumer[len(PREFIX) :])
            if target is None:
                item.outcome = Outcome(False, "endpoint was deleted", final=True)
            elif isinstance(target, str):
                item.outcome = Outcome(False, target)
            elif target[1] != "enabled":
                item.outcome = Outcome(False, "endpoint is disabled", final=True)
            else:
                jobs.append((item, target[0], target[2]))
        if not jobs:
            return
        # The worker leases at most ``parallel`` webhook items per batch, so all run at once
        # and the batch ends within one deadline; stragglers are abandoned, not waited for.
        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(jobs)))
        futures = {pool.submit(self._post, *job): job[0] for job in jobs}
        done, _ = wait(futures, timeout=self.deadline + 1)
        for future, item in futures.items():
            if future in done:
                item.outcome = future.result()
            else:
                item.outcome = Outcome(False, f"no answer within {self.deadline:.0f} s")
        pool.shutdown(wait=False, cancel_futures=True)

    def _post(self, item: Leased, url: str, secrets: list[str]) -> Outcome:
        if not self.allow_private:
            refused = private_destination(url)
            if refused:
                return Outcome(False, refused, final=True)
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
        status_code: int | None = None
        failure: Exception | None = None
        head = bytearray()
        try:
            # Streamed so a receiver answering with a huge body cannot exhaust memory: only the
            # first READ_LIMIT bytes are read, the rest is dropped with the connection.
            with self.client.stream("POST", url, content=body, headers=headers) as response:
                status_code = response.status_code
                for chunk in response.iter_bytes():
                    head += chunk
                    if len(head) >= READ_LIMIT or time.perf_counter() - started > self.deadline:
                        break
        except Exception as exc:  # any failure is a failed attempt, never a failed batch
            # Once the status line has arrived, a broken body after it changes nothing.
            failure = exc
        elapsed = int((time.perf_counter() - started) * 1000)
        if status_code is None:
            error = f"{type(failure).__name__}: {failure}"
            return Outcome(False, printable(error, 500), duration_ms=elapsed)
        ok = 200 <= status_code < 300
        text = bytes(head[:READ_LIMIT]).decode("utf-8", errors="replace")
        return Outcome(
            ok,
            None if ok else f"HTTP {status_code}",
            status_code=status_code,
            duration_ms=elapsed,
            excerpt=printable(text, EXCERPT_CHARS) if head else None,
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
