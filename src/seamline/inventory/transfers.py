"""Transfers between locations: units leave the source (``transfer_out``), are in transit —
counted in no location's ``on_hand`` and shown as ``incoming`` at the destination — and arrive
(``transfer_in``), possibly fewer than were sent. A transfer still in transit can be cancelled:
its units go back on the source's shelf (``transfer_in`` at the source).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.service import find_variant
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.inventory import stock
from seamline.inventory.models import Transfer, TransferLine
from seamline.inventory.schemas import (
    TransferCreate,
    TransferLineOut,
    TransferOut,
    TransferReceive,
)
from seamline.inventory.service import find_location
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id


def _lines(session: Session, transfer_id: str) -> list[TransferLine]:
    return list(
        session.scalars(
            select(TransferLine)
            .where(TransferLine.transfer_id == transfer_id)
            .order_by(TransferLine.variant_id)
        ).all()
    )


def transfer_out(session: Session, transfer: Transfer) -> TransferOut:
    return TransferOut(
        id=transfer.id,
        from_location_id=transfer.from_location_id,
        to_location_id=transfer.to_location_id,
        status=transfer.status,
        reason=transfer.reason,
        reference=transfer.reference,
        lines=[
            TransferLineOut(
                variant_id=line.variant_id,
                quantity=line.quantity,
                received_quantity=line.received_quantity,
            )
            for line in _lines(session, transfer.id)
        ],
        created_at=transfer.created_at,
        updated_at=transfer.updated_at,
        received_at=transfer.received_at,
    )


def _emit(session: Session, transfer: Transfer, type_: str) -> None:
    emit(
        session,
        type_,
        aggregate_type="transfer",
        aggregate_id=transfer.id,
        payload=transfer_out(session, transfer).model_dump(mode="json"),
    )


def create(session: Session, data: TransferCreate, *, caller: Caller | None = None) -> TransferOut:
    """Send the units now: every line leaves the source or none does (409 if short)."""
    if data.from_location_id == data.to_location_id:
        raise Unprocessable(
            "a transfer needs two different locations",
            code="same_location",
            errors=[FieldError("body.to_location_id", "equals from_location_id", "same_location")],
        )
    seen: dict[str, int] = {}
    for i, line in enumerate(data.lines):
        if line.variant_id in seen:
            raise Unprocessable(
                f"variant {line.variant_id} is on lines {seen[line.variant_id]} and {i}",
                code="duplicate_line",
                errors=[FieldError(f"body.lines.{i}.variant_id", "repeated", "duplicate")],
            )
        seen[line.variant_id] = i
    find_location(session, data.from_location_id)
    find_location(session, data.to_location_id)
    if caller is not None:
        caller.require_location(data.from_location_id)
    for line in data.lines:
        find_variant(session, line.variant_id)
    transfer = Transfer(
        id=new_id("trf"),
        from_location_id=data.from_location_id,
        to_location_id=data.to_location_id,
        status="in_transit",
        reason=data.reason or "",
        reference=data.reference,
        actor=caller.key_id if caller is not None else None,
    )
    session.add(transfer)
    session.flush()
    for line in sorted(data.lines, key=lambda x: x.variant_id):  # the stock lock order
        session.add(
            TransferLine(
                transfer_id=transfer.id, variant_id=line.variant_id, quantity=line.quantity
            )
        )
        stock.move(
            session,
            data.from_location_id,
            line.variant_id,
            -line.quantity,
            kind="transfer_out",
            reason=data.reason,
            caller=caller,
            reference=transfer.id,
        )
    session.flush()
    _emit(session, transfer, "transfer.sent")
    return transfer_out(session, transfer)


def find_transfer(session: Session, transfer_id: str) -> Transfer:
    return get_or_404(session, Transfer, transfer_id, what="transfer", code="transfer_not_found")


def get(session: Session, transfer_id: str) -> TransferOut:
    return transfer_out(session, find_transfer(session, transfer_id))


def _settle(session: Session, transfer_id: str, status: str) -> Transfer:
    """Move an in-transit transfer to ``status`` (conditional: only one caller wins)."""
    moved = session.execute(
        update(Transfer)
        .where(Transfer.id == transfer_id, Transfer.status == "in_transit")
        .values(
            status=status,
            updated_at=clock.now(),
            received_at=clock.now() if status == "received" else None,
        )
        .returning(Transfer.id)
    ).first()
    transfer = session.get(Transfer, transfer_id, populate_existing=True)
    if transfer is None:
        find_transfer(session, transfer_id)  # raises the 404
        raise AssertionError("unreachable")
    if moved is None:
        raise Conflict(f"transfer {transfer_id} is {transfer.status}", code="transfer_settled")
    return transfer


def receive(
    session: Session,
    transfer_id: str,
    data: TransferReceive,
    *,
    caller: Caller | None = None,
) -> TransferOut:
    """The units arrived at the destination (``transfer_in``); fewer than sent is a shortfall."""
    transfer = find_transfer(session, transfer_id)
    if caller is not None:
        caller.require_location(transfer.to_location_id)
    lines = _lines(session, transfer.id)
    arrived = {line.variant_id: line.quantity for line in lines}
    if data.lines is not None:
        sent = dict(arrived)
        arrived = dict.fromkeys(arrived, 0)
        named: set[str] = set()
        for i, got in enumerate(data.lines):
            if got.variant_id in named:
                raise Unprocessable(
                    f"variant {got.variant_id} is on two lines",
                    code="duplicate_line",
                    errors=[FieldError(f"body.lines.{i}.variant_id", "repeated", "duplicate")],
                )
            named.add(got.variant_id)
            if got.variant_id not in sent:
                raise Unprocessable(
                    f"variant {got.variant_id} is not on transfer {transfer.id}",
                    code="not_on_transfer",
                    errors=[FieldError(f"body.lines.{i}.variant_id", "not sent", "unknown")],
                )
            if got.quantity > sent[got.variant_id]:
                raise Unprocessable(
                    f"{got.quantity} received but {sent[got.variant_id]} sent",
                    code="more_than_sent",
                    errors=[FieldError(f"body.lines.{i}.quantity", "more than sent", "too_many")],
                )
            arrived[got.variant_id] = got.quantity
    transfer = _settle(session, transfer.id, "received")
    for line in lines:
        line.received_quantity = arrived[line.variant_id]
        if line.received_quantity:
            stock.move(
                session,
                transfer.to_location_id,
                line.variant_id,
                line.received_quantity,
                kind="transfer_in",
                reason=transfer.reason,
                caller=caller,
                reference=transfer.id,
            )
    session.flush()
    _emit(session, transfer, "transfer.received")
    return transfer_out(session, transfer)


def cancel(session: Session, transfer_id: str, *, caller: Caller | None = None) -> TransferOut:
    """Call a transfer back: its units return to the source's shelf."""
    transfer = find_transfer(session, transfer_id)
    if caller is not None:
        caller.require_location(transfer.from_location_id)
    transfer = _settle(session, transfer.id, "cancelled")
    for line in _lines(session, transfer.id):
        stock.move(
            session,
            transfer.from_location_id,
            line.variant_id,
            line.quantity,
            kind="transfer_in",
            reason="transfer cancelled",
            caller=caller,
            reference=transfer.id,
        )
    _emit(session, transfer, "transfer.cancelled")
    return transfer_out(session, transfer)


def list_transfers(
    session: Session,
    *,
    location_id: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[TransferOut], str | None]:
    stmt = select(Transfer)
    if location_id:
        stmt = stmt.where(
            (Transfer.from_location_id == location_id) | (Transfer.to_location_id == location_id)
        )
    if status:
        stmt = stmt.where(Transfer.status == status)
    rows, next_cursor = keyset_page(session, stmt, Transfer.id, after=cursor, limit=limit)
    return [transfer_out(session, t) for t in rows], next_cursor
