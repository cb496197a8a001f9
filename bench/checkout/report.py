"""The results: one summary row per run, the printed tables and the goal check."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

GOAL_RATIO = 0.3
GOAL_STATEMENTS = 20


def _pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index] * 1000


def summary(
    name: str,
    case: str,
    kind: str,
    raw: dict[str, Any],
    before: dict[str, int],
    after: dict[str, int],
    audit: dict[str, Any],
) -> dict[str, Any]:
    created, refused = raw["created"], raw["refused"]
    elapsed = raw["elapsed_s"]
    attempts = len(created) + len(refused) + sum(raw.get("other", {}).values())
    row: dict[str, Any] = {
        "name": name,
        "case": case,
        "kind": kind,
        "created_201": len(created),
        "refused_409": len(refused),
        "unexpected": raw.get("other", {}),
        "retried": raw.get("retried", {}),
        "unexpected_samples": raw.get("samples", []),
        "elapsed_s": round(elapsed, 2),
        "orders_per_s": len(created) / elapsed if elapsed else 0.0,
        "attempts_per_s": attempts / elapsed if elapsed else 0.0,
        "p50_ms": round(_pct(created, 0.50), 2),
        "p99_ms": round(_pct(created, 0.99), 2),
        "p50_409_ms": round(_pct(refused, 0.50), 2),
        "p99_409_ms": round(_pct(refused, 0.99), 2),
        "pg_per_attempt": {k: round((after[k] - before[k]) / max(1, attempts), 2) for k in after},
        "audit": audit,
    }
    for key in ("cpu_s", "server_peak_rss_mb", "server_cpu_s", "machine_busy", "wall_s"):
        if key in raw:
            row[key] = raw[key]
    return row


def show(console: Console, results: dict[str, Any]) -> None:
    raw_rate = {r["case"]: r["orders_per_s"] for r in results["runs"] if r["kind"] == "raw"}
    table = Table(
        "run",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "201",
        "409 stock",
        "other",
        "oversold",
        "left reserved",
        "server CPU ms/attempt",
        "PG commits/attempt",
        "CPU s: server / PG / client / other",
        "vs raw",
        title=(
            f"Checkout on PostgreSQL: {results['checkouts']:,} carts of 2 lines per case, "
            f"{results['clients']} clients, {results['skus']:,} SKUs (spread) / "
            f"{results['hot_skus']} hot SKUs x {results['hot_units_per_sku']} units (hot), "
            f"{results.get('server_processes', 1)} API process(es)"
        ),
    )
    for row in results["runs"]:
        audit = row["audit"]
        attempts = row["created_201"] + row["refused_409"]
        cpu = row.get("server_cpu_s")
        base = raw_rate.get(row["case"], 0.0)
        table.add_row(
            row["name"],
            f"{row['orders_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            str(row["created_201"]),
            str(row["refused_409"]),
            ", ".join(
                f"{k}: {v}" for k, v in {**row["unexpected"], **row.get("retried", {})}.items()
            ),
            str(audit["oversold_units"]),
            str(audit["left_reserved_units"] + audit["held_reservations"]),
            f"{1000 * cpu / max(1, attempts):.1f}" if cpu is not None else "",
            f"{row['pg_per_attempt']['commits']:.2f}",
            "{server} / {postgres} / {client} / {other}".format(**row["cpu_s"])
            if row.get("cpu_s")
            else "",
            f"{row['orders_per_s'] / base:.2f}x" if base else "",
        )
    Console(file=console.file, width=max(console.width, 190)).print(table)
    for row in results["runs"]:
        console.print(f"audit {row['name']}: {row['audit']}")
        if row["unexpected_samples"]:
            console.print(f"  unexpected answers, samples: {row['unexpected_samples'][:3]}")
    stm = results.get("in_process", {}).get("statements")
    prof = results.get("in_process", {}).get("profile")
    if stm:
        console.print(
            f"statements per POST /checkout (in-process, {stm['checkouts']} checkouts, median): "
            f"{stm['median_total']:.0f} = auth {stm['median_auth']:.0f} + idempotency "
            f"{stm['median_idempotency']:.0f} + checkout {stm['median_checkout']:.0f}; "
            f"{stm['median_commits']:.0f} commits, {stm['median_pool_checkouts']:.0f} "
            "pool checkouts"
        )
        kinds = Table("statement (verb table)", "per checkout", title="Statements by kind")
        for kind, n in stm["by_kind_per_checkout"].items():
            kinds.add_row(kind, f"{n:g}")
        console.print(kinds)
    if prof:
        console.print(
            f"cProfile of orders.checkout.checkout ({prof['checkouts']} checkouts, no HTTP): "
            f"{prof['wall_ms_per_checkout']} ms wall, {prof['cpu_ms_per_checkout']} ms CPU, "
            f"{prof['sql_ms_per_checkout']} ms inside cursor.execute per checkout"
        )
        console.print(f"own time by package, ms per checkout: {prof['by_module_ms_per_checkout']}")
        console.print(prof["top_cumulative"])
    spread = next(
        (r for r in results["runs"] if r["case"] == "spread" and r["kind"] == "http"), None
    )
    goals = Table("goal", "measured", "met", title="Against the goals of issue 5")
    if spread and raw_rate.get("spread"):
        ratio = spread["orders_per_s"] / raw_rate["spread"]
        goals.add_row(
            f"spread: >= {GOAL_RATIO}x raw",
            f"{ratio:.3f}x ({spread['orders_per_s']:.0f} vs {raw_rate['spread']:.0f} orders/s)",
            "yes" if ratio >= GOAL_RATIO else "no",
        )
    oversold = sum(r["audit"]["oversold_units"] for r in results["runs"])
    goals.add_row("0 oversold", str(oversold), "yes" if oversold == 0 else "no")
    if stm:
        goals.add_row(
            f"< {GOAL_STATEMENTS} statements per checkout",
            f"{stm['median_total']:.0f}",
            "yes" if stm["median_total"] < GOAL_STATEMENTS else "no",
        )
    console.print(goals)
    console.print(
        f"inventory verify (served variants): {results.get('inventory_verify')}; "
        f"logs in {results['logs']}"
    )
    for key, value in results.items():
        if key.startswith("server_log_"):
            console.print(
                f"{key}: statuses {value['statuses']}, error lines {value['error_lines']}"
            )
