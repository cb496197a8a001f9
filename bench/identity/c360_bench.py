"""Customer 360 on PostgreSQL: ``GET /api/v1/profiles/{id}`` over HTTP at 1 and 32 clients
against the raw indexed queries through psycopg, in the same run and database.

Data: the generator's people (default 200,000, about 50 tracked events each: ~10M events)
with their identifiers, links, merges, trait history, metrics, channel activity, consents and
domain timeline entries. Targets: random clusters (by their canonical profile).

Raw baseline, per read, one autocommit connection per client: the queries the 360 needs, each
on its index — the cluster's members (one query), their identifiers, traits, the latest 21
tracked events, metrics, channel activity, consents, preferences, the latest 21 timeline
entries — rows fetched as tuples, nothing rendered.

HTTP clients: the standard library's ``http.client`` (one keep-alive connection per thread),
the client that adds least of its own to a latency; then, at one client, the same read through
``httpx.AsyncClient`` (the client of runs before 2026-11-25) and ``GET /healthz`` through both,
which answers a constant without the database: what each client costs by itself.

Each row also records the 1-minute load average when it finished (``load``): the machine is
often shared, so figures are compared with the raw row of the same run, never across runs.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from bench.flash_sale.server import Server, seamline_exe, tree_memory_kb
from bench.identity.common import generate_with_bar, identity_database
from bench.identity.generate import pg_dsn

RAW = [
    "SELECT id, cluster_id FROM profiles WHERE cluster_id = "
    "(SELECT cluster_id FROM profiles WHERE id = %(p)s) ORDER BY id",
    "SELECT kind, value, valid, profile_id, source_channel, first_seen, last_seen "
    "FROM identifiers WHERE profile_id = ANY(%(m)s) ORDER BY kind, value",
    "SELECT DISTINCT ON (name) name, value, observed_at, source, profile_id FROM profile_traits "
    "WHERE profile_id = ANY(%(m)s) ORDER BY name, observed_at DESC, id DESC",
    "SELECT id, profile_id, message_id, type, name, category, channel, timestamp, received_at, "
    "properties, traits FROM tracked_events WHERE profile_id = ANY(%(m)s) "
    "ORDER BY timestamp DESC, id DESC LIMIT 21",
    "SELECT * FROM profile_metrics WHERE profile_id = ANY(%(m)s)",
    "SELECT * FROM channel_activity WHERE profile_id = ANY(%(m)s)",
    "SELECT * FROM consents WHERE profile_id = ANY(%(m)s)",
    "SELECT * FROM profile_preferences WHERE profile_id = ANY(%(m)s)",
    "SELECT * FROM timeline_entries WHERE profile_id = ANY(%(m)s) "
    "ORDER BY occurred_at DESC, id DESC LIMIT 21",
]


def _raw_read(conn: psycopg.Connection[Any], profile_id: str) -> None:
    members = [r[0] for r in conn.execute(RAW[0], {"p": profile_id}).fetchall()]
    for query in RAW[1:]:
        conn.execute(query, {"m": members}).fetchall()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def _threads(clients: int, requests: int, client: Callable[[int, int], list[float]]) -> list[float]:
    """``clients`` threads, each running ``client(k, requests // clients)`` (its latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = max(1, requests // clients)

    def run(k: int) -> None:
        mine = client(k, per_client)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def _raw(url: str, targets: list[str], clients: int, requests: int) -> list[float]:
    def client(k: int, count: int) -> list[float]:
        rng = random.Random(k)
        mine: list[float] = []
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            for _ in range(count):
                t0 = time.perf_counter()
                _raw_read(conn, rng.choice(targets))
                mine.append(time.perf_counter() - t0)
        return mine

    return _threads(clients, requests, client)


def _lean_http(base: str, token: str, paths: list[str], clients: int, requests: int) -> list[float]:
    """The HTTP client that adds least of its own: the standard library's, one keep-alive
    connection per thread, the whole body read."""
    address = httpx.URL(base)
    headers = {"Authorization": f"Bearer {token}"}

    def client(k: int, count: int) -> list[float]:
        rng = random.Random(k)
        mine: list[float] = []
        conn = http.client.HTTPConnection(address.host, address.port, timeout=60)
        try:
            for _ in range(count):
                t0 = time.perf_counter()
                conn.request("GET", rng.choice(paths), headers=headers)
                response = conn.getresponse()
                body = response.read()
                mine.append(time.perf_counter() - t0)
                if response.status != 200:
                    raise RuntimeError(f"{response.status} {body[:300]!r}")
        finally:
            conn.close()
        return mine

    return _threads(clients, requests, client)


async def _http(
    base: str, token: str, paths: list[str], clients: int, requests: int
) -> list[float]:
    """The same reads through ``httpx.AsyncClient`` (asyncio clients in one thread): what
    earlier runs used; the client's own cost is in each latency (see ``/healthz`` rows)."""
    latencies: list[float] = []
    per_client = max(1, requests // clients)

    async def client(k: int) -> None:
        rng = random.Random(k)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = await http.get(rng.choice(paths))
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text[:300]}")

    await asyncio.gather(*(client(k) for k in range(clients)))
    return latencies


def run(
    postgres_url: str | None,
    *,
    persons: int,
    events_per_person: int,
    console: Console,
    requests: int = 2_000,
) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]identity-360 needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    logs = Path(tempfile.mkdtemp(prefix="seamline-360-"))
    (logs / "data").mkdir()
    results: dict[str, Any] = {"persons": persons, "events_per_person": events_per_person}
    with identity_database(postgres_url, name="seamline_bench_identity_360") as url:
        stats, seconds = generate_with_bar(
            console,
            url,
            f"generating {persons:,} people",
            persons=persons,
            events_per_person=events_per_person,
        )
        results["generated"] = {"rows": stats.rows, "seconds": round(seconds, 1)}
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            targets = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM profiles WHERE id = cluster_id ORDER BY md5(id) LIMIT 5000"
                )
            ]
        env = {
            **os.environ,
            "SEAMLINE_DATABASE_URL": url,
            "SEAMLINE_DATA_DIR": str(logs / "data"),
            "SEAMLINE_ENVIRONMENT": "production",
        }
        for name in ("SEAMLINE_LOG_LEVEL", "SEAMLINE_LOG_FORMAT", "SEAMLINE_NATS_URL"):
            env.pop(name, None)
        made = subprocess.run(
            [seamline_exe(), "keys", "create", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = re.findall(r"\bsk_[A-Za-z0-9_-]{20,}", made.stdout)[-1]
        # (name, latencies, 1-minute load average when the row finished): the machine is
        # often shared, so every figure is recorded with the load it was measured under.
        rows: list[tuple[str, int, list[float], float]] = []
        for clients in (1, 32):
            raw = _raw(url, targets, clients, requests)
            rows.append((f"raw psycopg, {clients} client(s)", clients, raw, os.getloadavg()[0]))
        server = Server(1, env, logs)
        server.start()
        assert server.process is not None
        paths = [f"/api/v1/profiles/{target}" for target in targets]
        try:
            _lean_http(server.base, token, paths, 1, 50)  # warm up
            asyncio.run(_http(server.base, token, paths, 1, 50))
            for clients in (1, 32):
                lat = _lean_http(server.base, token, paths, clients, requests)
                name = f"GET /api/v1/profiles/{{id}}, {clients} client(s)"
                rows.append((name, clients, lat, os.getloadavg()[0]))
            # The same read through httpx (the client of earlier runs), and what each client
            # costs by itself: GET /healthz answers a constant without the database.
            lat = asyncio.run(_http(server.base, token, paths, 1, requests))
            name = "GET /api/v1/profiles/{id}, httpx.AsyncClient, 1 client(s)"
            rows.append((name, 1, lat, os.getloadavg()[0]))
            lat = _lean_http(server.base, token, ["/healthz"], 1, requests)
            rows.append(("GET /healthz, 1 client(s)", 1, lat, os.getloadavg()[0]))
            lat = asyncio.run(_http(server.base, token, ["/healthz"], 1, requests))
            name = "GET /healthz, httpx.AsyncClient, 1 client(s)"
            rows.append((name, 1, lat, os.getloadavg()[0]))
            rss = sum(r for r, _ in tree_memory_kb(server.process.pid).values()) / 1024
        finally:
            server.stop()
        results["server_log"] = server.log_summary()
    table = Table(
        "run", "p50 ms", "p99 ms", "reads/s", "load", title=f"customer 360, {persons:,} people"
    )
    results["runs"] = {}
    for name, clients, lat, load in rows:
        rate = clients / statistics.mean(lat)
        results["runs"][name] = {
            "p50_ms": round(_pct(lat, 0.5), 2),
            "p99_ms": round(_pct(lat, 0.99), 2),
            "per_second": round(rate),
            "n": len(lat),
            "load_1min": round(load, 2),
        }
        table.add_row(
            name, f"{_pct(lat, 0.5):.2f}", f"{_pct(lat, 0.99):.2f}", f"{rate:,.0f}", f"{load:.1f}"
        )
    results["server_rss_mb"] = round(rss)
    console.print(table)
    return results
