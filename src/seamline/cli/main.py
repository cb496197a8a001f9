"""Entry point: ``seamline serve|worker|db|keys|users|channels|webhooks|catalog|inventory|…``."""

from __future__ import annotations

from typing import Annotated

import typer

from seamline import __version__
from seamline.cli import bench as bench_cli
from seamline.cli import catalog as catalog_cli
from seamline.cli import customers as customers_cli
from seamline.cli import customers_import, customers_privacy, identity_rebuild
from seamline.cli import db as db_cli
from seamline.cli import inventory as inventory_cli
from seamline.cli import keys as keys_cli
from seamline.cli import registry as registry_cli
from seamline.cli import run as run_cli
from seamline.cli import users as users_cli

app = typer.Typer(
    name="seamline",
    help="Seamline: one backend that makes every channel act as one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db_cli.app, name="db")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(users_cli.app, name="users")
app.add_typer(registry_cli.channels_app, name="channels")
app.add_typer(registry_cli.webhooks_app, name="webhooks")
app.add_typer(catalog_cli.catalog_app, name="catalog")
app.add_typer(catalog_cli.locations_app, name="locations")
app.add_typer(inventory_cli.inventory_app, name="inventory")
app.add_typer(customers_cli.customers_app, name="customers")
app.add_typer(customers_cli.identity_app, name="identity")
app.command("serve")(run_cli.serve)
app.command("worker")(run_cli.worker)
app.command("demo")(run_cli.demo)
app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    bench_cli.bench
)

# Modules that add commands to the groups above when imported.
_COMMAND_MODULES = (customers_import, customers_privacy, identity_rebuild)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seamline {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Seamline command line. Settings come from SEAMLINE_* environment variables."""
