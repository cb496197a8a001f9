"""Stock at a location: receive, count (compare-and-swap), adjust with a reason, transfer, receive
an incoming transfer, and the movement ledger.

Roles are checked first (``inventory:read`` to look, ``inventory:write`` to change); where a
member may act is decided by the inventory services, which get ``caller=user.caller``: a store
associate acting at another store is refused there (403 ``location_out_of_scope``) and nothing is
written. A refused form comes back to its page with the reason on top (console/app.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from seamline.auth.service import Caller
from seamline.kit.errors import FieldError, NotFound, Unprocessable

from . import inventory_actions as actions
from .customers import require
from .forms import ALREADY_DONE, first_submit
from .security import Staff, db_of
from .web import PREFIX, redirect, render

router = APIRouter()

LEDGER_PAGE = 25
MAX_QUANTITY = 1_000_000

Quantity = Annotated[int, Form(ge=1, le=MAX_QUANTITY)]
Code = Annotated[str, Form(max_length=64)]
Reason = Annotated[str, Form(max_length=200)]
FormKey = Annotated[str, Form(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")]
Id = Annotated[str, Form(max_length=40)]


def _here(location_id: str) -> str:
    return f"{PREFIX}/inventory/{location_id}"


def _variant_of(session: Session, code: str, variant_id: str, caller: Caller) -> str:
    """The variant a form names: a scanned or typed SKU/barcode, or a hidden variant id."""
    from seamline.catalog.service import find_variant, lookup_variant

    if variant_id:
        return find_variant(session, variant_id).id
    code = code.strip()
    if not code:
        raise Unprocessable(
            "scan or type a SKU or barcode",
            errors=[FieldError("code", "scan or type a SKU or barcode", "missing")],
        )
    try:
        return lookup_variant(session, code, caller=caller).variant.id
    except NotFound as exc:
        message = f"no product has the SKU or barcode {code!r}"
        raise NotFound(message, code="variant_not_found") from exc


@router.get("/inventory")
def locations(request: Request, user: Staff) -> Response:
    """Choose a location; an associate's own stores come first."""
    require(user, "inventory:read")
    with db_of(request).transaction(readonly=True) as session:
        places = actions.own_first(actions.all_locations(session), user.caller)
        units = actions.units_per_location(session)
        rows = [
            {
                "id": x.id,
                "name": x.name,
                "kind": x.kind,
                "city": x.city,
                "active": x.active,
                "mine": x.id in user.location_ids,
                "on_hand": units.get(x.id, (0, 0))[0],
                "available": units.get(x.id, (0, 0))[0] - units.get(x.id, (0, 0))[1],
            }
            for x in places
        ]
    return render(request, "inventory.html", locations=rows)


