"""Ingestion on PostgreSQL: ``POST /v1/batch`` to ``seamline serve`` (durable: the answer comes
after the commit), against psycopg ``COPY`` of the same rows into ``tracked_events`` in the
same run (first, in a fresh database of its own: the median of three).

The server is started as users start it (``seamline serve``, JSON logs, embedded worker). The
clients are threads in this process with one keep-alive ``httpx.Client`` each, posting
pre-serialised batches (bench/identity/workload.py). The server's RSS is sampled from /proc
every half second, so growth with volume shows.

``SEAMLINE_BENCH_INGEST_WORKER=none`` starts ``seamline serve --no-worker`` (deliveries queue up
and nobody delivers them), ``=separate`` the same plus ``SEAMLINE_BENCH_INGEST_WORKERS`` (1)
``seamline worker`` processes, started before the clock starts (their CPU is reported apart);
unset, the worker is embedded as users run it by default.

``SEAMLINE_INGEST_MODE=queued`` (or ``run(..., ingest_mode="queued")``) runs the server in
queued ingestion mode: the answer comes after the validated calls are committed to the inbox,
and the run also waits until the worker has drained it, reporting both the acknowledgement rate
and the end-to-end rate (first request to empty inbox), then until the stored calls' events
are delivered too ("settled": no pending delivery left).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from bench.common import progress
from bench.flash_sale.server import Server, cpu_seconds, seamline_exe, tree_memory_kb
from bench.identity import workload
from bench.identity.common import identity_database
from bench.identity.generate import pg_dsn


class _NoWorkerServer(Server):
    """``seamline serve --no-worker`` (one process)."""

    def start(self) -> None:
        command = [seamline_exe(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command.append("--no-worker")
        with (
            open(self.logs / "serve-w1.stdout", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"seamline serve exited:\n{self.stderr_tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"seamline serve did not answer:\n{self.stderr_tail()}")


RAW_DATABASE = "seamline_bench_identity_raw"
RAW_RUNS = 3


def raw_copy_runs(postgres_url: str, calls: list[dict[str, Any]]) -> list[float]:
    """The baseline, before the HTTP phase and in a database of its own: psycopg ``COPY`` of
    the calls as ``tracked_events`` rows, ``RAW_RUNS`` times into the emptied table (seconds
    each). One profile per primary id is written first, untimed (the events' foreign key).

    It used to run after the HTTP phase in the same database, and came out anywhere between
    21,000 and 43,000 events/s with what that phase had left PostgreSQL to write out."""
    primaries = sorted({_primary(call) for call in calls})
    with identity_database(postgres_url, name=RAW_DATABASE) as url:
        with psycopg.connect(pg_dsn(url)) as conn:
            profile = {key: f"prf_raw_{n}" for n, key in enumerate(primaries)}
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY profiles (id, cluster_id, created_at, updated_at) FROM STDIN"
                ) as copy,
            ):
                for pid in profile.values():
                    copy.write_row((pid, pid, "2026-06-01", "2026-06-01"))
            conn.commit()
            seconds = []
            for _ in range(RAW_RUNS):
                conn.execute("TRUNCATE tracked_events")
                conn.commit()
                conn.execute("CHECKPOINT")
                seconds.append(_raw_copy(conn, calls, profile))
            conn.execute("CHECKPOINT")  # nothing left to write out when the HTTP phase starts
        return seconds


def _primary(call: dict[str, Any]) -> tuple[str, str]:
    if call.get("userId"):
        return ("user_id", str(call["userId"]))
    return ("anonymous_id", str(call["anonymousId"]))


def _raw_copy(
    conn: psycopg.Connection[Any],
    calls: list[dict[str, Any]],
    profile: dict[tuple[str, str], str],
) -> float:
    """COPY the calls as tracked_events rows and commit; the seconds it took."""
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY tracked_events (profile_id, id, write_key_id, message_id, type, name, "
            "user_id, "
            "anonymous_id, properties, traits, context, timestamp, original_timestamp, "
            "received_at, channel, ip, user_agent) FROM STDIN"
        ) as copy,
    ):
        for n, call in enumerate(calls):
            context = call["context"]
            copy.write_row(
                (
                    profile[_primary(call)],
                    f"raw_{n}",
                    "key_raw_baseline",
                    call["messageId"],
                    call["type"],
                    call.get("name") or call.get("event"),
                    call.get("userId"),
                    call.get("anonymousId"),
                    json.dumps(call.get("properties", {})),
                    json.dumps(call.get("traits", {})),
                    json.dumps(context),
                    call["timestamp"],
                    call["timestamp"],
                    call["timestamp"],
                    context.get("channel"),
                    context.get("ip"),
                    context.get("userAgent"),
                )
            )
    conn.commit()
    return time.perf_counter() - started


def postgres_cpu() -> float:
    """CPU of PostgreSQL on this machine so far: user + system time of every ``postgres``
    process, plus what the ones that exited used (the postmaster's reaped children, ``cutime``
    and ``cstime``), so backends and autovacuum workers that come and go are counted. 0 when
    PostgreSQL runs on another host or in a container this process cannot see."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].partition(") ")
        if name == "postgres":
            fields = rest.split()
            total += sum(int(fields[n]) for n in (11, 12, 13, 14)) / tick
    return total


