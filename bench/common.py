"""Shared helpers: fresh databases, timing, a results table."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from seamline.db import migrate
from seamline.db.engine import Database


@contextmanager
def fresh_database(backend: str, postgres_url: str | None) -> Iterator[Database]:
    """A migrated, empty database that is dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate.upgrade(db)
            try:
                yield db
            finally:
                db.dispose()
        return
    assert postgres_url
    admin = create_engine(
        make_url(postgres_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS seamline_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE seamline_bench"))
    url = make_url(postgres_url).set(drivername="postgresql+psycopg", database="seamline_bench")
    db = Database(url.render_as_string(hide_password=False))
    migrate.upgrade(db)
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS seamline_bench WITH (FORCE)"))
        admin.dispose()


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def show(console: Console, title: str, rows: list[tuple[str, float, str]]) -> None:
    table = Table("measure", "per second", "note", title=title)
    for name, rate, note in rows:
        table.add_row(name, f"{rate:,.0f}", note)
    console.print(table)
