"""``seamline bench NAME [OPTIONS]``: run one benchmark of the source tree (``bench/``).

The benchmarks live beside the package, not inside it (they need the dev tools and a
PostgreSQL server), so this command works from a checkout installed with ``pip install -e``
(what ``make`` does); the options after the name go to ``python -m bench`` unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

import seamline

BENCHMARKS = (
    "outbox",
    "api",
    "catalog",
    "flash-sale",
    "identity-ingest",
    "identity-drain",
    "identity-360",
    "identity-rebuild",
    "checkout",
)


def source_tree() -> Path | None:
    """The checkout this package was installed from, if it holds the benchmarks."""
    root = Path(seamline.__file__).resolve().parents[2]
    return root if (root / "bench" / "__main__.py").is_file() else None


def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(BENCHMARKS)}")],
) -> None:
    """Run a benchmark, e.g. ``seamline bench checkout --postgres postgresql://…``; its figures
    are printed and merged into bench/results/latest.json (see docs/benchmarks.md)."""
    if name not in BENCHMARKS:
        typer.echo(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", err=True)
        raise typer.Exit(2)
    root = source_tree()
    if root is None:
        typer.echo(
            "the benchmarks ship with the source tree: run this from a checkout installed with "
            "`pip install -e .` (e.g. after `make test`)",
            err=True,
        )
        raise typer.Exit(2)
    command = [sys.executable, "-m", "bench", "--only", name, *ctx.args]
    raise typer.Exit(subprocess.call(command, cwd=root))  # noqa: S603 (our own interpreter)
