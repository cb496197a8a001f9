"""Flash sale: N buyers hold units of one hot SKU over HTTP until it sells out.

A real ``seamline serve`` (a subprocess started as a user starts it) serves a fresh PostgreSQL
database (``seamline_flash``, dropped afterwards). Buyers are asyncio tasks in a separate
process (its GIL is not the server's), each with its own ``httpx.AsyncClient`` and keep-alive
connection, looping ``POST /api/v1/reservations`` for one unit until 409 ``insufficient_stock``.

Phases, each on its own variant:

- ``one row``: the stock in one row at one location (every hold takes the same row lock);
- ``16 buckets``: the same after ``PUT /stock/variants/{id}/split`` (hot-SKU buckets);
- ``3 locations``: the stock spread over three locations, buyers naming them round-robin;
- ``channel picks``: the same stock, lines without ``location_id`` and a top-level
  ``channel_id``: the server chooses the location.

Measured in the same run on the same database, the raw baseline: the conditional hold itself
through psycopg, 64 threads with one autocommit connection each: (a) on one row, (b) on 16 rows,
one picked at random with ``FOR UPDATE SKIP LOCKED``, (c) on 16 rows, one picked at random whose
lock the hold waits for. The HTTP figures are compared with the best of the three.

Besides holds per second and latency: the server's peak memory (RSS and PSS over its process
tree), the CPU seconds of the server, PostgreSQL's backends, the client and anything else on the
machine, PostgreSQL commits per hold, SQL statements per request (in-process, SQLAlchemy events),
and with ``--profile`` a py-spy profile of the server. Server logs stay in the printed directory.

After every phase the database is read back: held reservations against the units received
(oversold), ``reserved`` against the held reservations, the CHECK invariants per row; at the end
``seamline inventory verify`` runs against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.common import progress

DB_NAME = "seamline_flash"
TTL_SECONDS = 900
API = "/api/v1"
# A buyer gives up after this many unexpected answers in a phase (the server is broken).
MAX_ERRORS = 200


# -- helpers --------------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index] * 1000


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _status_kb(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _tree_memory_kb(pid: int) -> dict[int, tuple[int, int]]:
    """(RSS, PSS) per process of a tree. RSS counts shared pages in every process that maps
    them; PSS splits them between those processes, so its sum is what the tree costs."""
    out = {}
    for p in _tree(pid):
        pss = 0
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        out[p] = (_status_kb(p, "VmRSS"), pss)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree so far (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


# -- the server -----------------------------------------------------------------------------


@dataclass
class Server:
    """``seamline serve`` as a subprocess, its logs in files."""

    workers: int
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.logs / f"serve-w{self.workers}.stderr"

    def start(self) -> None:
        command = [_seamline(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with (
            open(self.logs / f"serve-w{self.workers}.stdout", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"seamline serve exited:\n{self.stderr_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    if self.workers > 1:
                        time.sleep(2)  # let every process finish starting
                    return
            time.sleep(0.2)
        raise RuntimeError(f"seamline serve did not answer:\n{self.stderr_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stderr_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_summary(self) -> dict[str, Any]:
        """Statuses of the access log lines and every error line in the server's stderr."""
        statuses: Counter[str] = Counter()
        errors: list[str] = []
        with contextlib.suppress(OSError):
            for entry in _log_entries(self.stderr_path.read_text(errors="replace")):
                if isinstance(entry, str):
                    errors.append(entry[:300])
                elif entry.get("event") == "request":
                    statuses[str(entry.get("status"))] += 1
                elif entry.get("level") in ("error", "critical", "exception", "warning"):
                    errors.append(json.dumps(entry)[:600])
        return {"statuses": dict(statuses), "error_lines": len(errors), "errors": errors[:20]}


