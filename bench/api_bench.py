"""HTTP cost of the API shell against a raw baseline in the same run.

uvicorn serves the real app on 127.0.0.1; 8 client threads send requests. The baseline is
``GET /healthz`` (no auth, no database); measured are an authenticated read and an idempotent
create (auth + idempotency key + insert + outbox).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console

from bench.common import progress, show
from seamline.api.app import create_app
from seamline.auth import service as keys
from seamline.db import migrate
from seamline.runtime import build_runtime
from seamline.settings import Settings

CLIENTS = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(
    base: str,
    auth: dict[str, str],
    path: str,
    create: bool,
    requests: int,
    tick: Callable[[], None],
) -> float:
    """Requests per second over CLIENTS threads sharing one counter."""
    counter = iter(range(requests))
    lock = threading.Lock()

    def client(_: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if create:
                    r = http.post(
                        path,
                        json={"kind": "web", "name": f"c{i}", "handle": f"c-{i}"},
                        headers={**auth, "Idempotency-Key": f"k{i}"},
                    )
                else:
                    r = http.get(path, headers=auth)
                assert r.status_code < 300, r.text
                tick()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return requests / (time.perf_counter() - started)


def run(*, requests: int, console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), secret_key="bench", log_level="WARNING", environment="test"
        )
        rt = build_runtime(settings)
        migrate.upgrade(rt.db)
        with rt.db.transaction() as s:
            _, token = keys.create_key(s, kind="secret", name="bench")
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        app = create_app(settings, runtime=rt)
        port = _port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        rates: dict[str, float] = {}
        try:
            with progress(console) as bar:
                for name, path, create in (
                    ("GET /healthz", "/healthz", False),
                    ("GET /api/v1/channels", "/api/v1/channels", False),
                    ("POST /api/v1/channels", "/api/v1/channels", True),
                ):
                    task = bar.add_task(name, total=requests)
                    rates[name] = _measure(
                        base, auth, path, create, requests, lambda t=task: bar.advance(t)
                    )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            rt.close()
    show(
        console,
        f"API on SQLite ({requests} requests, {CLIENTS} clients)",
        [
            ("GET /healthz", rates["GET /healthz"], "baseline"),
            (
                "GET /api/v1/channels (auth + read)",
                rates["GET /api/v1/channels"],
                f"{rates['GET /healthz'] / rates['GET /api/v1/channels']:.2f}x the baseline's time",
            ),
            (
                "POST /api/v1/channels (auth + idempotency + write + outbox)",
                rates["POST /api/v1/channels"],
                f"{rates['GET /healthz'] / rates['POST /api/v1/channels']:.2f}x the baseline",
            ),
        ],
    )
    return {"requests": requests, "clients": CLIENTS, "requests_per_s": rates}
