"""The demo brand (a home-fitness retailer). For now: its channels and a key; the console issue
fills in catalog, stores, customers and story S1."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seamline.auth import service as keys
from seamline.channels import service as channels
from seamline.channels.schemas import ChannelCreate
from seamline.db import migrate
from seamline.events import service as events
from seamline.runtime import build_runtime
from seamline.settings import Settings

BRAND = "Kettle & Kin"
DEMO_CHANNELS: list[dict[str, str]] = [
    {"kind": "web", "handle": "web", "name": f"{BRAND} web store"},
    {"kind": "app", "handle": "app", "name": f"{BRAND} app"},
    {"kind": "marketplace", "handle": "marketplace", "name": "Marketplace listing"},
    {"kind": "social", "handle": "instagram", "name": "Instagram"},
    {"kind": "store", "handle": "store-soho", "name": "Soho store"},
    {"kind": "store", "handle": "store-brooklyn", "name": "Brooklyn store"},
    {"kind": "store", "handle": "store-jersey-city", "name": "Jersey City store"},
    {"kind": "email", "handle": "email", "name": "Email"},
    {"kind": "sms", "handle": "sms", "name": "SMS"},
    {"kind": "push", "handle": "push", "name": "App push"},
    {"kind": "phone", "handle": "phone", "name": "Advisor line"},
    {"kind": "chat", "handle": "chat", "name": "Web chat"},
]


def build_demo(settings: Settings, *, console: Console) -> bool:
    """Create or reuse the demo data; returns whether its end state holds."""
    rt = build_runtime(settings)
    try:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("Migrating database", total=1)
            migrate.upgrade(rt.db)
            progress.advance(task)
            task = progress.add_task("Creating channels", total=len(DEMO_CHANNELS))
            with rt.db.transaction() as session:
                wanted = [ChannelCreate.model_validate(spec) for spec in DEMO_CHANNELS]
                channels.ensure_channels(session, wanted)
                progress.advance(task, len(wanted))
            task = progress.add_task("Delivering events", total=None)
            rt.worker().drain()
            progress.update(task, total=1, completed=1)
        with rt.db.transaction() as session:
            _, token = keys.replace_named_key(session, name="demo")
        with rt.db.transaction(readonly=True) as session:
            handles = channels.existing_handles(session)
            undelivered = events.undelivered_count(session)
        table = Table("channel", "kind", title=f"{BRAND} — demo channels")
        for spec in DEMO_CHANNELS:
            table.add_row(spec["name"], spec["kind"])
        console.print(table)
        console.print(f"Demo API key (secret, all scopes): [bold]{token}[/bold]")
        ok = {c["handle"] for c in DEMO_CHANNELS} <= handles and undelivered == 0
        return ok
    finally:
        rt.close()
