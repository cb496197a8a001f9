"""``seamline db upgrade|current|downgrade``."""

from __future__ import annotations

from typing import Annotated

import typer

from seamline.cli.common import console, runtime
from seamline.db import migrate

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    with runtime() as rt, console.status("Migrating…"):
        migrate.upgrade(rt.db, revision)
        console.print(f"[green]database at[/green] {migrate.current(rt.db)}")


@app.command("current")
def current() -> None:
    """Show the database's revision and the latest available."""
    with runtime() as rt:
        now, head = migrate.current(rt.db), migrate.head(rt.db)
        state = "[green]up to date[/green]" if now == head else "[yellow]behind[/yellow]"
        console.print(f"current: {now or '(empty)'}  head: {head}  {state}")


@app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")],
) -> None:
    """Revert migrations down to REVISION."""
    with runtime() as rt, console.status("Reverting…"):
        migrate.downgrade(rt.db, revision)
        console.print(f"database at {migrate.current(rt.db) or '(empty)'}")
