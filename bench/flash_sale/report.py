"""The results: one summary row per run, and the printed table and notes."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index] * 1000


def summary(name: str, raw: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
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


def show(console: Console, results: dict[str, Any]) -> None:
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
                f"+ {v['pool_checkouts']:.0f} pool checkouts, {v['commits']:.0f} commits; "
                f"stream hub meanwhile {v['background_statements_per_request']} per request"
            )
    for row in results["phases"]:
        if "profile" in row:
            console.print(f"profile of {row['name']}: {json.dumps(row['profile'], indent=1)}")
