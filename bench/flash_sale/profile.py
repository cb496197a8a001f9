"""Where a reservation's cost goes: SQL statements per ``POST /reservations`` (counted
in-process) and a summary of a py-spy profile of the server."""

from __future__ import annotations

import os
import re
import statistics
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.flash_sale.constants import API, TTL_SECONDS

# -- statements per reserve (in-process, counted by SQLAlchemy) -----------------------------


def statement_profile(
    url: str, data_dir: Path, token: str, location_id: str, buckets: int, samples: int = 20
) -> dict[str, Any]:
    """SQL statements and transactions per ``POST /reservations`` (median over ``samples``),
    with and without an Idempotency-Key, counted in an in-process app on the same database."""
    import logging

    import structlog
    from sqlalchemy import event
    from starlette.testclient import TestClient

    from seamline.api.app import create_app
    from seamline.runtime import build_runtime
    from seamline.settings import Settings

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    settings = Settings(database_url=url, data_dir=data_dir, log_level="WARNING")
    rt = build_runtime(settings)
    app = create_app(settings, runtime=rt)
    # Background threads of the app (``seamline-…``: the stock stream hub) are counted apart.
    statements: list[str] = []
    background: list[str] = []
    commits = [0]
    checkouts = [0]  # pool checkouts (a ping only after 10 s unused: db/engine.py)

    def in_request() -> bool:
        return not threading.current_thread().name.startswith("seamline-")

    def on_execute(*args: Any) -> None:
        sql = re.sub(r"\s+", " ", str(args[2]))[:110]
        (statements if in_request() else background).append(sql)

    def on_commit(*_args: Any) -> None:
        if in_request():
            commits[0] += 1

    def on_checkout(*_args: Any) -> None:
        if in_request():
            checkouts[0] += 1

    event.listen(rt.db.engine, "before_cursor_execute", on_execute)
    event.listen(rt.db.engine, "commit", on_commit)
    event.listen(rt.db.engine, "checkout", on_checkout)
    out: dict[str, Any] = {}
    try:
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            cases = [("one row", 1, False), ("one row + Idempotency-Key", 1, True)]
            if buckets > 1:
                cases.append((f"{buckets} buckets", buckets, False))
            for name, split, idem in cases:
                handle = f"stmt-{split}-{int(idem)}-{os.getpid()}"
                r = client.post(
                    f"{API}/products",
                    json={
                        "title": handle,
                        "handle": handle,
                        "variants": [{"sku": handle.upper(), "options": {"size": "M"}}],
                    },
                )
                variant_id = r.json()["variants"][0]["id"]
                if split > 1:
                    client.put(f"{API}/stock/variants/{variant_id}/split", json={"buckets": split})
                client.post(
                    f"{API}/stock/receipts",
                    json={"location_id": location_id, "variant_id": variant_id, "quantity": 1000},
                )
                counts, txs, pings, example = [], [], [], []
                background.clear()
                for i in range(samples):
                    statements.clear()
                    commits[0] = checkouts[0] = 0
                    ref = f"{handle}-{i}"
                    r = client.post(
                        f"{API}/reservations",
                        json={
                            "lines": [
                                {
                                    "location_id": location_id,
                                    "variant_id": variant_id,
                                    "quantity": 1,
                                    "reference": ref,
                                }
                            ],
                            "ttl_seconds": TTL_SECONDS,
                        },
                        headers={"Idempotency-Key": ref} if idem else None,
                    )
                    assert r.status_code == 201, r.text
                    counts.append(len(statements))
                    txs.append(commits[0])
                    pings.append(checkouts[0])
                    example = list(statements)
                out[name] = {
                    "statements": statistics.median(counts),
                    "commits": statistics.median(txs),
                    "pool_checkouts": statistics.median(pings),
                    "statements_min_max": [min(counts), max(counts)],
                    "background_statements_per_request": round(len(background) / samples, 2),
                    "example": example,
                }
    finally:
        rt.close()
    return out


# -- profile summary (py-spy raw output) ----------------------------------------------------

# Each sampled stack goes to the first rule with a frame it names: the shares add up to 100.
_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("embedded worker thread (outbox delivery, timers)", ("seamline/events/worker.py",)),
    ("stock stream hub thread (SSE)", ("seamline/inventory/stream.py",)),
    ("auth: API key lookup (deps._resolve, own transaction)", ("_resolve (seamline/api/deps.py",)),
    (
        "idempotency claim/store",
        tuple(f"{f} (seamline/api/idempotency.py" for f in ("_begin", "_finish", "_release")),
    ),
    ("reserve: stock row update (buckets.hold)", ("hold (seamline/inventory/buckets.py",)),
    ("reserve: expiry timer (timers.schedule)", ("schedule (seamline/events/timers.py",)),
    ("reserve: outbox event (outbox.emit)", ("emit (seamline/events/outbox.py",)),
    ("reserve: commit", ("commit (sqlalchemy/orm/session.py",)),
    ("reserve: rest (checks, reservation insert, response)", ("(seamline/inventory/",)),
    ("FastAPI: parsing, validation, serialisation", ("fastapi/", "pydantic")),
    ("access log line (structlog)", ("structlog/",)),
    ("uvicorn / HTTP protocol", ("uvicorn/", "httptools")),
    ("thread hand-off (anyio, threading)", ("anyio/", "threading.py", "concurrent/")),
]
_OTHER = "other (mostly stacks py-spy could not read whole)"
_LIBRARIES = [
    ("sqlalchemy", "sqlalchemy/"),
    ("psycopg (driver)", "psycopg/"),
    ("pydantic", "pydantic"),
    ("fastapi", "fastapi/"),
    ("starlette", "starlette/"),
    ("anyio (thread hand-off)", "anyio/"),
    ("uvicorn", "uvicorn/"),
    ("structlog", "structlog/"),
    ("seamline", "seamline/"),
    ("asyncio", "asyncio/"),
    ("threading / concurrent", "threading.py"),
]


def summarize_profile(path: Path) -> dict[str, Any]:
    """Where the sampled stacks sit (a partition by the rules above) and their leaf library."""
    stacks: list[tuple[str, int]] = []
    for line in path.read_text(errors="replace").splitlines():
        text, _, number = line.rpartition(" ")
        if text and number.isdigit():
            stacks.append((text, int(number)))
    total = sum(c for _, c in stacks) or 1
    parts: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for stack, count in stacks:
        rule = next((n for n, marks in _RULES if any(m in stack for m in marks)), _OTHER)
        parts[rule] += count
        frame = stack.rsplit(";", 1)[-1]
        group = next((n for n, m in _LIBRARIES if m in frame), "other (C, stdlib)")
        leaf[group] += count
    return {
        "samples": total,
        "percent": {k: round(100 * v / total, 1) for k, v in parts.most_common()},
        "leaf_percent": {k: round(100 * v / total, 1) for k, v in leaf.most_common()},
    }
