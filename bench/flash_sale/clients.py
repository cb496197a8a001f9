"""The load: HTTP buyers (asyncio, in a spawned process of their own) and the raw psycopg
baseline (threads, also in a spawned process), and ``drive``, which runs either with a progress
bar while sampling the server's memory and everybody's CPU.

The process entry points (``buyers_process``, ``raw_process``) stay top-level functions: the
``spawn`` start method imports them by name in the child."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from rich.console import Console

from bench.common import progress
from bench.flash_sale.constants import API, MAX_ERRORS, TTL_SECONDS
from bench.flash_sale.server import cpu_seconds, machine_cpu, tree_memory_kb

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


def buyers_process(
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


def raw_process(
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


def drive(
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
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    busy0, all0 = machine_cpu()
    own0 = time.process_time()
    pg_start = {pid: cpu_seconds(pid) for pid in db_backends()}
    pg_last = dict(pg_start)
    started = time.perf_counter()
    result: dict[str, Any] | None = None
    with progress(console) as bar:
        task = bar.add_task(label, total=total)
        proc.start()
        while result is None:
            if server_pid:
                memory = tree_memory_kb(server_pid)
                peak_rss = max(peak_rss, sum(r for r, _ in memory.values()))
                peak_pss = max(peak_pss, sum(p for _, p in memory.values()))
                for p, (r, _) in memory.items():
                    per_process[p] = max(per_process.get(p, 0), r)
            for pid in db_backends():
                pg_last[pid] = max(pg_last.get(pid, 0.0), cpu_seconds(pid))
            bar.update(task, completed=counter.value)
            try:
                result = out.get(timeout=0.2)
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"{label}: the client process died") from None
        bar.update(task, completed=counter.value)
    proc.join(timeout=30)
    for pid in db_backends():
        pg_last[pid] = max(pg_last.get(pid, 0.0), cpu_seconds(pid))
    wall = time.perf_counter() - started
    busy1, all1 = machine_cpu()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {
        "machine": (busy1 - busy0) / tick,
        "server": cpu_seconds(server_pid) - cpu0 if server_pid else 0.0,
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
        result["server_cpu_s"] = cpu_seconds(server_pid) - cpu0
    result["machine_busy"] = (busy1 - busy0) / max(1.0, all1 - all0)
    result["wall_s"] = wall
    return result
