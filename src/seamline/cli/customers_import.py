"""``seamline customers import FILE``: customers from a CSV, all rows or none."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seamline.cli.common import console, err_console, runtime
from seamline.cli.customers import customers_app, identity_app
from seamline.identity import customers_import
from seamline.kit.errors import FieldError, Unprocessable

__all__ = ["customers_app", "identity_app"]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


def _report(errors: list[FieldError]) -> None:
    err_console.print(f"[red]error[/red] {len(errors)} problem(s); nothing was imported")
    table = Table("row", "column", "problem")
    for e in errors[: customers_import.MAX_REPORTED_ERRORS]:
        _, row, column = e.path.split(".", 2)
        table.add_row(row, column, e.message)
    err_console.print(table)
    if len(errors) > customers_import.MAX_REPORTED_ERRORS:
        err_console.print(f"… and {len(errors) - customers_import.MAX_REPORTED_ERRORS} more")


@customers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV file, one row per customer")],
    source: Annotated[
        str | None,
        typer.Option(help="System the file comes from (external ids, trait source)"),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Country for phone numbers of rows without one, e.g. GB")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Check the file; write nothing")] = False,
) -> None:
    """Import customers from a CSV all or nothing: a bad row imports nothing and lists every
    problem by row and column. Importing the same file again creates nothing new."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err_console.print(f"[red]error[/red] cannot read {file}: {exc}")
        raise typer.Exit(1) from exc
    with err_console.status(f"checking {file.name}"):
        parsed = customers_import.parse(text, source=source, region=region)
    if parsed.errors:
        _report(parsed.errors)
        raise typer.Exit(1)
    with runtime() as rt:
        try:
            with _progress() as bar, rt.db.transaction() as session:
                task = bar.add_task(f"importing {file.name}", total=len(parsed.rows))
                report = customers_import.import_rows(
                    session,
                    parsed,
                    name=file.name,
                    dry_run=dry_run,
                    progress=lambda n: bar.advance(task, n),
                )
        except Unprocessable as exc:  # rows that clash with the database
            _report(exc.errors)
            raise typer.Exit(1) from exc
    verb = "checked (dry run)" if dry_run else "imported"
    console.print(
        f"[green]{verb}[/green] {report.rows} rows: {report.profiles_created} new customers, "
        f"{report.identifiers_created} new identifiers, {report.identifiers_known} already "
        f"known, {report.traits_recorded} traits recorded, {report.rows_linked} rows joined "
        f"existing customers ({report.merges} merges)"
    )
