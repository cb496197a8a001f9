"""Shared by the identity benchmarks: a fresh PostgreSQL database, the generator behind a
progress bar, subprocesses measured with wait4 (wall time and peak RSS)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import progress
from bench.identity.generate import Stats, generate
from seamline.db import migrate
from seamline.db.engine import Database

DATABASE = "seamline_bench_identity"


@contextmanager
def identity_database(
    postgres_url: str, *, keep: bool = False, name: str = DATABASE
) -> Iterator[str]:
    """A migrated, empty database (``seamline_bench_identity``), dropped afterwards."""
    admin = create_engine(
        make_url(postgres_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(postgres_url).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    db = Database(rendered)
    migrate.upgrade(db)
    db.dispose()
    try:
        yield rendered
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def generate_with_bar(console: Console, url: str, label: str, **sizes: Any) -> tuple[Stats, float]:
    started = time.perf_counter()
    with progress(console) as bar:
        total = sizes.get("identifiers") or sizes["persons"]
        task = bar.add_task(label, total=total)
        stats = generate(url, progress=lambda done, _t: bar.update(task, completed=done), **sizes)
    return stats, time.perf_counter() - started


@dataclass
class Measured:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str


def measured(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` (its stderr — progress bars — to the terminal); wall time and the peak
    resident memory of that process alone (``wait4``'s rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(time.perf_counter() - started, usage.ru_maxrss / 1024, proc.returncode, out)
