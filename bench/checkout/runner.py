"""The benchmark: a fresh database, ``seamline serve``, the shop, the carts; per case (spread,
hot) the raw baseline then the HTTP checkouts, each audited; then the in-process statement
count and profile; ``inventory verify`` at the end."""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.checkout.clients import http_process, raw_process
from bench.checkout.inprocess import measure
from bench.checkout.report import show, summary
from bench.checkout.seeding import (
    SHIPPING,
    CartPlan,
    Shop,
    checkout_database,
    dsn,
    make_carts,
    plan_lines,
    seed_catalog,
    shop_through_api,
)
from bench.flash_sale.clients import drive
from bench.flash_sale.seeding import Store
from bench.flash_sale.server import Server, machine_cpu, seamline_exe
from seamline.db.engine import Database


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [seamline_exe(), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run(
    postgres_url: str | None,
    *,
    checkouts: int,
    clients: int,
    skus: int,
    hot: int,
    hot_units: int | None,
    cases: list[str],
    profile_checkouts: int,
    retry_503: int = 0,
    server_processes: int = 1,
    console: Console,
) -> dict[str, Any]:
    if not postgres_url:
        console.print("[yellow]checkout needs PostgreSQL: pass --postgres URL[/yellow]")
        return {"skipped": "no PostgreSQL URL"}
    busy0, all0 = machine_cpu()
    time.sleep(1)
    busy1, all1 = machine_cpu()
    busy_before = (busy1 - busy0) / max(1.0, all1 - all0)
    # Hot stock: a fifth of the carts' worth per hot SKU, so a good share of checkouts sells
    # out (a cart asks for ~2.7 units over two of the hot SKUs).
    hot_units = hot_units if hot_units is not None else max(4, checkouts // 5)
    logs = Path(tempfile.mkdtemp(prefix="seamline-checkout-"))
    data_dir = logs / "data"
    data_dir.mkdir()
    results: dict[str, Any] = {
        "checkouts": checkouts,
        "clients": clients,
        "skus": skus,
        "hot_skus": hot,
        "hot_units_per_sku": hot_units,
        "retry_503": retry_503,
        "server_processes": server_processes,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "machine_busy_before": round(busy_before, 3),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "logs": str(logs),
        "runs": [],
    }
    if busy_before > 0.1:
        console.print(
            f"[yellow]warning[/yellow]: the machine is {busy_before:.0%} busy before the "
            f"benchmark starts (load average {os.getloadavg()[0]:.1f}); see 'other' CPU."
        )
    with checkout_database(postgres_url) as url:
        env = {
            **os.environ,
            "SEAMLINE_DATABASE_URL": url,
            "SEAMLINE_DATA_DIR": str(data_dir),
            "SEAMLINE_ENVIRONMENT": "production",  # JSON logs at INFO, as deployed
            "SEAMLINE_TEST_PAYMENTS": "true",  # the sandbox provider (off in production)
        }
        for name in ("SEAMLINE_LOG_LEVEL", "SEAMLINE_LOG_FORMAT", "SEAMLINE_NATS_URL"):
            env.pop(name, None)
        for step in (("db", "upgrade"), ("keys", "create", "--name", "bench", "--kind", "secret")):
            done = _cli(env, *step)
            if done.returncode:
                raise RuntimeError(f"seamline {' '.join(step)}: {done.stderr}{done.stdout}")
        token = next(w for w in done.stdout.split() if w.startswith("sk_"))
        db = Database(url)
        store = Store(dsn(url))
        # The server runs only for the set-up and the HTTP phases: its embedded worker polls,
        # which would add commits and CPU to the raw baseline's figures.
        server = Server(1, env, logs)
        try:
            server.start()
            shop = shop_through_api(server.base, token, stores=2)
        finally:
            server.stop()
        seed_catalog(db, shop, skus=skus, hot=hot, hot_units=hot_units, console=console)
        rng = random.Random(42)
        pools = {"spread": shop.spread, "hot": shop.hot}
        plans = {c: [plan_lines(rng, pools[c]) for _ in range(checkouts)] for c in cases}
        carts = {c: make_carts(db, shop, plans[c], c, console) for c in cases}
        n_counted = 30
        extra = make_carts(
            db,
            shop,
            [plan_lines(rng, shop.spread) for _ in range(n_counted + profile_checkouts)],
            "in-process (statements, profile)",
            console,
        )
        for case in cases:
            results["runs"].append(_raw(console, store, shop, case, plans[case], clients))
            case_logs = logs / case
            case_logs.mkdir()
            server = Server(server_processes, env, case_logs)
            try:
                server.start()
                results["runs"].append(
                    _http(
                        console, store, server, token, shop, case, carts[case], clients, retry_503
                    )
                )
            finally:
                server.stop()
            results[f"server_log_{case}"] = server.log_summary()
            results[f"load_average_after_{case}"] = [round(x, 2) for x in os.getloadavg()]
        console.print("in-process: statements per checkout, cProfile …")
        results["in_process"] = measure(
            url,
            data_dir,
            token,
            [c.cart_id for c in extra[:n_counted]],
            [c.cart_id for c in extra[n_counted:]],
        )
        results["inventory_verify"] = _verify(db, shop)
        db.dispose()
        store.close()
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    show(console, results)
    return results


def _raw(
    console: Console,
    store: Store,
    shop: Shop,
    case: str,
    plans: list[list[tuple[str, int]]],
    clients: int,
) -> dict[str, Any]:
    """The baseline on the raw twins of the same carts."""
    twin_carts = [
        [(shop.skus[v][2], q, shop.skus[v][0] + "-RAW", shop.skus[v][1]) for v, q in plan]
        for plan in plans
    ]
    before = store.counters()
    raw = drive(
        console,
        f"raw psycopg: {case}",
        len(plans),
        raw_process,
        (store.dsn, shop.channel, SHIPPING, twin_carts, clients),
        None,
        store.backend_pids,
    )
    after = store.counters()
    twins = sorted({t for plan in twin_carts for t, *_ in plan})
    audit = _audit(store, shop, twins, "o.id LIKE 'ord_raw%%'", None)
    return summary(f"raw psycopg: {case}", case, "raw", raw, before, after, audit)


def _http(
    console: Console,
    store: Store,
    server: Server,
    token: str,
    shop: Shop,
    case: str,
    carts: list[CartPlan],
    clients: int,
    retries: int,
) -> dict[str, Any]:
    assert server.process is not None
    ids = [c.cart_id for c in carts]
    before = store.counters()
    raw = drive(
        console,
        f"HTTP checkout: {case}",
        len(ids),
        http_process,
        (server.base, token, ids, clients, retries),
        server.process.pid,
        store.backend_pids,
    )
    after = store.counters()
    variants = sorted({v for c in carts for v, _ in c.lines})
    audit = _audit(store, shop, variants, "o.cart_id = ANY(%(carts)s)", ids)
    backlog, drain = store.wait_drained(timeout=120)
    audit["outbox_backlog_after_phase"] = backlog
    audit["outbox_drain_s"] = round(drain, 1)
    return summary(f"HTTP checkout: {case}", case, "http", raw, before, after, audit)


def _audit(
    store: Store, shop: Shop, variants: list[str], orders_where: str, cart_ids: list[str] | None
) -> dict[str, Any]:
    """Orders' quantities against the stock received, per variant; what is left reserved."""
    conn = store.conn
    params: dict[str, Any] = {"v": variants, "carts": cart_ids or []}
    sold: dict[str, int] = dict(
        conn.execute(
            "SELECT ol.variant_id, sum(ol.quantity) FROM order_lines ol JOIN orders o ON "
            f"o.id = ol.order_id WHERE ol.variant_id = ANY(%(v)s) AND {orders_where} GROUP BY 1",
            params,
        ).fetchall()
    )
    levels = {
        v: (int(on), int(res), int(neg))
        for v, on, res, neg in conn.execute(
            "SELECT variant_id, sum(on_hand), sum(reserved), count(*) FILTER (WHERE on_hand < 0 "
            "OR reserved < 0 OR reserved > on_hand) FROM stock_levels "
            "WHERE variant_id = ANY(%(v)s) GROUP BY 1",
            params,
        ).fetchall()
    }
    received = dict.fromkeys(variants, 0)
    for (_, v), units in shop.received.items():
        if v in received:
            received[v] += units
    oversold = sum(max(0, int(sold.get(v, 0)) - received[v]) for v in variants)
    drift = [
        v for v in variants if received[v] - int(sold.get(v, 0)) != levels.get(v, (0, 0, 0))[0]
    ]
    audit: dict[str, Any] = {
        "units_received": sum(received.values()),
        "units_sold": int(sum(sold.values())),
        "oversold_units": oversold,
        "sold_out_variants": sum(1 for v in variants if int(sold.get(v, 0)) >= received[v]),
        "left_reserved_units": sum(r for _, r, _ in levels.values()),
        "rows_breaking_checks": sum(n for _, _, n in levels.values()),
        "on_hand_not_received_minus_sold": len(drift),
    }
    held = conn.execute(
        "SELECT count(*) FROM reservations WHERE variant_id = ANY(%(v)s) AND status = 'held'",
        params,
    ).fetchone()
    audit["held_reservations"] = int(held[0]) if held else 0
    if cart_ids is not None:
        audit["orders"] = int(
            conn.execute(
                "SELECT count(*) FROM orders WHERE cart_id = ANY(%(carts)s)", params
            ).fetchone()[0]  # type: ignore[index]
        )
        audit["carts_by_status"] = dict(
            conn.execute(
                "SELECT status, count(*) FROM carts WHERE id = ANY(%(carts)s) GROUP BY 1", params
            ).fetchall()
        )
        audit["checkouts_by_status"] = dict(
            conn.execute(
                "SELECT status, count(*) FROM checkouts WHERE cart_id = ANY(%(carts)s) GROUP BY 1",
                params,
            ).fetchall()
        )
    else:
        audit["orders"] = int(
            conn.execute(
                "SELECT count(DISTINCT o.id) FROM orders o JOIN order_lines ol ON "
                f"ol.order_id = o.id WHERE ol.variant_id = ANY(%(v)s) AND {orders_where}",
                params,
            ).fetchone()[0]  # type: ignore[index]
        )
    return audit


def _verify(db: Database, shop: Shop) -> dict[str, Any]:
    """``inventory verify`` (the service behind the CLI) over the served variants; the raw
    twins are left out (the baseline takes units off without a ledger row, by design)."""
    from seamline.inventory.verify import verify

    twins = {t for _, _, t in shop.skus.values()}
    with db.transaction(readonly=True) as session:
        problems = [p for p in verify(session) if p["variant_id"] not in twins]
    return {"problems": len(problems), "first": problems[:5]}
