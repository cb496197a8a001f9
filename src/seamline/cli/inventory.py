"""``seamline inventory …``: stock at a glance, receipts, counts, adjustments, transfers,
hot-SKU splits, channel stock rules, pick-up near me, and ``verify``."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.bar import Bar
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.catalog.service import lookup_variant
from seamline.cli.common import console, err_console, runtime
from seamline.cli.registry import _validated
from seamline.inventory import availability, stock, transfers
from seamline.inventory import verify as verification
from seamline.inventory.models import Location
from seamline.inventory.schemas import (
    AdjustmentCreate,
    ChannelStockRuleSet,
    Coordinates,
    CountCreate,
    ReceiptCreate,
    TransferCreate,
    TransferOut,
    TransferReceive,
)
from seamline.inventory.service import find_location
from seamline.kit.errors import NotFound

inventory_app = typer.Typer(help="Stock levels, the movement ledger, transfers and reservations.")

Where = Annotated[str, typer.Argument(help="Location id or handle")]
What = Annotated[str, typer.Argument(help="Variant SKU, barcode or id")]


def _location(session: Session, value: str) -> str:
    found = session.scalar(select(Location.id).where(Location.handle == value))
    return found or find_location(session, value).id


def _variant(session: Session, value: str) -> str:
    try:
        return lookup_variant(session, value).variant.id
    except NotFound:
        from seamline.catalog.service import find_variant

        return find_variant(session, value).id


def _items(session: Session, values: list[str]) -> list[tuple[str, int]]:
    """``SKU`` or ``SKU:QTY`` arguments."""
    out = []
    for value in values:
        code, _, quantity = value.rpartition(":") if ":" in value else (value, "", "1")
        if not re.fullmatch(r"[1-9][0-9]{0,5}", quantity):
            err_console.print(f"[red]error[/red] {value!r}: quantity must be 1 … 999,999")
            raise typer.Exit(2)
        out.append((_variant(session, code), int(quantity)))
    return out


@inventory_app.command("stock")
def show_stock(what: What) -> None:
    """Stock of one variant at every location, drawn as bars (available | reserved)."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        view = stock.variant_stock(session, _variant(session, what))
        names = {
            loc.id: f"{loc.name} ({loc.kind})" for loc in session.scalars(select(Location)).all()
        }
    widest = max([x.on_hand + x.incoming for x in view.locations] + [1])
    table = Table("location", "stock", "available", "reserved", "incoming", title=what)
    for x in view.locations:
        table.add_row(
            names.get(x.location_id, x.location_id),
            Bar(widest, 0, x.available, width=30, color="green", bgcolor="grey23")
            if x.available
            else "",
            str(x.available),
            str(x.reserved),
            str(x.incoming),
        )
    console.print(table)
    console.print(
        f"total on hand {view.on_hand} · reserved {view.reserved} · available {view.available}"
        f" · in transit {view.in_transit} · buckets {view.buckets}"
    )


