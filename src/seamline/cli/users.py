"""``seamline users create|list|disable|set-password``: staff accounts for the web console."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from seamline.cli.common import console, err_console, runtime
from seamline.kit import clock
from seamline.kit.errors import NotFound
from seamline.staff import service
from seamline.staff.models import StaffUser
from seamline.staff.roles import ROLE_LABELS, ROLES

app = typer.Typer(help="Staff users who sign in to the web console.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice without echo."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            err_console.print("[red]error[/red] no password on stdin")
            raise typer.Exit(1)
        return line
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


def _user(session: Session, email: str) -> StaffUser:
    user = service.find_user_by_email(session, email)
    if user is None:
        raise NotFound(f"no staff user with email {email}", code="staff_user_not_found")
    return user


@app.command("create")
def create(
    email: Annotated[str, typer.Option(help="Sign-in email address")],
    name: Annotated[str, typer.Option(help="The person's name")],
    role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
    location: Annotated[
        list[str] | None,
        typer.Option("--location", help="A store an associate works at (repeat)"),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create a staff user. Without --password-stdin the password is asked for twice."""
    password = _read_password(password_stdin)
    with runtime() as rt, rt.db.transaction() as session:
        user = service.create_user(
            session,
            email=email,
            name=name,
            role=role,
            password=password,
            location_ids=location or (),
        )
        where = f" at {', '.join(user.location_ids)}" if user.location_ids else ""
        console.print(
            f"[green]created[/green] {user.id} {user.email} ({ROLE_LABELS[user.role]}){where}"
        )


@app.command("list")
def list_() -> None:
    """List staff users (never their passwords)."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        table = Table("id", "email", "name", "role", "locations", "last sign-in", "status")
        for user in service.list_users(session):
            if user.disabled_at is not None:
                status = "[red]disabled[/red]"
            elif user.locked_until is not None and user.locked_until > clock.now():
                status = "[yellow]locked[/yellow]"
            else:
                status = "active"
            table.add_row(
                user.id,
                user.email,
                user.name,
                ROLE_LABELS.get(user.role, user.role),
                ", ".join(user.location_ids),
                user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never",
                status,
            )
        console.print(table)


@app.command("disable")
def disable(email: Annotated[str, typer.Argument(help="The user's email address")]) -> None:
    """Disable a user: they cannot sign in and their sessions end at once."""
    with runtime() as rt, rt.db.transaction() as session:
        user = _user(session, email)
        service.disable_user(session, user.id)
        console.print(f"[yellow]disabled[/yellow] {user.id} {user.email}")


@app.command("set-password")
def set_password(
    email: Annotated[str, typer.Argument(help="The user's email address")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Set a new password; lifts a lock-out and signs the user out everywhere."""
    password = _read_password(password_stdin)
    with runtime() as rt, rt.db.transaction() as session:
        user = _user(session, email)
        service.set_password(session, user.id, password)
        console.print(f"[green]password set[/green] for {user.id} {user.email}")
