"""Run the benchmarks: ``python -m bench [--postgres URL] [--events N] [--requests N]
[--only outbox|api|catalog|flash-sale|identity-ingest|identity-drain|identity-360|identity-rebuild]
[--variants N]``.

Identity (PostgreSQL only): ``[--small]`` for quick runs; see bench/identity/.

Flash sale (PostgreSQL only): ``[--buyers 64] [--units N] [--raw-units 20000] [--buckets 16]
[--server-workers 1,2] [--idempotency-key] [--profile]``.

Checkout (PostgreSQL only): ``--only checkout [--checkouts 2000] [--clients 8] [--skus 5000]
[--hot 5] [--hot-units N] [--cases spread,hot] [--retry-503 0] [--server-processes 1]``;
see bench/checkout/."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from rich.console import Console

from bench import api_bench, catalog_bench, checkout, flash_sale, outbox_bench
from bench.identity import c360_bench, drain_bench, ingest_bench, rebuild_bench

console = Console()


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=os.environ.get("SEAMLINE_TEST_DATABASE_URL"))
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=4000)
    parser.add_argument(
        "--only",
        choices=[
            "outbox",
            "api",
            "catalog",
            "flash-sale",
            "identity-ingest",
            "identity-drain",
            "identity-360",
            "identity-rebuild",
            "checkout",
        ],
        help="Run one benchmark, not all (its results are merged into --out)",
    )
    flash = parser.add_argument_group("flash sale (needs --postgres)")
    flash.add_argument("--buyers", type=int, default=64, help="Concurrent buyers (and raw threads)")
    flash.add_argument("--units", type=int, default=800, help="Units per HTTP phase")
    flash.add_argument("--raw-units", type=int, default=20_000, help="Units per raw phase")
    flash.add_argument("--buckets", type=int, default=16, help="Buckets of the split phases")
    flash.add_argument(
        "--server-workers",
        default="1,2",
        help="Comma-separated `seamline serve --workers` values to run the HTTP phases with",
    )
    flash.add_argument(
        "--idempotency-key", action="store_true", help="Buyers send an Idempotency-Key"
    )
    flash.add_argument(
        "--profile",
        action="store_true",
        help="Sample the server with py-spy (PY_SPY or on PATH) during the one-row phases",
    )
    identity = parser.add_argument_group("identity (needs --postgres)")
    identity.add_argument("--small", action="store_true", help="Small sizes for a quick run")
    identity.add_argument("--ingest-events", type=int, help="Events posted (default 100,000)")
    identity.add_argument("--ingest-clients", type=int, default=4, help="Concurrent clients")
    identity.add_argument("--batch-size", type=int, default=250, help="Calls per /v1/batch")
    identity.add_argument("--identifiers", type=int, help="Rebuild: identifiers (default 5M)")
    identity.add_argument("--persons", type=int, help="360: people (default 200,000)")
    identity.add_argument("--events-per-person", type=int, default=50, help="360: mean events")
    shop = parser.add_argument_group("checkout (needs --postgres)")
    shop.add_argument("--checkouts", type=int, default=2000, help="Carts checked out per case")
    shop.add_argument("--clients", type=int, default=8, help="Client threads (and raw threads)")
    shop.add_argument("--skus", type=int, default=5000, help="SKUs of the spread case")
    shop.add_argument("--hot", type=int, default=5, help="Hot SKUs of the hot case")
    shop.add_argument("--hot-units", type=int, help="Units per hot SKU (default checkouts / 5)")
    shop.add_argument("--cases", default="spread,hot", help="Comma-separated: spread, hot")
    shop.add_argument(
        "--retry-503",
        type=int,
        default=0,
        help="Clients resend a 503 concurrent_update this many times (same Idempotency-Key)",
    )
    shop.add_argument(
        "--profile-checkouts", type=_positive, default=100, help="Checkouts under cProfile (>= 1)"
    )
    shop.add_argument(
        "--server-processes",
        type=int,
        default=1,
        help="API processes of the server under test (seamline serve --workers N)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()

    results: dict[str, object] = {}
    if args.only and args.out.exists():
        # One benchmark re-run: keep the others' last figures.
        results = json.loads(args.out.read_text())
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    wanted = {args.only} if args.only else {"outbox", "api", "catalog", "flash-sale"}
    for backend in backends:
        if "outbox" in wanted:
            results[f"outbox_{backend}"] = outbox_bench.run(
                backend, args.postgres, events=args.events, console=console
            )
    if "api" in wanted:
        results["api_sqlite"] = api_bench.run(requests=args.requests, console=console)
    for backend in backends:
        if "catalog" in wanted:
            results[f"catalog_{backend}"] = catalog_bench.run(
                backend,
                args.postgres,
                variants=args.variants,
                lookups=args.lookups,
                console=console,
            )
    if "flash-sale" in wanted and (args.postgres or args.only):
        results["flash_sale_postgres"] = flash_sale.run(
            args.postgres,
            buyers=args.buyers,
            units=args.units,
            raw_units=args.raw_units,
            buckets=args.buckets,
            workers=[int(w) for w in args.server_workers.split(",") if w.strip()],
            idempotency=args.idempotency_key,
            profile=args.profile,
            console=console,
        )
    small = args.small
    if "identity-ingest" in wanted and (args.postgres or args.only):
        results["identity_ingest_postgres"] = ingest_bench.run(
            args.postgres,
            events=args.ingest_events or (5_000 if small else 100_000),
            batch_size=args.batch_size,
            clients=args.ingest_clients,
            console=console,
        )
    if "identity-drain" in wanted and (args.postgres or args.only):
        results["identity_drain_postgres"] = drain_bench.run(
            args.postgres,
            events=args.ingest_events or (5_000 if small else 20_000),
            console=console,
        )
    if "identity-rebuild" in wanted and (args.postgres or args.only):
        results["identity_rebuild_postgres"] = rebuild_bench.run(
            args.postgres,
            identifiers=args.identifiers or (100_000 if small else 5_000_000),
            console=console,
        )
    if "identity-360" in wanted and (args.postgres or args.only):
        results["identity_360_postgres"] = c360_bench.run(
            args.postgres,
            persons=args.persons or (5_000 if small else 200_000),
            events_per_person=args.events_per_person,
            console=console,
        )
    if "checkout" in wanted and (args.postgres or args.only):
        results["checkout_postgres"] = checkout.run(
            args.postgres,
            checkouts=args.checkouts,
            clients=args.clients,
            skus=args.skus,
            hot=args.hot,
            hot_units=args.hot_units,
            cases=[c.strip() for c in args.cases.split(",") if c.strip()],
            profile_checkouts=args.profile_checkouts,
            retry_503=args.retry_503,
            server_processes=args.server_processes,
            console=console,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
