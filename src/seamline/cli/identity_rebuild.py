"""``seamline identity rebuild``: recompute every cluster from the identity graph."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from seamline.cli.common import console, err_console, runtime
from seamline.cli.customers import identity_app
from seamline.identity import rebuild as service


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@identity_app.command("rebuild")
def rebuild(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Report how many profiles would change; write nothing."),
    ] = False,
) -> None:
    """Recompute every profile's cluster from the identifiers and their links.

    Applies the resolution rule to the whole graph and writes only the differences (cluster
    ids, link decisions, merge pointers of the clusters that change). Holds the identity graph
    lock on PostgreSQL while it runs.
    """
    with runtime() as rt, _progress() as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        # A dry run rolls back: the temporary tables and nothing else ever existed.
        with rt.db.transaction() as session:
            report = service.rebuild(session, dry_run=dry_run, progress=progress)
            if dry_run:
                session.rollback()
    table = Table("measure", "count", title="identity rebuild" + (" (dry run)" if dry_run else ""))
    for name, value in (
        ("profiles", report.profiles),
        ("identifiers", report.identifiers),
        ("links", report.links),
        ("clusters", report.clusters),
        ("refused links", report.refused_links),
        (
            "profiles whose cluster " + ("would change" if dry_run else "changed"),
            report.changed_profiles,
        ),
        ("link decisions " + ("to change" if dry_run else "changed"), report.changed_links),
    ):
        table.add_row(name, f"{value:,}")
    if not dry_run:
        table.add_row("merge pointers added", f"{report.merges_added:,}")
        table.add_row("merge pointers undone", f"{report.merges_undone:,}")
    console.print(table)
    for profile_id, old, new in report.examples:
        console.print(f"  {profile_id}: {old} → {new}")
    seconds = sum(report.seconds.values())
    verb = "would change" if dry_run else "changed"
    console.print(
        f"[green]rebuilt[/green] {report.clusters:,} clusters in {seconds:.1f} s; "
        f"{report.changed_profiles:,} profiles {verb}"
    )
