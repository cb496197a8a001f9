"""Where a checkout's statements and time go, in-process on the bench database (no src/
change: SQLAlchemy events on the runtime's engine).

1. Statements per ``POST /carts/{id}/checkout`` through the real app (``create_app`` with a
   Runtime, starlette ``TestClient``, Idempotency-Key sent): every ``before_cursor_execute`` on
   ``runtime.db.engine``, split into API-key authentication (``api_keys``), the idempotency
   middleware (``idempotency_keys``) and the checkout itself, plus pool checkouts and commits;
   and grouped by verb and table.
2. A cProfile of ``orders.checkout.checkout`` called directly (the same service the route
   calls; cProfile sees only the calling thread, and TestClient runs the app in another), with
   the time spent inside ``cursor.execute`` (PostgreSQL round trips plus the driver) apart."""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
import re
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.checkout.constants import API, BODY

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?([a-z_]+)", re.IGNORECASE)


def _kind(sql: str) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    table = _TABLE.search(sql)
    return f"{verb} {table.group(1) if table else ''}".strip()


def _part(sql: str) -> str:
    if "idempotency_keys" in sql:
        return "idempotency"
    if "api_keys" in sql:
        return "auth"
    return "checkout"


def measure(
    url: str,
    data_dir: Path,
    token: str,
    counted_carts: list[str],
    profiled_carts: list[str],
    top: int = 25,
) -> dict[str, Any]:
    import structlog
    from sqlalchemy import event
    from starlette.testclient import TestClient

    from seamline.api.app import create_app
    from seamline.auth.service import authenticate
    from seamline.orders import checkout as service
    from seamline.orders.schemas import CheckoutIn
    from seamline.runtime import build_runtime
    from seamline.settings import Settings

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    settings = Settings(
        database_url=url, data_dir=data_dir, log_level="WARNING", test_payments=True
    )
    rt = build_runtime(settings)
    app = create_app(settings, runtime=rt)
    statements: list[str] = []
    background: list[str] = []
    commits = [0]
    pings = [0]
    sql_time = [0.0]
    starts: dict[int, float] = {}

    def in_request() -> bool:
        return not threading.current_thread().name.startswith("seamline-")

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        starts[threading.get_ident()] = time.perf_counter()
        (statements if in_request() else background).append(re.sub(r"\s+", " ", sql))

    def after(*_args: Any) -> None:
        began = starts.pop(threading.get_ident(), None)
        if began is not None and in_request():
            sql_time[0] += time.perf_counter() - began

    def on_commit(*_args: Any) -> None:
        if in_request():
            commits[0] += 1

    def on_checkout(*_args: Any) -> None:
        if in_request():
            pings[0] += 1

    engine = rt.db.engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "checkout", on_checkout)
    out: dict[str, Any] = {}
    try:
        per: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        example: list[str] = []
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            for cart_id in counted_carts:
                statements.clear()
                commits[0] = pings[0] = 0
                r = client.post(
                    f"{API}/carts/{cart_id}/checkout",
                    json=BODY,
                    headers={"Idempotency-Key": f"inproc-{cart_id}"},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"in-process checkout: {r.status_code} {r.text[:500]}")
                parts = Counter(_part(s) for s in statements)
                per.append(
                    {
                        "total": len(statements),
                        **{k: parts.get(k, 0) for k in ("auth", "idempotency", "checkout")},
                        "commits": commits[0],
                        "pings": pings[0],
                    }
                )
                kinds.update(_kind(s) for s in statements)
                example = list(statements)
        n = len(per)

        def med(key: str) -> float:
            return float(statistics.median(p[key] for p in per))

        out["statements"] = {
            "checkouts": n,
            "median_total": med("total"),
            "mean_total": round(sum(p["total"] for p in per) / n, 2),
            "min_max_total": [min(p["total"] for p in per), max(p["total"] for p in per)],
            "median_auth": med("auth"),
            "median_idempotency": med("idempotency"),
            "median_checkout": med("checkout"),
            "median_commits": med("commits"),
            "median_pool_checkouts": med("pings"),
            "by_kind_per_checkout": {
                k: round(v / n, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
            },
            "background_statements": len(background),
            "example": [s[:160] for s in example],
        }

        # 2. cProfile of the service itself, in this thread.
        with rt.db.transaction() as session:
            caller = authenticate(session, token)
        data = CheckoutIn.model_validate(BODY)
        profiler = cProfile.Profile()
        sql_time[0] = 0.0
        statements.clear()
        started = time.perf_counter()
        cpu0 = time.process_time()
        profiler.enable()
        for cart_id in profiled_carts:
            service.checkout(rt.db, cart_id, data, caller=caller, idempotency_key=f"prof-{cart_id}")
        profiler.disable()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats("cumulative").print_stats(top)
        cumulative = stream.getvalue()
        stream = io.StringIO()
        stats.stream = stream
        stats.sort_stats("tottime").print_stats(top)
        m = len(profiled_carts)
        out["profile"] = {
            "checkouts": m,
            "wall_ms_per_checkout": round(1000 * wall / m, 2),
            "cpu_ms_per_checkout": round(1000 * cpu / m, 2),
            "sql_ms_per_checkout": round(1000 * sql_time[0] / m, 2),
            "statements_per_checkout": round(len(statements) / m, 2),
            "by_module_ms_per_checkout": _by_module(stats, m),
            "top_cumulative": _trim(cumulative),
            "top_tottime": _trim(stream.getvalue()),
        }
    finally:
        rt.db.dispose()
    return out


def _trim(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i:])
    return text


def _by_module(stats: pstats.Stats, checkouts: int) -> dict[str, float]:
    """Own time (tottime) summed by top-level package: where the CPU goes."""
    groups: Counter[str] = Counter()
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        tottime = row[2]
        path = filename.replace("\\", "/")
        if "site-packages/" in path:
            key = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif "/seamline/" in path:
            key = "seamline." + path.split("/seamline/", 1)[1].split("/", 1)[0]
        elif filename.startswith("<") or filename == "~":
            key = "builtins / C"
        else:
            key = "stdlib"
        groups[key] += tottime
    return {
        k: round(1000 * v / checkouts, 2)
        for k, v in sorted(groups.items(), key=lambda kv: -kv[1])[:15]
    }
