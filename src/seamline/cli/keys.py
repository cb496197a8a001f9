"""``seamline keys create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from seamline.auth import service
from seamline.cli.common import console, runtime

app = typer.Typer(
    help="API keys: secret (sk_), publishable (pk_), event write (ek_).", no_args_is_help=True
)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for")] = "default",
    kind: Annotated[str, typer.Option(help="secret | publishable | event")] = "secret",
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="Repeat; default: all the kind allows")
    ] = None,
    location: Annotated[
        list[str] | None, typer.Option("--location", help="Limit to these locations (repeat)")
    ] = None,
) -> None:
    """Create a key. The token is printed once and cannot be shown again."""
    with runtime() as rt, rt.db.transaction() as session:
        key, token = service.create_key(
            session, kind=kind, name=name, scopes=scope, location_ids=location
        )
        console.print(
            f"[green]created[/green] {key.id} ({key.kind}) scopes: {', '.join(key.scopes)}"
        )
    console.print("token (shown once):")
    typer.echo(token)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
) -> None:
    """List keys (never their tokens)."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        table = Table("id", "kind", "name", "prefix", "scopes", "last used", "revoked")
        for key in service.list_keys(session, include_revoked=all_):
            table.add_row(
                key.id,
                key.kind,
                key.name,
                key.token_prefix + "…",
                ", ".join(key.scopes),
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never",
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
            )
        console.print(table)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id (key_…)")]) -> None:
    """Revoke a key at once; requests with it get 401 from now on."""
    with runtime() as rt, rt.db.transaction() as session:
        key = service.revoke_key(session, key_id)
        console.print(f"[yellow]revoked[/yellow] {key.id}")
