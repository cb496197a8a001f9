"""``seamline channels …`` and ``seamline webhooks …``: the registries an operator sets up first."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from seamline.channels import service as channels
from seamline.channels.schemas import ChannelCreate
from seamline.cli.common import console, err_console, runtime
from seamline.events import service as events
from seamline.events.schemas import WebhookEndpointCreate, WebhookEndpointUpdate

M = TypeVar("M", bound=BaseModel)

channels_app = typer.Typer(help="The channel registry.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Outbound webhook endpoints.", no_args_is_help=True)


def _validated(model: type[M], data: dict[str, Any]) -> M:
    """Validate CLI input like the API does; print field errors (no traceback) and exit 2."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err_console.print("[red]error[/red] validation_failed: the input has invalid fields")
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "input"
            err_console.print(f"  {where}: {error['msg']}")
        raise typer.Exit(2) from exc


@channels_app.command("create")
def channel_create(
    kind: Annotated[
        str, typer.Argument(help="web|app|store|marketplace|social|email|sms|push|phone|chat")
    ],
    handle: Annotated[str, typer.Argument(help="Unique slug, e.g. web-eu")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    location: Annotated[str | None, typer.Option(help="Store location id")] = None,
) -> None:
    """Register a channel."""
    data = _validated(
        ChannelCreate,
        {"kind": kind, "handle": handle, "name": name or handle, "location_id": location},
    )
    with runtime() as rt, rt.db.transaction() as session:
        channel = channels.create_channel(session, data)
        console.print(f"[green]created[/green] {channel.id} {channel.kind} {channel.handle}")


@channels_app.command("list")
def channel_list(kind: Annotated[str | None, typer.Option(help="Only this kind")] = None) -> None:
    """List channels."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        table = Table("id", "kind", "handle", "name", "location", "active")
        cursor = None
        while True:
            rows, cursor = channels.list_channels(session, kind=kind, cursor=cursor, limit=200)
            for c in rows:
                table.add_row(c.id, c.kind, c.handle, c.name, c.location_id or "", str(c.active))
            if cursor is None:
                break
        console.print(table)


@webhooks_app.command("create")
def webhook_create(
    url: Annotated[str, typer.Argument(help="HTTPS URL that receives POSTs")],
    event: Annotated[list[str], typer.Option("--event", "-e", help="Event type pattern (repeat)")],
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Subscribe an endpoint; prints its signing secret once."""
    data = _validated(
        WebhookEndpointCreate, {"url": url, "event_types": event, "description": description}
    )
    with runtime() as rt, rt.db.transaction() as session:
        endpoint, secret = events.create_endpoint(session, data, box=rt.box)
        console.print(f"[green]created[/green] {endpoint.id} -> {endpoint.url}")
    console.print("signing secret (shown once):")
    typer.echo(secret)


@webhooks_app.command("list")
def webhook_list() -> None:
    """List endpoints and their state."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        table = Table("id", "url", "events", "status")
        for e in events.list_endpoints(session):
            status = e.status + (f" ({e.disabled_reason})" if e.disabled_reason else "")
            table.add_row(e.id, e.url, ", ".join(e.event_types), status)
        console.print(table)


@webhooks_app.command("rotate")
def webhook_rotate(endpoint_id: str) -> None:
    """New signing secret; the old one stays valid for 24 hours."""
    with runtime() as rt, rt.db.transaction() as session:
        endpoint, secret = events.rotate_secret(session, endpoint_id, box=rt.box)
        console.print(f"[green]rotated[/green] {endpoint.id}; new secret (shown once):")
    typer.echo(secret)


@webhooks_app.command("enable")
def webhook_enable(endpoint_id: str) -> None:
    """Re-enable an endpoint (after fixing the receiver); replay its dead letters afterwards."""
    data = WebhookEndpointUpdate(status="enabled")
    with runtime() as rt, rt.db.transaction() as session:
        endpoint = events.update_endpoint(session, endpoint_id, data)
        console.print(f"[green]enabled[/green] {endpoint.id} -> {endpoint.url}")
    console.print("replay what died meanwhile: seamline worker --dead, then --replay")


@webhooks_app.command("attempts")
def webhook_attempts(endpoint_id: str, limit: int = 20) -> None:
    """The latest delivery attempts to an endpoint."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        rows, _ = events.list_attempts(session, endpoint_id, limit=limit)
        table = Table("when", "event", "type", "try", "result", "ms", "next retry")
        for a in rows:
            result = (
                f"[green]{a.status_code}[/green]"
                if a.ok
                else f"[red]{a.status_code or a.error}[/red]"
            )
            table.add_row(
                a.attempted_at.isoformat(timespec="seconds"),
                a.event_id,
                a.event_type,
                str(a.attempt),
                result,
                str(a.duration_ms),
                a.next_retry_at.isoformat(timespec="seconds") if a.next_retry_at else "",
            )
        console.print(table)
