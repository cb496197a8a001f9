"""``seamline inventory verify``: prove every stock row agrees with its ledger and its holds."""

from __future__ import annotations

import typer
from rich.table import Table

from seamline.cli.common import console, err_console, runtime
from seamline.inventory import verify as verification

inventory_app = typer.Typer(help="Stock levels, the movement ledger and reservations.")


@inventory_app.command("verify")
def verify() -> None:
    """Recompute on_hand from the ledger and reserved from held reservations; exit 1 on drift."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        problems = verification.verify(session)
    if not problems:
        console.print("[green]ok[/green] every stock row matches its ledger and its holds")
        return
    table = Table("location", "variant", "on_hand", "ledger", "reserved", "held")
    for p in problems:
        table.add_row(
            p["location_id"],
            p["variant_id"],
            str(p["on_hand"]),
            str(p["ledger_on_hand"]),
            str(p["reserved"]),
            str(p["held_reserved"]),
        )
    err_console.print(f"[red]mismatch[/red] {len(problems)} stock row(s) disagree")
    err_console.print(table)
    raise typer.Exit(1)