@router.get("/inventory/{location_id}")
def location_stock(
    request: Request,
    user: Staff,
    location_id: str,
    after: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    from seamline.inventory import stock, transfers
    from seamline.inventory.service import find_location

    require(user, "inventory:read")
    with db_of(request).transaction(readonly=True) as session:
        location = find_location(session, location_id)
        place = {
            "id": location.id,
            "name": location.name,
            "kind": location.kind,
            "city": location.city,
            "active": location.active,
        }
        location_name = location.name
        rows, next_after = actions.stock_at(session, location_id, after=after)
        ledger, next_cursor = stock.movements(
            session, location_id=location_id, cursor=cursor, limit=LEDGER_PAGE
        )
        moving, _ = transfers.list_transfers(
            session, location_id=location_id, status="in_transit", limit=50
        )
        others = [
            {"id": x.id, "name": x.name, "kind": x.kind}
            for x in actions.all_locations(session)
            if x.id != location_id and x.active
        ]
        names = {x["id"]: x["name"] for x in others}
        variant_ids = {m.variant_id for m in ledger} | {
            line.variant_id for t in moving for line in t.lines
        }
        skus = actions.skus_of(session, variant_ids)
        actors = actions.staff_names(session, {m.actor for m in ledger if m.actor})
    names[location_id] = location_name
    return render(
        request,
        "location_stock.html",
        place=place,
        rows=rows,
        next_after=next_after,
        after=after,
        ledger=ledger,
        next_cursor=next_cursor,
        cursor=cursor,
        incoming=[t for t in moving if t.to_location_id == location_id],
        outgoing=[t for t in moving if t.from_location_id == location_id],
        others=others,
        names=names,
        skus=skus,
        actors=actors,
        may_write=user.can("inventory:write") and user.caller.may_act_at(location_id),
    )


@router.post("/inventory/{location_id}/receive")
def receive(
    request: Request,
    user: Staff,
    location_id: str,
    quantity: Quantity,
    code: Code = "",
    variant_id: Id = "",
    reason: Reason = "",
    reference: Annotated[str, Form(max_length=100)] = "",
    form_key: FormKey = "",
) -> Response:
    from seamline.inventory import stock
    from seamline.inventory.schemas import ReceiptCreate

    require(user, "inventory:write")
    with db_of(request).transaction() as session:
        if form_key and not first_submit(session, user.id, form_key):
            return redirect(_here(location_id), notice=ALREADY_DONE)
        variant = _variant_of(session, code, variant_id, user.caller)
        data = actions.build(
            ReceiptCreate,
            location_id=location_id,
            variant_id=variant,
            quantity=quantity,
            reason=reason.strip() or None,
            reference=reference.strip() or None,
        )
        level = stock.receive(session, data, caller=user.caller)
    return redirect(_here(location_id), notice=f"Received {quantity}: {level.on_hand} on hand now.")


@router.post("/inventory/{location_id}/count")
def count(
    request: Request,
    user: Staff,
    location_id: str,
    variant_id: Id,
    expected_on_hand: Annotated[int, Form(ge=0)],
    counted: Annotated[int, Form(ge=0, le=MAX_QUANTITY)],
    reason: Reason = "",
) -> Response:
    """Compare-and-swap: the form carries the on-hand figure it showed; if stock moved since,
    the service refuses (409 ``stale_count``) and the page shows the current figure."""
    from seamline.inventory import stock
    from seamline.inventory.schemas import CountCreate

    require(user, "inventory:write")
    with db_of(request).transaction() as session:
        data = actions.build(
            CountCreate,
            location_id=location_id,
            variant_id=variant_id,
            expected_on_hand=expected_on_hand,
            counted=counted,
            reason=reason.strip() or None,
        )
        level = stock.count(session, data, caller=user.caller)
    return redirect(_here(location_id), notice=f"Count saved: {level.on_hand} on hand.")


@router.post("/inventory/{location_id}/adjust")
def adjust(
    request: Request,
    user: Staff,
    location_id: str,
    kind: Annotated[Literal["increase", "decrease", "damage", "return"], Form()],
    quantity: Quantity,
    reason: Annotated[str, Form(min_length=1, max_length=200)],
    code: Code = "",
    variant_id: Id = "",
    form_key: FormKey = "",
) -> Response:
    from seamline.inventory import stock
    from seamline.inventory.schemas import AdjustmentCreate

    require(user, "inventory:write")
    with db_of(request).transaction() as session:
        if form_key and not first_submit(session, user.id, form_key):
            return redirect(_here(location_id), notice=ALREADY_DONE)
        variant = _variant_of(session, code, variant_id, user.caller)
        data = actions.build(
            AdjustmentCreate,
            location_id=location_id,
            variant_id=variant,
            kind=kind,
            quantity=quantity,
            reason=reason.strip(),
        )
        level = stock.adjust(session, data, caller=user.caller)
    return redirect(_here(location_id), notice=f"Adjusted ({kind}): {level.on_hand} on hand now.")


@router.post("/inventory/{location_id}/transfer")
def transfer(
    request: Request,
    user: Staff,
    location_id: str,
    to_location_id: Id,
    quantity: Quantity,
    code: Code = "",
    variant_id: Id = "",
    reason: Reason = "",
    form_key: FormKey = "",
) -> Response:
    from seamline.inventory import transfers
    from seamline.inventory.schemas import TransferCreate

    require(user, "inventory:write")
    with db_of(request).transaction() as session:
        if form_key and not first_submit(session, user.id, form_key):
            return redirect(_here(location_id), notice=ALREADY_DONE)
        variant = _variant_of(session, code, variant_id, user.caller)
        data = actions.build(
            TransferCreate,
            {"lines": "quantity"},
            from_location_id=location_id,
            to_location_id=to_location_id,
            lines=[{"variant_id": variant, "quantity": quantity}],
            reason=reason.strip() or None,
        )
        sent = transfers.create(session, data, caller=user.caller)
    return redirect(_here(location_id), notice=f"Sent {quantity} in transfer {sent.id}.")


@router.post("/inventory/{location_id}/transfers/{transfer_id}/receive")
def receive_transfer(request: Request, user: Staff, location_id: str, transfer_id: str) -> Response:
    """Book the arrival of everything an in-transit transfer sent (at its destination)."""
    from seamline.inventory import transfers
    from seamline.inventory.schemas import TransferReceive

    require(user, "inventory:write")
    with db_of(request).transaction() as session:
        found = transfers.get(session, transfer_id)
        if found.to_location_id != location_id:
            raise NotFound("that transfer is not coming here", code="transfer_not_found")
        transfers.receive(session, transfer_id, TransferReceive(), caller=user.caller)
    return redirect(_here(location_id), notice=f"Transfer {transfer_id} received.")