@inventory_app.command("receive")
def receive(
    where: Where,
    what: What,
    quantity: Annotated[int, typer.Argument(help="Units that arrived")],
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Units arrived at a location (a `receipt` movement)."""
    with runtime() as rt, rt.db.transaction() as session:
        data = _validated(
            ReceiptCreate,
            {
                "location_id": _location(session, where),
                "variant_id": _variant(session, what),
                "quantity": quantity,
                "reason": reason,
            },
        )
        level = stock.receive(session, data)
    console.print(f"[green]received[/green] on hand {level.on_hand}, available {level.available}")


@inventory_app.command("adjust")
def adjust(
    where: Where,
    what: What,
    kind: Annotated[str, typer.Argument(help="increase | decrease | damage | return")],
    quantity: Annotated[int, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (kept on the ledger)")],
) -> None:
    """Correct stock; removing units never touches reserved ones."""
    with runtime() as rt, rt.db.transaction() as session:
        data = _validated(
            AdjustmentCreate,
            {
                "location_id": _location(session, where),
                "variant_id": _variant(session, what),
                "kind": kind,
                "quantity": quantity,
                "reason": reason,
            },
        )
        level = stock.adjust(session, data)
    console.print(f"[green]adjusted[/green] on hand {level.on_hand}, available {level.available}")


@inventory_app.command("count")
def count(
    where: Where,
    what: What,
    expected: Annotated[int, typer.Option(help="On hand as you last saw it")],
    counted: Annotated[int, typer.Option(help="What is on the shelf now")],
) -> None:
    """Record a count; refused if on hand changed since you looked (compare-and-swap)."""
    with runtime() as rt, rt.db.transaction() as session:
        data = _validated(
            CountCreate,
            {
                "location_id": _location(session, where),
                "variant_id": _variant(session, what),
                "expected_on_hand": expected,
                "counted": counted,
            },
        )
        level = stock.count(session, data)
    console.print(f"[green]counted[/green] on hand {level.on_hand}")


def _show_transfer(t: TransferOut) -> None:
    lines = ", ".join(
        f"{x.variant_id} x {x.quantity}"
        + (f" (arrived {x.received_quantity})" if x.received_quantity is not None else "")
        for x in t.lines
    )
    console.print(f"{t.id} {t.status} {t.from_location_id} → {t.to_location_id}: {lines}")


@inventory_app.command("transfer")
def transfer(
    source: Annotated[str, typer.Argument(help="From: location id or handle")],
    target: Annotated[str, typer.Argument(help="To: location id or handle")],
    items: Annotated[list[str], typer.Argument(help="SKU:QTY (repeat)")],
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Send units to another location; they are in transit until `arrive`."""
    with runtime() as rt, rt.db.transaction() as session:
        data = _validated(
            TransferCreate,
            {
                "from_location_id": _location(session, source),
                "to_location_id": _location(session, target),
                "lines": [{"variant_id": v, "quantity": q} for v, q in _items(session, items)],
                "reason": reason,
            },
        )
        _show_transfer(transfers.create(session, data))


@inventory_app.command("arrive")
def arrive(
    transfer_id: Annotated[str, typer.Argument()],
    items: Annotated[
        list[str] | None, typer.Argument(help="SKU:QTY that arrived (default: all)")
    ] = None,
) -> None:
    """Receive a transfer at its destination (fewer than sent records a shortfall)."""
    with runtime() as rt, rt.db.transaction() as session:
        lines = (
            [{"variant_id": v, "quantity": q} for v, q in _items(session, items)] if items else None
        )
        _show_transfer(
            transfers.receive(session, transfer_id, _validated(TransferReceive, {"lines": lines}))
        )


@inventory_app.command("cancel-transfer")
def cancel_transfer(transfer_id: Annotated[str, typer.Argument()]) -> None:
    """Call an in-transit transfer back to its source."""
    with runtime() as rt, rt.db.transaction() as session:
        _show_transfer(transfers.cancel(session, transfer_id))


@inventory_app.command("transfers")
def list_transfers(
    location: Annotated[str | None, typer.Option(help="From or to this location")] = None,
    status: Annotated[str | None, typer.Option(help="in_transit | received | cancelled")] = None,
) -> None:
    """List transfers (oldest first)."""
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        where = _location(session, location) if location else None
        cursor = None
        while True:
            rows, cursor = transfers.list_transfers(
                session, location_id=where, status=status, cursor=cursor, limit=200
            )
            for t in rows:
                _show_transfer(t)
            if cursor is None:
                break


@inventory_app.command("split")
def split(
    what: What,
    buckets: Annotated[int, typer.Argument(help="Rows per location (1 turns splitting off)")],
) -> None:
    """Spread a hot SKU over several stock rows so concurrent holds do not queue."""
    with runtime() as rt, rt.db.transaction() as session:
        if not 1 <= buckets <= 64:
            err_console.print("[red]error[/red] buckets must be 1 … 64")
            raise typer.Exit(2)
        done = stock.split(session, _variant(session, what), buckets)
    console.print(f"[green]split[/green] {done.variant_id} into {done.buckets} bucket(s)")


@inventory_app.command("rule")
def rule(
    channel: Annotated[str, typer.Argument(help="Channel id")],
    keep_per_store: Annotated[int | None, typer.Option(help="Units left at each store")] = None,
    keep_per_warehouse: Annotated[int | None, typer.Option()] = None,
    share: Annotated[int | None, typer.Option(help="Max % of the stock it may sell")] = None,
    location: Annotated[
        list[str] | None, typer.Option(help="Sell only from these (repeat)")
    ] = None,
) -> None:
    """Show a channel's stock rule, or set it when options are given."""
    with runtime() as rt, rt.db.transaction() as session:
        current = availability.get_rule(session, channel)
        if any(v is not None for v in (keep_per_store, keep_per_warehouse, share, location)):
            data = _validated(
                ChannelStockRuleSet,
                {
                    "location_ids": [_location(session, x) for x in location]
                    if location
                    else current.location_ids,
                    "keep_per_store": current.keep_per_store
                    if keep_per_store is None
                    else keep_per_store,
                    "keep_per_warehouse": current.keep_per_warehouse
                    if keep_per_warehouse is None
                    else keep_per_warehouse,
                    "max_share_percent": current.max_share_percent if share is None else share,
                },
            )
            current = availability.set_rule(session, channel, data)
    console.print_json(current.model_dump_json())


@inventory_app.command("pickup")
def pickup(
    items: Annotated[list[str], typer.Argument(help="SKU or SKU:QTY (repeat)")],
    near: Annotated[str | None, typer.Option(help="LAT,LON")] = None,
    postcode: Annotated[str | None, typer.Option()] = None,
    country: Annotated[str | None, typer.Option(help="With --postcode, e.g. DE")] = None,
    limit: Annotated[int, typer.Option(min=1, max=50)] = 10,
) -> None:
    """Stores that can hand over every item now, nearest first, with today's hours."""
    origin = None
    if near:
        try:
            lat, lon = (float(x) for x in near.split(","))
        except ValueError:
            err_console.print("[red]error[/red] --near takes LAT,LON, e.g. 52.52,13.40")
            raise typer.Exit(2) from None
        origin = _validated(Coordinates, {"latitude": lat, "longitude": lon})
    with runtime() as rt, rt.db.transaction(readonly=True) as session:
        found = availability.pickup_near(
            session,
            _items(session, items),
            origin=origin,
            postcode=postcode,
            country=country.upper() if country else None,
            limit=limit,
        )
    table = Table("store", "km", "today", "open now", "available")
    for s in found.data:
        today = ", ".join(f"{i.open}-{i.close}" for i in s.today) or "closed"
        table.add_row(
            f"{s.name} ({s.city or s.postcode})",
            f"{s.distance_km:.1f}",
            today,
            "yes" if s.open_now else "no",
            ", ".join(f"{i.available}" for i in s.items),
        )
    console.print(table)


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
