"""The queued-ingestion drain alone, in this process, phase by phase (``--only identity-drain``).

The ingestion bench's workload (bench/identity/workload.py) is validated as the route does and
queued in the inbox (``ingest_queue.enqueue``, untimed); then ``ingest_queue.drain`` runs, as
``seamline worker`` runs it (handlers loaded, start-up objects frozen out of the garbage
collector), until the inbox is empty. Each phase's function is wrapped with a timer for the
run: wall time and this process's CPU per call, and the statements each phase sends. The
baseline, same run, is the ingestion bench's: psycopg ``COPY`` of the same rows into
``tracked_events`` in a database of its own, the median of three.

No HTTP and no API process: this is the worker's share of the end-to-end figure, and where it
goes (docs/benchmarks.md, "Identity: the baseline first, in its own database").
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import event

from bench.common import progress
from bench.identity import workload
from bench.identity.common import identity_database
from bench.identity.ingest_bench import RAW_RUNS, raw_copy_runs
from seamline.db.engine import Database
from seamline.events import registry
from seamline.identity import (
    graph_writes,
    ingest,
    ingest_links,
    ingest_queue,
    metrics,
    resolution,
    wire,
)

DATABASE = "seamline_bench_identity_drain"


@dataclass
class _Phase:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0


# (owner, attribute, label, depth): depth 1 are the drain's own steps, 2 parts of the one above.
PHASES: list[tuple[Any, str, str, int]] = [
    (ingest_queue, "decode", "decoding the inbox rows (JSON, pydantic)", 1),
    (ingest, "_prepare", "deduplication, identifiers per call, suppression", 1),
    (ingest, "_ensure_identifiers", "identifier lookup and creation", 1),
    (ingest, "_insert_events", "tracked events (COPY)", 1),
    (ingest, "_insert_traits", "traits", 1),
    (ingest_links.Links, "__init__", "links: pairs and the stored links", 1),
    (ingest_links.Links, "record", "links: newer observations", 1),
    (ingest_links.Links, "resolve", "resolution", 1),
    (ingest_links, "_clusters", "clusters of the changed calls", 2),
    (ingest_links, "_unrefused", "which clusters a refused link touches", 2),
    (resolution, "_component", "the component", 2),
    (resolution, "blocked_links", "links an unmerge blocked", 2),
    (resolution, "_record_merges", "merge pointers and their events", 2),
    (ingest, "_emit_tracked", "customer.event_tracked outbox rows", 1),
    (graph_writes, "touch_seen", "identifiers' first/last seen", 1),
    (metrics, "touch_channels", "channel activity", 1),
]


@contextmanager
def _timed(phases: dict[str, _Phase], statements: Counter[str], db: Database) -> Iterator[None]:
    """Every phase wrapped with a timer, and statements counted by the innermost phase."""
    current: list[str] = []
    originals = []
    for owner, name, label, _depth in PHASES:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        phases[label] = _Phase()

        def wrapped(
            *args: Any, __f: Callable[..., Any] = original, __l: str = label, **kwargs: Any
        ) -> Any:
            current.append(__l)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return __f(*args, **kwargs)
            finally:
                phase = phases[__l]
                phase.wall += time.perf_counter() - wall
                phase.cpu += time.process_time() - cpu
                phase.calls += 1
                current.pop()

        setattr(owner, name, functools.wraps(original)(wrapped))

    def count(*args: Any) -> None:
        statements[current[-1] if current else "inbox, commit and the rest"] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        for owner, name, original in originals:
            setattr(owner, name, original)


def run(postgres_url: str | None, *, events: int, console: Console) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]identity-drain needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    batches = workload.batches(events, 250)
    calls = [call for batch in batches for call in batch]
    console.print(f"raw baseline: psycopg COPY of the same rows, {RAW_RUNS} runs, first")
    raw_runs = raw_copy_runs(postgres_url, calls)
    raw_rate = events / statistics.median(raw_runs)
    phases: dict[str, _Phase] = {}
    statements: Counter[str] = Counter()
    with identity_database(postgres_url, name=DATABASE) as url:
        db = Database(url)
        try:
            with progress(console) as bar:
                task = bar.add_task("queueing the calls (untimed)", total=events)
                for batch in batches:
                    with db.transaction() as session:
                        parsed = wire.parse_batch({"batch": batch})
                        ingest_queue.enqueue(
                            session, parsed.calls, key_id="key_bench", received_at=datetime.now(UTC)
                        )
                    bar.advance(task, len(batch))
            registry.load()
            gc.collect()
            gc.freeze()  # as `seamline worker` does after start-up (seamline.kit.heap)
            drained = drains = 0
            with _timed(phases, statements, db), progress(console) as bar:
                task = bar.add_task("draining", total=events)
                wall, cpu = time.perf_counter(), time.process_time()
                while calls_drained := ingest_queue.drain(db):
                    drained += calls_drained
                    drains += 1
                    bar.update(task, completed=drained)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            gc.unfreeze()
            db.dispose()
    rate = drained / wall
    results: dict[str, Any] = {
        "events": events,
        "drained": drained,
        "drains": drains,
        "raw_copy_runs_events_per_second": [round(events / s) for s in raw_runs],
        "raw_events_per_second": round(raw_rate),
        "drain_events_per_second": round(rate),
        "ratio": round(rate / raw_rate, 4),
        "wall_us_per_call": round(wall / drained * 1e6, 1),
        "cpu_us_per_call": round(cpu / drained * 1e6, 1),
        "phases": {
            label: {
                "wall_us_per_call": round(p.wall / drained * 1e6, 1),
                "cpu_us_per_call": round(p.cpu / drained * 1e6, 1),
                "statements_per_drain": round(statements[label] / max(drains, 1), 1),
            }
            for label, p in phases.items()
        },
        "other_statements_per_drain": round(
            statements["inbox, commit and the rest"] / max(drains, 1), 1
        ),
    }
    table = Table(
        "phase", "wall µs/call", "CPU µs/call", "statements/drain",
        title=f"identity drain, {drained:,} calls in {drains} drains",
    )  # fmt: skip
    table.add_row(
        "whole drain",
        f"{results['wall_us_per_call']:.0f}",
        f"{results['cpu_us_per_call']:.0f}",
        f"{sum(statements.values()) / max(drains, 1):.0f}",
    )
    for _owner, _name, label, depth in PHASES:
        row = results["phases"][label]
        table.add_row(
            ("    " if depth > 1 else "  ") + label,
            f"{row['wall_us_per_call']:.1f}",
            f"{row['cpu_us_per_call']:.1f}",
            f"{row['statements_per_drain']:.0f}",
        )
    table.add_row(
        "  inbox rows, commit and the rest", "", "", f"{results['other_statements_per_drain']:.0f}"
    )
    table.add_row(
        f"raw: psycopg COPY into tracked_events (median of {RAW_RUNS})",
        f"{raw_rate:,.0f} events/s",
        "",
        "",
    )
    table.add_row("the drain", f"{rate:,.0f} events/s", f"{rate / raw_rate:.3f}x COPY", "")
    console.print(table)
    return results
