"""Run the benchmarks: ``python -m bench [--postgres URL] [--events N] [--requests N]
[--only outbox|api|catalog] [--variants N]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from rich.console import Console

from bench import api_bench, catalog_bench, outbox_bench

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=os.environ.get("SEAMLINE_TEST_DATABASE_URL"))
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=4000)
    parser.add_argument(
        "--only", choices=["outbox", "api", "catalog"], help="Run one benchmark, not all"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()

    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    wanted = {args.only} if args.only else {"outbox", "api", "catalog"}
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