def _log_entries(text: str) -> Iterator[dict[str, Any] | str]:
    """JSON log objects, also when several processes' lines run together on one line (each
    process writes a line and its newline separately); any other non-empty text as is."""
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        rest = line.strip()
        while rest:
            try:
                entry, end = decoder.raw_decode(rest)
            except ValueError:
                if not rest.startswith(("INFO", "Seamline")):
                    yield rest
                break
            if isinstance(entry, dict):
                yield entry
            rest = rest[end:].lstrip()


def _seamline() -> str:
    beside = Path(sys.executable).parent / "seamline"
    return str(beside) if beside.exists() else (shutil.which("seamline") or "seamline")


def _pyspy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


# -- HTTP buyers (run in their own process) --------------------------------------------------


@dataclass
class Phase:
    key: str
    label: str
    variant_id: str
    units: int
    locations: list[str | None]
    channel_id: str | None = None
    buckets: int = 1


def _buyers_process(
    base: str,
    token: str,
    phase: Phase,
    buyers: int,
    idempotency: bool,
    counter: Any,
    out: Any,
) -> None:
    out.put(asyncio.run(_buyers(base, token, phase, buyers, idempotency, counter)))


async def _buyers(
    base: str, token: str, phase: Phase, buyers: int, idempotency: bool, counter: Any
) -> dict[str, Any]:
    open_locations = list(phase.locations)
    turn = itertools.count()
    held: list[float] = []
    refused: list[float] = []
    other: Counter[str] = Counter()
    samples: list[str] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {token}"}
    tag = f"{phase.key}-{os.getpid()}"

    async def buyer(http: httpx.AsyncClient, n: int) -> None:
        for i in itertools.count():
            if not open_locations or sum(other.values()) >= MAX_ERRORS:
                return
            location = open_locations[next(turn) % len(open_locations)]
            reference = f"{tag}-{n}-{i}"
            line: dict[str, Any] = {
                "variant_id": phase.variant_id,
                "quantity": 1,
                "reference": reference,
            }
            if location is not None:
                line["location_id"] = location
            body: dict[str, Any] = {"lines": [line], "ttl_seconds": TTL_SECONDS}
            if phase.channel_id is not None:
                body["channel_id"] = phase.channel_id
            extra = {"Idempotency-Key": reference} if idempotency else None
            started = time.perf_counter()
            try:
                r = await http.post(f"{API}/reservations", json=body, headers=extra)
            except httpx.HTTPError as exc:
                other[f"transport {type(exc).__name__}"] += 1
                samples.append(repr(exc)[:300])
                continue
            elapsed = time.perf_counter() - started
            if r.status_code == 201:
                held.append(elapsed)
                counter.value += 1
                continue
            code = ""
            with contextlib.suppress(ValueError):
                code = str(r.json().get("code", ""))
            if r.status_code == 409 and code == "insufficient_stock":
                refused.append(elapsed)
                if location in open_locations:
                    open_locations.remove(location)
                continue
            other[f"{r.status_code} {code}".strip()] += 1
            if len(samples) < 10:
                samples.append(f"{r.status_code} {r.text[:300]}")

    # One client (one keep-alive connection) per buyer: a shared pool of 64 connections costs
    # the client several times more CPU per request (it scans and locks the whole pool).
    clients = [
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60)
        for _ in range(buyers)
    ]
    cpu0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(buyer(clients[n], n) for n in range(buyers)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    return {
        "elapsed_s": elapsed,
        "held": held,
        "refused": refused,
        "other": dict(other),
        "samples": samples,
        "client_cpu_s": time.process_time() - cpu0,
    }


# -- raw baseline (its own process too) -----------------------------------------------------

RAW_ONE = (
    "UPDATE stock_levels SET reserved = reserved + 1 WHERE location_id = %(l)s "
    "AND variant_id = %(v)s AND bucket = 0 AND on_hand - reserved >= 1"
)
RAW_SPLIT = (
    "UPDATE stock_levels SET reserved = reserved + 1 WHERE location_id = %(l)s "
    "AND variant_id = %(v)s AND on_hand - reserved >= 1 AND bucket = ("
    "SELECT bucket FROM stock_levels WHERE location_id = %(l)s AND variant_id = %(v)s "
    "AND on_hand - reserved >= 1 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)"
)
RAW_RANDOM = (
    "UPDATE stock_levels SET reserved = reserved + 1 WHERE location_id = %(l)s "
    "AND variant_id = %(v)s AND on_hand - reserved >= 1 AND bucket = ("
    "SELECT bucket FROM stock_levels WHERE location_id = %(l)s AND variant_id = %(v)s "
    "AND on_hand - reserved >= 1 ORDER BY random() LIMIT 1)"
)
RAW_STATEMENTS = {"one": RAW_ONE, "skip": RAW_SPLIT, "random": RAW_RANDOM}
RAW_LEFT = (
    "SELECT coalesce(sum(on_hand - reserved), 0) FROM stock_levels "
    "WHERE location_id = %(l)s AND variant_id = %(v)s"
)


def _raw_process(
    dsn: str,
    layout: str,
    location_id: str,
    variant_id: str,
    threads: int,
    counter: Any,
    out: Any,
) -> None:
    params = {"l": location_id, "v": variant_id}
    statement = RAW_STATEMENTS[layout]
    split = layout != "one"
    gate = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    misses = [0] * threads
    failures: list[str] = []

    def buyer(n: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                gate.wait()
                mine = latencies[n]
                while True:
                    started = time.perf_counter()
                    count = conn.execute(statement, params).rowcount
                    if count == 1:
                        mine.append(time.perf_counter() - started)
                        with counter.get_lock():
                            counter.value += 1
                        continue
                    # No row: sold out, or (split) every bucket with units was locked.
                    left = conn.execute(RAW_LEFT, params).fetchone()
                    if not split or left is None or int(left[0]) <= 0:
                        return
                    misses[n] += 1
        except Exception as exc:
            failures.append(repr(exc))
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.abort()

    pool = [threading.Thread(target=buyer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    gate.wait()
    cpu0 = time.process_time()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    out.put(
        {
            "elapsed_s": elapsed,
            "held": [x for mine in latencies for x in mine],
            "misses": sum(misses),
            "failures": failures[:5],
            "client_cpu_s": time.process_time() - cpu0,
        }
    )


# -- driving a phase: progress bar, memory sampling -----------------------------------------


def _drive(
    console: Console,
    label: str,
    total: int,
    target: Callable[..., None],
    args: tuple[Any, ...],
    server_pid: int | None,
    db_backends: Callable[[], list[int]],
) -> dict[str, Any]:
    """Run ``target(*args, counter, queue)`` in a spawned process with a progress bar; sample
    the server's memory and the CPU of everything taking part meanwhile.

    ``cpu_s`` splits the machine's busy CPU seconds over the server, the client, PostgreSQL's
    backends serving this database and the rest of the machine ("other": anything else that
    ran meanwhile — a run is only clean when it is near zero)."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, counter, out), daemon=True)
    peak_rss = peak_pss = 0
    per_process: dict[int, int] = {}
    cpu0 = _cpu_seconds(server_pid) if server_pid else 0.0
    busy0, all0 = _machine_cpu()
    own0 = time.process_time()
    pg_start = {pid: _cpu_seconds(pid) for pid in db_backends()}
    pg_last = dict(pg_start)
    started = time.perf_counter()
    result: dict[str, Any] | None = None
    with progress(console) as bar:
        task = bar.add_task(label, total=total)
        proc.start()
        while result is None:
            if server_pid:
                memory = _tree_memory_kb(server_pid)
                peak_rss = max(peak_rss, sum(r for r, _ in memory.values()))
                peak_pss = max(peak_pss, sum(p for _, p in memory.values()))
                for p, (r, _) in memory.items():
                    per_process[p] = max(per_process.get(p, 0), r)
            for pid in db_backends():
                pg_last[pid] = max(pg_last.get(pid, 0.0), _cpu_seconds(pid))
            bar.update(task, completed=counter.value)
            try:
                result = out.get(timeout=0.2)
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"{label}: the client process died") from None
        bar.update(task, completed=counter.value)
    proc.join(timeout=30)
    for pid in db_backends():
        pg_last[pid] = max(pg_last.get(pid, 0.0), _cpu_seconds(pid))
    wall = time.perf_counter() - started
    busy1, all1 = _machine_cpu()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {
        "machine": (busy1 - busy0) / tick,
        "server": _cpu_seconds(server_pid) - cpu0 if server_pid else 0.0,
        "client": float(result.get("client_cpu_s", 0.0)),
        "postgres": sum(v - pg_start.get(pid, 0.0) for pid, v in pg_last.items()),
        "bench": time.process_time() - own0,
    }
    cpu["other"] = cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine")
    result["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    result["server_peak_rss_mb"] = peak_rss / 1024
    result["server_peak_pss_mb"] = peak_pss / 1024
    result["server_peak_rss_mb_per_process"] = [round(v / 1024) for v in per_process.values()]
    if server_pid:
        result["server_cpu_s"] = _cpu_seconds(server_pid) - cpu0
    result["machine_busy"] = (busy1 - busy0) / max(1.0, all1 - all0)
    result["wall_s"] = wall
    return result


# -- the database: set-up for the raw baseline, audits --------------------------------------


class Store:
    """Direct psycopg access to the flash database: raw rows, audits, counters."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def one(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def raw_rows(self, location_id: str, variant_id: str, units: int, rows: int) -> None:
        """Stock rows written directly (no ledger): only for the raw baseline, deleted after."""
        share, extra = divmod(units, rows)
        with self.conn.transaction():
            for bucket in range(rows):
                self.conn.execute(
                    "INSERT INTO stock_levels (location_id, variant_id, bucket, on_hand, "
                    "reserved, updated_at) VALUES (%s, %s, %s, %s, 0, now())",
                    (location_id, variant_id, bucket, share + (1 if bucket < extra else 0)),
                )

    def drop_raw_rows(self, variant_id: str) -> tuple[int, int]:
        on_hand, reserved = self.one(
            "SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0) FROM stock_levels "
            "WHERE variant_id = %s",
            (variant_id,),
        )
        self.conn.execute("DELETE FROM stock_levels WHERE variant_id = %s", (variant_id,))
        return int(on_hand), int(reserved)

    def backend_pids(self) -> list[int]:
        """PostgreSQL backends connected to this database (not this connection's)."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def counters(self) -> dict[str, int]:
        row = self.one(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        names = ("commits", "rollbacks", "inserted", "updated", "deleted")
        return {n: int(v) for n, v in zip(names, row, strict=True)}

    def pending_deliveries(self) -> int:
        return int(self.one("SELECT count(*) FROM event_deliveries WHERE status = 'pending'")[0])

    def wait_drained(self, timeout: float = 300) -> tuple[int, float]:
        """The outbox backlog now, and how long the server's worker takes to clear it."""
        backlog = self.pending_deliveries()
        started = time.perf_counter()
        while self.pending_deliveries() and time.perf_counter() - started < timeout:
            time.sleep(0.25)
        return backlog, time.perf_counter() - started

    def audit(self, variant_id: str, received: int, holds_seen: int) -> dict[str, Any]:
        """What the database says after a sell-out."""
        on_hand, reserved, broken, rows = self.one(
            "SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0), count(*) FILTER "
            "(WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand), count(*) "
            "FROM stock_levels WHERE variant_id = %s",
            (variant_id,),
        )
        holds, held_units = self.one(
            "SELECT count(*), coalesce(sum(quantity), 0) FROM reservations "
            "WHERE variant_id = %s AND status = 'held'",
            (variant_id,),
        )
        drift = self.conn.execute(
            "SELECT s.location_id, s.reserved, coalesce(h.units, 0) FROM "
            "(SELECT location_id, sum(reserved) AS reserved FROM stock_levels "
            " WHERE variant_id = %(v)s GROUP BY location_id) s LEFT JOIN "
            "(SELECT location_id, sum(quantity) AS units FROM reservations "
            " WHERE variant_id = %(v)s AND status = 'held' GROUP BY location_id) h "
            "ON h.location_id = s.location_id WHERE s.reserved <> coalesce(h.units, 0)",
            {"v": variant_id},
        ).fetchall()
        held_units = int(held_units)
        return {
            "received": received,
            "on_hand": int(on_hand),
            "reserved": int(reserved),
            "held_reservations": int(holds),
            "held_units": held_units,
            "oversold": max(0, held_units - received, int(reserved) - received),
            "unsold": received - held_units,
            "rows": int(rows),
            "rows_breaking_checks": int(broken),
            "reserved_vs_holds_drift": [list(r) for r in drift],
            "client_201s_match_holds": holds_seen == int(holds),
        }


# -- HTTP set-up through the API ------------------------------------------------------------


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = httpx.Client(
            base_url=base + API, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.features = self._features()

    def _features(self) -> dict[str, bool]:
        schema = httpx.get(self.base + "/openapi.json", timeout=60).json()
        paths = schema.get("paths", {})
        create = schema.get("components", {}).get("schemas", {}).get("ReservationCreate", {})
        return {
            "split": any(p.endswith("/split") for p in paths),
            "channel": "channel_id" in create.get("properties", {}),
        }

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        data: dict[str, Any] = r.json()
        return data

    def location(self, n: int) -> str:
        body = {
            "kind": "warehouse",
            "name": f"Flash warehouse {n}",
            "handle": f"flash-{n}",
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "ships": True,
        }
        return str(self.post("/locations", body)["id"])

    def channel(self, handle: str) -> str:
        return str(self.post("/channels", {"kind": "web", "name": handle, "handle": handle})["id"])

    def variant(self, handle: str) -> str:
        body = {
            "title": handle.replace("-", " ").title(),
            "handle": handle,
            "variants": [
                {
                    "sku": handle.upper(),
                    "options": {"size": "M"},
                    "prices": {"EUR": {"amount": 999}},
                }
            ],
        }
        return str(self.post("/products", body)["variants"][0]["id"])

    def split(self, variant_id: str, buckets: int) -> None:
        r = self.http.put(f"/stock/variants/{variant_id}/split", json={"buckets": buckets})
        if r.status_code >= 300:
            raise RuntimeError(f"PUT split: {r.status_code} {r.text}")

    def receive(self, location_id: str, variant_id: str, units: int) -> None:
        while units > 0:
            chunk = min(units, 1_000_000)
            self.post(
                "/stock/receipts",
                {"location_id": location_id, "variant_id": variant_id, "quantity": chunk},
            )
            units -= chunk

    def close(self) -> None:
        self.http.close()


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
    checkouts = [0]  # each checkout also sends a ping first (pool_pre_ping), not counted above

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
                    "pool_checkouts_with_ping": statistics.median(pings),
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


# -- the benchmark --------------------------------------------------------------------------


@contextlib.contextmanager
def _flash_database(postgres_url: str) -> Iterator[str]:
    admin_url = make_url(postgres_url).set(drivername="postgresql")
    admin = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    try:
        yield admin_url.set(database=DB_NAME).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_seamline(), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _summary(name: str, raw: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    held = raw["held"]
    elapsed = raw["elapsed_s"]
    row = {
        "name": name,
        "reservations": len(held),
        "reservations_per_s": len(held) / elapsed if elapsed else 0.0,
        "elapsed_s": round(elapsed, 2),
        "p50_ms": round(_pct(held, 0.50), 2),
        "p99_ms": round(_pct(held, 0.99), 2),
        "max_ms": round(max(held) * 1000, 1) if held else 0.0,
    }
    if raw.get("refused"):
        row["p99_409_ms"] = round(_pct(raw["refused"], 0.99), 2)
        row["refused_409"] = len(raw["refused"])
    if raw.get("cpu_s"):
        row["cpu_s"] = raw["cpu_s"]
    for key in (
        "server_peak_rss_mb",
        "server_peak_pss_mb",
        "server_cpu_s",
        "client_cpu_s",
        "machine_busy",
        "misses",
    ):
        if key in raw:
            row[key] = round(float(raw[key]), 3)
    if raw.get("server_peak_rss_mb_per_process"):
        row["server_peak_rss_mb_per_process"] = raw["server_peak_rss_mb_per_process"]
    if raw.get("other"):
        row["unexpected"] = raw["other"]
        row["unexpected_samples"] = raw.get("samples", [])
    if raw.get("failures"):
        row["failures"] = raw["failures"]
    row.update(extra)
    return row


def run(
    postgres_url: str | None,
    *,
    buyers: int,
    units: int,
    raw_units: int,
    buckets: int,
    workers: list[int],
    idempotency: bool,
    profile: bool,
    console: Console,
) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]flash-sale needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    busy0, all0 = _machine_cpu()
    time.sleep(1)
    busy1, all1 = _machine_cpu()
    idle_busy = (busy1 - busy0) / max(1.0, all1 - all0)
    if idle_busy > 0.1:
        console.print(
            f"[yellow]warning[/yellow]: the machine is {idle_busy:.0%} busy before the benchmark "
            "starts; see the 'other' CPU column."
        )
    logs = Path(tempfile.mkdtemp(prefix="seamline-flash-"))
    data_dir = logs / "data"
    data_dir.mkdir()
    results: dict[str, Any] = {
        "buyers": buyers,
        "units_http": units,
        "units_raw": raw_units,
        "buckets": buckets,
        "ttl_seconds": TTL_SECONDS,
        "machine_busy_before": round(idle_busy, 3),
        "idempotency_key": idempotency,
        "logs": str(logs),
        "phases": [],
        "raw": [],
    }
    with _flash_database(postgres_url) as url:
        env = {
            **os.environ,
            "SEAMLINE_DATABASE_URL": url,
            "SEAMLINE_DATA_DIR": str(data_dir),
            "SEAMLINE_ENVIRONMENT": "production",  # JSON logs at INFO, as deployed
        }
        for name in ("SEAMLINE_LOG_LEVEL", "SEAMLINE_LOG_FORMAT", "SEAMLINE_NATS_URL"):
            env.pop(name, None)
        for step in (("db", "upgrade"), ("keys", "create", "--name", "bench", "--kind", "secret")):
            done = _cli(env, *step)
            if done.returncode:
                raise RuntimeError(f"seamline {' '.join(step)}: {done.stderr}{done.stdout}")
        token = next(w for w in done.stdout.split() if w.startswith("sk_"))
        store = Store(url)
        locations: list[str] = []
        try:
            for n_workers in workers:
                server = Server(n_workers, env, logs)
                try:
                    server.start()
                    assert server.process is not None
                    api = Api(server.base, token)
                    results["features"] = api.features
                    if not locations:
                        locations = [api.location(n) for n in range(1, 4)]
                        results["raw"] = _raw_phases(
                            console, store, api, locations[0], raw_units, buyers, buckets
                        )
                        results["statements_per_reserve"] = statement_profile(
                            url, data_dir, token, locations[0], buckets
                        )
                    for phase in _phases(api, n_workers, locations, units, buckets):
                        results["phases"].append(
                            _http_phase(
                                console,
                                store,
                                server,
                                token,
                                phase,
                                buyers,
                                idempotency,
                                profile=profile and phase.key.endswith("one-row"),
                                logs=logs,
                            )
                        )
                    api.close()
                finally:
                    server.stop()
                results[f"server_log_w{n_workers}"] = server.log_summary()
            verify = _cli(env, "inventory", "verify")
            results["inventory_verify_exit"] = verify.returncode
            results["inventory_verify_output"] = (verify.stdout + verify.stderr)[-2000:]
        finally:
            store.close()
    _show(console, results)
    return results


def _phases(
    api: Api, n_workers: int, locations: list[str], units: int, buckets: int
) -> list[Phase]:
    tag = f"w{n_workers}"
    phases = []
    one = api.variant(f"flash-{tag}-one")
    api.receive(locations[0], one, units)
    phases.append(Phase(f"{tag}-one-row", "one SKU, one row", one, units, [locations[0]]))
    if api.features["split"] and buckets > 1:
        hot = api.variant(f"flash-{tag}-split")
        api.split(hot, buckets)
        api.receive(locations[0], hot, units)
        label = f"one SKU, {buckets} buckets"
        phases.append(Phase(f"{tag}-split", label, hot, units, [locations[0]], buckets=buckets))
    spread = api.variant(f"flash-{tag}-spread")
    share, extra = divmod(units, len(locations))
    for n, location in enumerate(locations):
        api.receive(location, spread, share + (1 if n < extra else 0))
    phases.append(
        Phase(f"{tag}-3-locations", "3 locations, round-robin", spread, units, list(locations))
    )
    if api.features["channel"]:
        routed = api.variant(f"flash-{tag}-channel")
        for n, location in enumerate(locations):
            api.receive(location, routed, share + (1 if n < extra else 0))
        channel = api.channel(f"flash-{tag}")
        phases.append(
            Phase(
                f"{tag}-channel",
                "3 locations, server picks (channel_id)",
                routed,
                units,
                [None],
                channel_id=channel,
            )
        )
    return phases


def _http_phase(
    console: Console,
    store: Store,
    server: Server,
    token: str,
    phase: Phase,
    buyers: int,
    idempotency: bool,
    *,
    profile: bool,
    logs: Path,
) -> dict[str, Any]:
    assert server.process is not None
    before = store.counters()
    spy: subprocess.Popen[bytes] | None = None
    spy_out = logs / f"profile-{phase.key}.txt"
    if profile and (exe := _pyspy()):
        command = [
            exe,
            "record",
            "--format",
            "raw",
            "-o",
            str(spy_out),
            "-r",
            "100",
            # Only the thread holding the GIL: what one process can do is bounded by it.
            "--gil",
            "--nonblocking",
        ]
        if server.workers > 1:
            command.append("--subprocesses")
        spy = subprocess.Popen(
            [*command, "-p", str(server.process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    raw = _drive(
        console,
        f"HTTP w{server.workers} {phase.label}",
        phase.units,
        _buyers_process,
        (server.base, token, phase, buyers, idempotency),
        server.process.pid,
        store.backend_pids,
    )
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    backlog, drain = store.wait_drained()
    after = store.counters()
    held = len(raw["held"])
    extra: dict[str, Any] = {
        "workers": server.workers,
        "phase": phase.label,
        "audit": store.audit(phase.variant_id, phase.units, held),
        "outbox_backlog_at_sellout": backlog,
        "outbox_drain_s": round(drain, 1),
        "pg_per_reservation": {k: round((after[k] - before[k]) / max(1, held), 2) for k in after},
    }
    if spy is not None and spy_out.exists():
        extra["profile"] = summarize_profile(spy_out)
        extra["profile_file"] = str(spy_out)
    return _summary(f"HTTP w{server.workers}: {phase.label}", raw, extra)


def _raw_phases(
    console: Console,
    store: Store,
    api: Api,
    location_id: str,
    units: int,
    threads: int,
    buckets: int,
) -> list[dict[str, Any]]:
    out = []
    labels = {
        "one": "raw psycopg: 1 row",
        "skip": f"raw psycopg: {buckets} rows, random pick, SKIP LOCKED",
        "random": f"raw psycopg: {buckets} rows, random pick, waits",
    }
    for layout, label in labels.items():
        rows = 1 if layout == "one" else max(2, buckets)
        variant_id = api.variant(f"raw-{layout}")
        store.raw_rows(location_id, variant_id, units, rows)
        raw = _drive(
            console,
            label,
            units,
            _raw_process,
            (store.dsn, layout, location_id, variant_id, threads),
            None,
            store.backend_pids,
        )
        on_hand, reserved = store.drop_raw_rows(variant_id)
        held = len(raw["held"])
        out.append(
            _summary(
                label,
                raw,
                {
                    "rows": rows,
                    "audit": {
                        "received": units,
                        "on_hand": on_hand,
                        "reserved": reserved,
                        "oversold": max(0, reserved - on_hand, held - units),
                        "unsold": on_hand - reserved,
                    },
                },
            )
        )
    return out


def _show(console: Console, results: dict[str, Any]) -> None:
    best_raw = max((r["reservations_per_s"] for r in results["raw"]), default=0.0)
    table = Table(
        "run",
        "holds/s",
        "p50 ms",
        "p99 ms",
        "oversold",
        "unsold",
        "server CPU ms/hold",
        "server RSS / PSS MB",
        "CPU s: server / PG / client / other",
        "vs best raw",
        "unexpected",
        title=(
            f"Flash sale on PostgreSQL ({results['buyers']} buyers; HTTP {results['units_http']:,}"
            f" units, raw {results['units_raw']:,} units per run)"
        ),
    )
    for row in [*results["raw"], *results["phases"]]:
        audit = row.get("audit", {})
        ratio = row["reservations_per_s"] / best_raw if best_raw else 0.0
        cpu = row.get("server_cpu_s")
        table.add_row(
            row["name"],
            f"{row['reservations_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            str(audit.get("oversold", "?")),
            str(audit.get("unsold", "?")),
            f"{1000 * cpu / max(1, row['reservations']):.1f}" if cpu is not None else "",
            (
                f"{row['server_peak_rss_mb']:.0f} / {row.get('server_peak_pss_mb', 0):.0f}"
                if row.get("server_peak_rss_mb")
                else ""
            ),
            "{server} / {postgres} / {client} / {other}".format(**row["cpu_s"])
            if row.get("cpu_s")
            else "",
            f"{ratio:.2f}x",
            ", ".join(f"{k}: {v}" for k, v in row.get("unexpected", {}).items()),
        )
    Console(file=console.file, width=max(console.width, 170)).print(table)
    rows = [*results["raw"], *results["phases"]]
    busy = [r for r in rows if r.get("cpu_s", {}).get("other", 0) > 0.1 * r["cpu_s"]["machine"]]
    if busy:
        console.print(
            f"[yellow]warning[/yellow]: something else used the CPU during {len(busy)} run(s) "
            "(column 'other'): their figures are low."
        )
    console.print(
        f"seamline inventory verify exit code: {results.get('inventory_verify_exit')}; "
        f"server logs in {results['logs']}"
    )
    for key, value in results.items():
        if key.startswith("server_log_"):
            console.print(
                f"{key}: statuses {value['statuses']}, error lines {value['error_lines']}"
            )
    stmts = results.get("statements_per_reserve")
    if stmts:
        for name, v in stmts.items():
            console.print(
                f"per POST /reservations ({name}): {v['statements']:.0f} SQL statements "
                f"+ {v['pool_checkouts_with_ping']:.0f} pre-ping, {v['commits']:.0f} commits; "
                f"stream hub meanwhile {v['background_statements_per_request']} per request"
            )
    for row in results["phases"]:
        if "profile" in row:
            console.print(f"profile of {row['name']}: {json.dumps(row['profile'], indent=1)}")
