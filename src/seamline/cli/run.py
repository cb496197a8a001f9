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
    app = create_app(settings, embedded_worker=not no_worker, runtime=rt)
    bind_host, bind_port = host or settings.host, port or settings.port
    console.print(f"Seamline listening on [bold]http://{bind_host}:{bind_port}/[/bold]")
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", access_log=False)
    finally:
        rt.close()


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
    ok = build_demo(settings, console=console)
    if check:
        if not ok:
            err_console.print("[red]demo check failed[/red]")
            raise typer.Exit(1)
        console.print("[green]demo check passed[/green]")
        return
    serve(host=None, port=port, no_worker=False, migrate_first=False)
