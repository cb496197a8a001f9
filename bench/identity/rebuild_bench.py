"""Identity rebuild on PostgreSQL: ``seamline identity rebuild`` over N identifiers, timed with
its peak RSS, against a raw baseline in the same run.

The data: the generator's graph (clusters, decisions and pointers as ingestion would leave
them), then 1% of profiles' ``cluster_id`` reset to themselves, so the rebuild has real
differences to find and write. The rebuild runs as users run it (the CLI, a subprocess), and
so does the baseline, each measured with ``wait4`` (wall time, peak RSS):

raw baseline: the same links streamed through a psycopg server-side cursor, sorted by event
time and message id, joined to their identifiers' profiles, into a plain union-find (a dict of
profile ids, no rule, no ranking, no writes) — the least any rebuild has to do.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from bench.flash_sale.server import seamline_exe
from bench.identity.common import generate_with_bar, identity_database, measured
from bench.identity.generate import pg_dsn

CORRUPT_PERCENT = 1


def baseline(url: str) -> None:
    """The raw baseline (run in its own process: ``python -m bench.identity.rebuild_bench URL``)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    links = 0
    with psycopg.connect(pg_dsn(url)) as conn, conn.cursor(name="edges") as cur:
        cur.itersize = 20_000
        cur.execute(
            "SELECT ia.profile_id, ib.profile_id FROM identity_links l "
            "JOIN identifiers ia ON ia.id = l.identifier_a_id "
            "JOIN identifiers ib ON ib.id = l.identifier_b_id "
            'ORDER BY l.observed_at DESC, l.message_id COLLATE "C" DESC'
        )
        for a, b in cur:
            links += 1
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
    print(f"links={links} clusters={sum(1 for k, v in parent.items() if k == v)}")


def run(postgres_url: str | None, *, identifiers: int, console: Console) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]identity-rebuild needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    results: dict[str, Any] = {"identifiers_target": identifiers}
    with identity_database(postgres_url, name="seamline_bench_identity_rebuild") as url:
        stats, seconds = generate_with_bar(
            console,
            url,
            f"generating {identifiers:,} identifiers",
            persons=0,
            identifiers=identifiers,
        )
        results["generated"] = {
            "rows": stats.rows,
            "persons": stats.persons,
            "seconds": round(seconds, 1),
        }
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            corrupted = conn.execute(
                "UPDATE profiles SET cluster_id = id WHERE cluster_id <> id "
                f"AND abs(hashtext(id)) % 100 < {CORRUPT_PERCENT}"
            ).rowcount
            conn.execute("VACUUM ANALYZE profiles")
        results["corrupted_profiles"] = corrupted
        env = {**os.environ, "SEAMLINE_DATABASE_URL": url, "SEAMLINE_LOG_LEVEL": "WARNING"}
        console.print("raw baseline: sorted link stream + plain union-find")
        raw = measured([sys.executable, "-m", "bench.identity.rebuild_bench", url], env)
        console.print(f"  {raw.stdout.strip()}")
        console.print("seamline identity rebuild")
        full = measured([seamline_exe(), "identity", "rebuild"], env)
        console.print(full.stdout)
        again = measured([seamline_exe(), "identity", "rebuild", "--dry-run"], env)
        ok = (
            f"{corrupted:,} profiles changed" in full.stdout
            and "0 profiles would change" in again.stdout
        )
    results.update(
        raw={
            "seconds": round(raw.seconds, 1),
            "max_rss_mb": round(raw.max_rss_mb),
            "out": raw.stdout.strip(),
        },
        rebuild={
            "seconds": round(full.seconds, 1),
            "max_rss_mb": round(full.max_rss_mb),
            "exit": full.returncode,
            "out": full.stdout,
        },
        dry_run_after={"seconds": round(again.seconds, 1), "max_rss_mb": round(again.max_rss_mb)},
        verified=ok,
    )
    table = Table(
        "run",
        "seconds",
        "peak RSS MB",
        "vs raw",
        title=f"identity rebuild, {stats.rows['identifiers']:,} identifiers",
    )
    table.add_row(
        "raw: sorted stream + union-find", f"{raw.seconds:.1f}", f"{raw.max_rss_mb:,.0f}", "1x"
    )
    table.add_row(
        "seamline identity rebuild",
        f"{full.seconds:.1f}",
        f"{full.max_rss_mb:,.0f}",
        f"{full.seconds / raw.seconds:.2f}x",
    )
    table.add_row(
        "rebuild --dry-run afterwards",
        f"{again.seconds:.1f}",
        f"{again.max_rss_mb:,.0f}",
        f"{again.seconds / raw.seconds:.2f}x",
    )
    console.print(table)
    console.print(
        f"corrupted {corrupted:,} cluster ids; rebuild restored them and a second pass "
        f"found nothing: {ok}"
    )
    return results


if __name__ == "__main__":
    started = time.perf_counter()
    baseline(sys.argv[1])
