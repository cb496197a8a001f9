"""``seamline customers export|erase``: privacy requests from the command line.

The same services as the API (identity/privacy.py); the request is logged with
``requested_by = "cli:<operating-system user>"``. Exit codes: 0 done, 1 refused (unknown
profile, an existing output file, a declined confirmation), 2 invalid input.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from seamline.cli.common import console, err_console, runtime
from seamline.cli.customers import customers_app, identity_app
from seamline.cli.registry import _validated
from seamline.identity import privacy
from seamline.identity.erasure import Progress as Step
from seamline.identity.erasure import chunks
from seamline.identity.models import Identifier, TrackedEvent
from seamline.identity.privacy_schemas import EraseIn
from seamline.identity.profiles import cluster_members, get_profile

__all__ = ["customers_app", "identity_app"]


def requester() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"[:80]


@contextmanager
def _steps(description: str, steps: tuple[str, ...]) -> Iterator[Step]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=not err_console.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=len(steps))

        def advance(step: str) -> None:
            bar.update(task, advance=1, description=f"{description}: {step}")

        yield advance


def _open_private(path: Path, *, force: bool) -> int:
    """A new file only its owner can read (an export is personal data)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        err_console.print(f"[red]error[/red] {path} exists (use --force to overwrite)")
        raise typer.Exit(1) from None
    except OSError as exc:
        err_console.print(f"[red]error[/red] cannot write {path}: {exc.strerror}")
        raise typer.Exit(1) from exc
    if force:
        os.chmod(path, 0o600)
    return fd


@customers_app.command("export")
def export(
    profile_id: Annotated[str, typer.Argument(help="Any profile of the customer's cluster")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the JSON here (mode 600) instead of stdout"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output file")] = False,
) -> None:
    """Export everything stored about a customer as one JSON document (a logged request)."""
    fd = _open_private(output, force=force) if output is not None else None
    try:
        with (
            runtime() as rt,
            _steps("exporting", privacy.EXPORT_STEPS) as step,
            rt.db.transaction() as session,
        ):
            done = privacy.export(session, profile_id, by=requester(), progress=step)
    except BaseException:
        if fd is not None and output is not None:
            os.close(fd)
            output.unlink(missing_ok=True)
        raise
    text = json.dumps(done.document, ensure_ascii=False, indent=2) + "\n"
    if fd is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    counts = ", ".join(
        f"{len(done.document[k])} {k}" for k in ("profiles", "identifiers", "events", "orders")
    )
    err_console.print(
        f"[green]exported[/green] {done.document['cluster_id']} ({counts})"
        + (f" to {output}" if output is not None else "")
        + f"; logged as {done.request_id}"
    )


@customers_app.command("erase")
def erase(
    profile_id: Annotated[str, typer.Argument(help="Any profile of the customer's cluster")],
    reason: Annotated[str, typer.Option(help="Why, for the log (no personal data: it is kept)")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase a customer's whole cluster: personal data removed, orders' financial facts kept,
    erased identifiers suppressed. Cannot be undone."""
    body = _validated(EraseIn, {"reason": reason})
    with runtime() as rt:
        if not yes:
            with rt.db.transaction(readonly=True) as session:
                profile = get_profile(session, profile_id)
                members = cluster_members(session, profile.cluster_id)
                identifiers = events = 0
                for chunk in chunks(members):
                    identifiers += (
                        session.scalar(select(func.count()).where(Identifier.profile_id.in_(chunk)))
                        or 0
                    )
                    events += (
                        session.scalar(
                            select(func.count()).where(TrackedEvent.profile_id.in_(chunk))
                        )
                        or 0
                    )
            console.print(
                f"Erase cluster {profile.cluster_id}: {len(members)} profile(s), "
                f"{identifiers} identifier(s), {events} tracked event(s)."
            )
            if not typer.confirm("This cannot be undone. Erase?", default=False):
                err_console.print("not erased")
                raise typer.Exit(1)
        with (
            _steps("erasing", privacy.ERASE_STEPS) as step,
            rt.db.transaction() as session,
        ):
            done = privacy.erase(
                session,
                profile_id,
                reason=body.reason,
                by=requester(),
                box=rt.box,
                progress=step,
            )
    again = " (again)" if done.previously_erased else ""
    console.print(
        f"[green]erased[/green]{again} {done.cluster_id}: {len(done.profile_ids)} profile(s), "
        f"{done.summary.get('identifiers', 0)} identifier(s) deleted, "
        f"{done.summary.get('events_blanked', 0)} event(s) blanked, "
        f"{done.summary.get('orders_kept', 0)} order(s) kept; logged as {done.request_id}"
    )
