"""The stand-in receiver (the brand's system) and helpers shared by the webhook tests."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import Delivery
from seamline.events.retry import WEBHOOK_SCHEDULE
from seamline.events.worker import Worker
from seamline.kit.clock import FrozenClock

API = "/api/v1"
SIGNATURE = re.compile(r"^t=(\d+)(,v1=[0-9a-f]{64})+$")


# -- the receiver (the third party) ------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event_id(self) -> str:
        return self.headers["seamline-event-id"]


Answer = Callable[[Received], "tuple[int, bytes] | int"]


class Receiver:
    """A real HTTP server that records every POST and answers what the test scripts."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answer: Answer = lambda _r: 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                with receiver._lock:
                    receiver.requests.append(got)
                result = receiver.answer(got)
                status, payload = (result, b"") if isinstance(result, int) else result
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the sender gave up (timeout) and closed the connection
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- helpers -----------------------------------------------------------------------------------
def create_endpoint(
    client: TestClient, auth: dict[str, str], url: str, event_types: list[str]
) -> dict[str, Any]:
    response = client.post(
        f"{API}/webhook-endpoints", json={"url": url, "event_types": event_types}, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def create_channel(client: TestClient, auth: dict[str, str], handle: str) -> dict[str, Any]:
    response = client.post(
        f"{API}/channels", json={"kind": "web", "name": handle, "handle": handle}, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def attempts_of(client: TestClient, auth: dict[str, str], endpoint_id: str) -> list[Any]:
    response = client.get(
        f"{API}/webhook-endpoints/{endpoint_id}/attempts", params={"limit": 200}, headers=auth
    )
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


def deliveries_of(db: Database, endpoint_id: str) -> list[tuple[str, int]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(Delivery.status, Delivery.attempts)
            .where(Delivery.consumer == f"webhook:{endpoint_id}")
            .order_by(Delivery.event_seq)
        )
        return [(status, attempts) for status, attempts in rows]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def exhaust_schedule(worker: Worker, clock: FrozenClock) -> None:
    """Run the worker through every retry of the webhook schedule."""
    worker.drain()
    for delay in WEBHOOK_SCHEDULE:
        clock.advance(seconds=delay.total_seconds())
        worker.drain()
