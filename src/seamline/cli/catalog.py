"""``seamline catalog import|export`` and ``seamline locations create|list``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seamline.catalog import imports
from seamline.cli.common import console, err_console, runtime
from seamline.cli.registry import _validated
from seamline.inventory import service as locations
from seamline.inventory.schemas import LocationCreate
from seamline.kit.errors import FieldError

catalog_app = typer.Typer(help="Products, variants and prices: CSV import and export.")
locations_app = typer.Typer(help="Warehouses and stores.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@catalog_app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="CSV file, one row per variant")]) -> None:
    """Import a CSV all or nothing: a bad row imports nothing and lists every problem."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err_console.print(f"[red]error[/red] cannot read {file}: {exc}")
        raise typer.Exit(1) from exc
    parsed = imports.parse(text)  # validate before opening a write transaction
    if parsed.errors:
        _report(parsed.errors)
        raise typer.Exit(1)
    with runtime() as rt, _progress() as bar, rt.db.transaction() as session:
        task = bar.add_task(f"importing {file.name}", total=len(parsed.rows))
        report = imports.import_csv(session, text, progress=lambda n: bar.advance(task, n))
    console.print(
        f"[green]imported[/green] {report.rows} rows: products {report.products_created} new, "
        f"{report.products_updated} changed; variants {report.variants_created} new, "
        f"{report.variants_updated} changed"
    )


def _report(errors: list[FieldError]) -> None:
    err_console.print(f"[red]error[/red] {len(errors)} problem(s); nothing was imported")
    table = Table("line", "column", "problem")
    for e in errors[: imports.MAX_REPORTED_ERRORS]:
        _, line, column = e.path.split(".", 2)
        table.add_row(line, column, e.message)
    err_console.print(table)


@catalog_app.command("export")
def export(file: Annotated[Path, typer.Argument(help="Where to write the CSV")]) -> None:
    """Write the whole catalog as CSV, in the format ``catalog import`` reads."""
    with (
        runtime() as rt,
        rt.db.transaction(readonly=True) as session,
        file.open("w", encoding="utf-8", newline="") as out,
    ):
        rows = imports.export_csv(session, out)
    console.print(f"[green]exported[/green] {rows} rows to {file}")


@locations_app.command("create")
def location_create(
    kind: Annotated[str, typer.Argument(help="warehouse | store")],
    handle: Annotated[str, typer.Argument(help="Unique slug, e.g. berlin-mitte")],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2, e.g. DE")],
    time_zone: Annotated[str, typer.Option(help="IANA zone, e.g. Europe/Berlin")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    postcode: Annotated[str | None, typer.Option()] = None,
    city: Annotated[str | None, typer.Option()] = None,
    channel: Annotated[str | None, typer.Option(help="Store channel id to link")] = None,
    latitude: Annotated[float | None, typer.Option(help="With --longitude")] = None,
    longitude: Annotated[float | None, typer.Option()] = None,
    ships: Annotated[bool, typer.Option(help="Ships orders")] = False,
    pickup: Annotated[bool, typer.Option(help="Offers pick-up")] = False,
    returns: Annotated[bool, typer.Option(help="Takes returns")] = False,
    sells_in_person: Annotated[bool, typer.Option(help="Sells over the counter")] = False,
) -> None:
    """Register a warehouse or store."""
    data = _validated(
        LocationCreate,
        {
            "kind": kind,
            "handle": handle,
            "name": name or handle,
            "country": country,
            "time_zone": time_zone,
            "postcode": postcode,
            "city": city,
            "channel_id": channel,
            "coordinates": {"latitude": latitude, "longitude": longitude}
            if latitude is not None or longitude is not None
            else None,
            "ships": ships,
            "pickup": pickup,
            "returns": returns,
            "sells_in_person": sells_in_person,
        },
    )
    with runtime() as rt, rt.db.transaction() as session:
        location = locations.create_location(session, data)
        console.print(f"[green]created[/green] {location.id} {location.kind} {location.handle}")


@locations_app.command("list")
def location_list() -> None:
    """List locations."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        table = Table("id", "kind", "handle", "name", "country", "time zone", "channel")
        cursor = None
        while True:
            rows, cursor = locations.list_locations(session, cursor=cursor, limit=200)
            for r in rows:
                table.add_row(
                    r.id, r.kind, r.handle, r.name, r.country, r.time_zone, r.channel_id or ""
                )
            if cursor is None:
                break
        console.print(table)


@locations_app.command("postcodes")
def postcodes_import(
    file: Annotated[Path, typer.Argument(help="GeoNames postal-code file (tab-separated)")],
) -> None:
    """Load postcode centroids for "pick up near me"; a bad line imports nothing."""
    from seamline.inventory import postcodes

    if not file.is_file():
        err_console.print(f"[red]error[/red] no such file: {file}")
        raise typer.Exit(2)
    with file.open("rb") as raw:
        lines = sum(1 for _ in raw)
    with runtime() as rt, rt.db.transaction() as session, _progress() as bar:
        task = bar.add_task("postcodes", total=lines)
        written, problems = postcodes.import_geonames(
            session, file, advance=lambda n: bar.advance(task, n)
        )
        if problems:
            for number, problem in problems[:50]:
                err_console.print(f"  line {number}: {problem}")
            err_console.print(f"[red]error[/red] {len(problems)} bad line(s); nothing imported")
            raise typer.Exit(1)
    console.print(f"[green]imported[/green] {written} postcode centroid(s)")