def _wait_for_worker(worker: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Until the worker process has started (imports done, first round about to run), so its
    start-up is not counted in the measured window, as the API server's is not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"seamline worker exited:\n{log.read_text()[-2000:]}")
        if "worker_started" in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError("seamline worker did not start")


def _number(url: str, sql: str) -> int:
    with psycopg.connect(pg_dsn(url)) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _pending_deliveries(url: str) -> int:
    return _number(url, "SELECT count(*) FROM event_deliveries WHERE status = 'pending'")


def _inbox_calls(url: str) -> int:
    # Rows the drain gave up on (state 'failed') are not waiting for anybody.
    return _number(url, "SELECT coalesce(sum(count), 0) FROM ingest_inbox WHERE state = 'pending'")


def run(
    postgres_url: str | None,
    *,
    events: int,
    batch_size: int,
    clients: int,
    console: Console,
    ingest_mode: str | None = None,
) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]identity-ingest needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    logs = Path(tempfile.mkdtemp(prefix="seamline-ingest-"))
    (logs / "data").mkdir()
    batches = workload.batches(events, batch_size)
    bodies = [json.dumps({"batch": b}).encode() for b in batches]
    results: dict[str, Any] = {
        "events": events,
        "batch_size": batch_size,
        "clients": clients,
        "logs": str(logs),
    }
    ingest_mode = ingest_mode or os.environ.get("SEAMLINE_INGEST_MODE") or "sync"
    results["ingest_mode"] = ingest_mode
    console.print(f"raw baseline: psycopg COPY of the same rows, {RAW_RUNS} runs, first")
    all_calls = [call for chunk in batches for call in chunk]
    raw_runs = raw_copy_runs(postgres_url, all_calls)
    raw_seconds = statistics.median(raw_runs)
    results["raw_copy_runs_events_per_second"] = [round(events / s) for s in raw_runs]
    with identity_database(postgres_url) as url:
        env = {
            **os.environ,
            "SEAMLINE_DATABASE_URL": url,
            "SEAMLINE_DATA_DIR": str(logs / "data"),
            "SEAMLINE_ENVIRONMENT": "production",
            "SEAMLINE_INGEST_MODE": ingest_mode,
        }
        for name in ("SEAMLINE_LOG_LEVEL", "SEAMLINE_LOG_FORMAT", "SEAMLINE_NATS_URL"):
            env.pop(name, None)
        made = subprocess.run(
            [seamline_exe(), "keys", "create", "--name", "bench", "--kind", "event"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = re.findall(r"\b[a-z]{2}_[A-Za-z0-9_-]{20,}", made.stdout)[-1]
        mode = os.environ.get("SEAMLINE_BENCH_INGEST_WORKER", "embedded")
        results["worker"] = mode
        server = Server(1, env, logs) if mode == "embedded" else _NoWorkerServer(1, env, logs)
        server.start()
        workers: list[subprocess.Popen[bytes]] = []
        if mode == "separate":
            count = int(os.environ.get("SEAMLINE_BENCH_INGEST_WORKERS", "1"))
            results["worker_processes"] = count
            for n in range(count):
                with open(logs / f"worker{n}.stderr", "wb") as err:
                    workers.append(
                        subprocess.Popen(
                            [seamline_exe(), "worker"],
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=err,
                            start_new_session=True,
                        )
                    )
            for n, worker in enumerate(workers):
                _wait_for_worker(worker, logs / f"worker{n}.stderr")
        worker_cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        assert server.process is not None
        pid = server.process.pid
        samples: list[tuple[float, int, float]] = []
        done = {"events": 0}
        latencies: list[float] = []
        failures: list[str] = []
        stop = threading.Event()
        work: queue.Queue[tuple[bytes, int]] = queue.Queue()
        for body, chunk in zip(bodies, batches, strict=True):
            work.put((body, len(chunk)))
        load_at_start = os.getloadavg()
        started = time.perf_counter()
        cpu0 = cpu_seconds(pid)
        pg_cpu0 = postgres_cpu()

        def sample() -> None:
            while not stop.wait(0.5):
                rss = sum(r for r, _ in tree_memory_kb(pid).values()) / 1024
                samples.append((time.perf_counter() - started, done["events"], rss))

        def client() -> None:
            with httpx.Client(base_url=server.base, auth=(token, ""), timeout=120) as http:
                while True:
                    try:
                        body, count = work.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.perf_counter()
                    r = http.post(
                        "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                    )
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200 or r.json().get("rejected"):
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    done["events"] += count

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        with progress(console) as bar:
            task = bar.add_task(f"POST /v1/batch x{len(bodies)}", total=events)
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
                bar.update(task, completed=done["events"])
            bar.update(task, completed=done["events"])
        elapsed = time.perf_counter() - started
        drained_seconds: float | None = None
        settled_seconds: float | None = None
        if ingest_mode == "queued" and mode != "none":
            # End to end: until the worker has resolved and stored every acknowledged call.
            with progress(console) as bar:
                task = bar.add_task("worker draining the inbox", total=events)
                deadline = time.monotonic() + 3600
                while (left := _inbox_calls(url)) > 0 and time.monotonic() < deadline:
                    bar.update(task, completed=events - left)
                    time.sleep(0.2)
                bar.update(task, completed=events - left)
            if left == 0:
                drained_seconds = time.perf_counter() - started
                # Settled: the stored calls' events delivered too (carts merged on identify,
                # purchase metrics of order calls, webhooks): the work the calls left behind.
                with progress(console) as bar:
                    first = _pending_deliveries(url)
                    task = bar.add_task("worker delivering their events", total=max(first, 1))
                    while (waiting := _pending_deliveries(url)) > 0 and (
                        time.monotonic() < deadline
                    ):
                        bar.update(task, completed=first - waiting)
                        time.sleep(0.2)
                    bar.update(task, completed=first - waiting)
                if waiting == 0:
                    settled_seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(pid) - cpu0
        pg_cpu = postgres_cpu() - pg_cpu0
        load_at_end = os.getloadavg()
        if workers:
            cpu = sum(cpu_seconds(w.pid) for w in workers) - worker_cpu0
            results["worker_cpu_seconds"] = round(cpu, 1)
        for worker in workers:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
        stop.set()
        with psycopg.connect(pg_dsn(url)) as conn:
            stored = conn.execute("SELECT count(*) FROM tracked_events").fetchone()
            pending = conn.execute(
                "SELECT count(*) FROM event_deliveries WHERE status = 'pending'"
            ).fetchone()
            identifiers = conn.execute("SELECT count(*) FROM identifiers").fetchone()
            inbox_left = conn.execute("SELECT count(*) FROM ingest_inbox").fetchone()
            inbox_failed = conn.execute(
                "SELECT count(*) FROM ingest_inbox WHERE state = 'failed'"
            ).fetchone()
            merges = conn.execute("SELECT count(*) FROM profile_merges").fetchone()
        server.stop()
        results["server_log"] = server.log_summary()
        if ingest_mode == "queued" and mode == "none":
            # Nobody drained during the run: drain here (untimed) so the baseline has profiles.
            from seamline.db.engine import Database
            from seamline.identity import ingest_queue

            drainer = Database(url)
            while ingest_queue.drain(drainer):
                pass
            drainer.dispose()
    rate = events / elapsed
    raw_rate = events / raw_seconds
    rss = [s[2] for s in samples] or [0.0]
    quarter = [
        round(rss[min(len(rss) - 1, int(len(rss) * f))]) for f in (0.05, 0.25, 0.5, 0.75, 1.0)
    ]
    lat = sorted(latencies)
    results.update(
        seconds=round(elapsed, 1),
        events_per_second=round(rate),
        raw_copy_seconds=round(raw_seconds, 2),
        raw_events_per_second=round(raw_rate),
        ratio=round(rate / raw_rate, 4),
        stored=stored[0] if stored else None,
        identifiers=identifiers[0] if identifiers else None,
        merges=merges[0] if merges else None,
        pending_deliveries_at_end=pending[0] if pending else None,
        inbox_rows_at_end=inbox_left[0] if inbox_left else None,
        inbox_failed_rows=inbox_failed[0] if inbox_failed else None,
        end_to_end_seconds=None if drained_seconds is None else round(drained_seconds, 1),
        end_to_end_events_per_second=(
            None if drained_seconds is None else round(events / drained_seconds)
        ),
        end_to_end_ratio=(
            None if drained_seconds is None else round(events / drained_seconds / raw_rate, 4)
        ),
        settled_seconds=None if settled_seconds is None else round(settled_seconds, 1),
        settled_events_per_second=(
            None if settled_seconds is None else round(events / settled_seconds)
        ),
        settled_ratio=(
            None if settled_seconds is None else round(events / settled_seconds / raw_rate, 4)
        ),
        load_average_at_start=[round(x, 2) for x in load_at_start],
        load_average_at_end=[round(x, 2) for x in load_at_end],
        failures=failures[:5],
        failure_count=len(failures),
        server_cpu_seconds=round(server_cpu, 1),
        postgres_cpu_seconds=round(pg_cpu, 1),
        server_rss_mb_at=dict(zip(["5%", "25%", "50%", "75%", "100%"], quarter, strict=True)),
        server_rss_mb_max=round(max(rss)),
        batch_p50_ms=round(statistics.median(lat) * 1000) if lat else None,
        batch_p99_ms=round(lat[int(len(lat) * 0.99) - 1] * 1000) if lat else None,
    )
    table = Table("measure", "value", title=f"identity ingestion, {events:,} events")
    table.add_row(
        f"raw: psycopg COPY into tracked_events (median of {RAW_RUNS})",
        f"{raw_rate:,.0f} events/s",
    )
    table.add_row(
        f"POST /v1/batch ({batch_size}/batch, {clients} clients, {ingest_mode}): acknowledged",
        f"{rate:,.0f} events/s ({rate / raw_rate:.3f}x COPY)",
    )
    if drained_seconds is not None:
        e2e = events / drained_seconds
        table.add_row(
            "end to end: first request to inbox drained by the worker",
            f"{e2e:,.0f} events/s ({e2e / raw_rate:.3f}x COPY, {drained_seconds:.1f} s)",
        )
    if settled_seconds is not None:
        settled = events / settled_seconds
        table.add_row(
            "settled: until their events are delivered as well",
            f"{settled:,.0f} events/s ({settled / raw_rate:.3f}x COPY, {settled_seconds:.1f} s)",
        )
    table.add_row(
        "batch latency p50 / p99", f"{results['batch_p50_ms']} / {results['batch_p99_ms']} ms"
    )
    table.add_row("server CPU per 1,000 events", f"{server_cpu / events * 1000:.2f} s")
    if "worker_cpu_seconds" in results:
        worker_cpu = results["worker_cpu_seconds"]
        table.add_row("worker CPU per 1,000 events", f"{worker_cpu / events * 1000:.2f} s")
    table.add_row("PostgreSQL CPU per 1,000 events", f"{pg_cpu / events * 1000:.2f} s")
    table.add_row(
        "server RSS at 5/25/50/75/100% of the run", " / ".join(f"{q}" for q in quarter) + " MB"
    )
    table.add_row(
        "stored / identifiers / merges",
        f"{results['stored']:,} / {results['identifiers']:,} / {results['merges']:,}",
    )
    table.add_row(
        "deliveries still pending at the end", f"{results['pending_deliveries_at_end']:,}"
    )
    table.add_row("failed requests", str(len(failures)))
    table.add_row(
        "load average (1/5/15 min) at start / end",
        " / ".join(", ".join(f"{x:.2f}" for x in load) for load in (load_at_start, load_at_end)),
    )
    if ingest_mode == "queued":
        table.add_row("inbox rows failed by the drain", str(results["inbox_failed_rows"]))
    console.print(table)
    return results
