"""``seamline serve``, ``seamline worker`` and ``seamline demo``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.table import Table

from seamline.cli.common import console, err_console, runtime
from seamline.db import migrate
from seamline.events import registry
from seamline.events import service as events
from seamline.kit import heap
from seamline.runtime import Runtime
from seamline.settings import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (SEAMLINE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SEAMLINE_PORT)")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the worker in this process")
    ] = False,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before starting")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes. Above 1 each process has its own app and database pool "
            "(and its own embedded worker unless --no-worker); meant for PostgreSQL.",
        ),
    ] = 1,
) -> None:
    """Run the API and console (and, unless --no-worker, an embedded worker)."""
    import uvicorn

    from seamline.api.app import create_app
    from seamline.observability.logging import configure_logging
    from seamline.runtime import build_runtime

    settings = get_settings()
    configure_logging(settings.resolved_log_format, settings.log_level)
    rt = build_runtime(settings)
    if migrate_first:
        migrate.upgrade(rt.db)
    bind_host, bind_port = host or settings.host, port or settings.port
    if workers > 1:
        _serve_processes(rt, bind_host, bind_port, workers, embedded_worker=not no_worker)
        return
    app = create_app(settings, embedded_worker=not no_worker, runtime=rt)
    heap.settle()  # start-up objects out of every later collection (kit/heap.py)
    console.print(f"Seamline listening on [bold]http://{bind_host}:{bind_port}/[/bold]")
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", access_log=False)
    finally:
        rt.close()


def _serve_processes(
    rt: Runtime, host: str, port: int, workers: int, *, embedded_worker: bool
) -> None:
    """Hand over to uvicorn's process manager; each process imports ``seamline.api.asgi:create``.

    The manager replaces this process (``exec``, same pid, so signals reach it as before): the
    parent only migrated and made sure the secret key exists, and a fresh interpreter that
    imports uvicorn alone supervises with a fraction of the memory this CLI process holds.
    """
    import os
    import sys

    from seamline.api.asgi import EMBEDDED_WORKER_ENV

    rt.close()
    os.environ[EMBEDDED_WORKER_ENV] = "1" if embedded_worker else "0"
    console.print(f"Seamline listening on [bold]http://{host}:{port}/[/bold] ({workers} processes)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(  # noqa: S606 -- our own interpreter and arguments, no shell
        sys.executable,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "seamline.api.asgi:create",
            "--factory",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
    )


def worker(
    dead: Annotated[bool, typer.Option("--dead", help="List dead letters and exit")] = False,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            help="Re-queue dead letters: an id (with --kind), or 'all'",
            metavar="ID|all",
        ),
    ] = None,
    replay_kind: Annotated[
        str | None,
        typer.Option("--kind", help="With --replay: delivery or timer (required with an id)"),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Process what is due, then exit")] = False,
) -> None:
    """Deliver outbox events and fire timers (run several against PostgreSQL to scale out)."""
    with runtime() as rt:
        registry.load(rt.settings.plugins)
        if dead:
            with rt.db.transaction(readonly=True) as session:
                table = Table("kind", "id", "consumer", "event / key", "attempts", "last error")
                letters = events.list_dead(session)
                for d in letters:
                    table.add_row(
                        d.kind,
                        str(d.id),
                        d.consumer,
                        d.reference,
                        str(d.attempts),
                        (d.last_error or "")[:80],
                    )
            console.print(table if letters else "no dead letters")
            return
        if replay is not None:
            ids = None if replay == "all" else [int(replay)] if replay.isdigit() else None
            if ids is None and replay != "all":
                err_console.print("--replay takes a numeric id or 'all'")
                raise typer.Exit(2)
            with rt.db.transaction() as session:
                count = events.replay_dead(session, kind=replay_kind, ids=ids)
            console.print(f"re-queued {count} dead letter(s)")
            return
        w = rt.worker()
        if once:
            console.print(f"processed {w.drain()} item(s)")
            return
        heap.settle()  # start-up objects out of every later collection (kit/heap.py)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        w.run_forever(stop, rt.settings.worker_poll_seconds)


def demo(
    check: Annotated[
        bool, typer.Option("--check", help="Build the demo, verify it, exit (no server)")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Port to serve on")] = None,
) -> None:
    """Create (or reuse) the demo brand's database, then serve it and print the URL."""
    from seamline.demo import build_demo

    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    ok = build_demo(settings, console=console)
    if check:
        if not ok:
            err_console.print("[red]demo check failed[/red]")
            raise typer.Exit(1)
        console.print("[green]demo check passed[/green]")
        return
    if not ok:
        err_console.print("[yellow]the demo's S1 check failed; serving it anyway[/yellow]")
    console.print(f"Open the console: [bold]http://{settings.host}:{settings.port}/console/[/bold]")
    serve(host=None, port=port, no_worker=False, migrate_first=False)
