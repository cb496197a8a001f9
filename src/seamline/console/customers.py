"""Find a customer, and the customer 360 an agent opens so the customer never repeats
themselves: identities with sources, traits, consent, metrics, advisor, open carts, orders,
returns, the unified timeline (an icon and a label per channel), merge suggestions."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from seamline.channels.models import Channel
from seamline.kit.errors import NotFound

from .security import Staff, db_of
from .web import PREFIX, redirect, render

router = APIRouter()

# What a cart share code looks like when typed: 6 read-aloud characters, a dash optional.
_CART_CODE = re.compile(r"^[A-Za-z0-9]{3}-?[A-Za-z0-9]{3}$")
TIMELINE_PAGE = 25


def require(user: Staff, scope: str) -> None:
    from seamline.staff.roles import require_scope

    require_scope(user.caller, scope)


def channel_kinds(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    """Channel handle and id → kind (the icon), and id → handle (the label): domain events
    name their channel by id, tracked calls by whatever the source wrote."""
    kinds: dict[str, str] = {}
    labels: dict[str, str] = {}
    for cid, handle, kind in session.execute(select(Channel.id, Channel.handle, Channel.kind)):
        kinds[cid] = kind
        kinds[handle] = kind
        labels[cid] = handle
    return kinds, labels


@router.get("/search")
def search(
    request: Request, user: Staff, q: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    """One box: email, phone, loyalty card, handle, name, or a cart's share code."""
    from seamline.carts import sharing
    from seamline.identity.search import find_customers

    require(user, "customers:read")
    q = q.strip()
    hits: list[Any] = []
    cart = None
    with db_of(request).transaction(readonly=True) as session:
        if _CART_CODE.match(q) and user.can("carts:read"):
            try:
                cart = sharing.cart_by_code(session, q, caller=user.caller)
            except NotFound:
                cart = None
        if q:
            hits = find_customers(session, q)
    if cart is not None and not hits:
        return redirect(f"{PREFIX}/carts/{cart.id}")
    return render(request, "search.html", q=q, hits=hits, cart=cart)


@router.get("/customers/{profile_id}")
def customer(
    request: Request,
    user: Staff,
    profile_id: str,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    from seamline.carts import sharing
    from seamline.identity import duplicates, merges, timeline
    from seamline.identity.customer360 import customer_360
    from seamline.identity.search import display_name
    from seamline.orders.service import customer_returns, list_orders

    require(user, "customers:read")
    with db_of(request).transaction(readonly=True) as session:
        view = customer_360(session, profile_id)
        members = view["profile_ids"]
        items, next_cursor = timeline.page(
            session, members, cursor=cursor, limit=TIMELINE_PAGE, channel=channel or None
        )
        kinds, labels = channel_kinds(session)
        carts: list[Any] = []
        if user.can("carts:read"):
            carts, _ = sharing.carts_of_customer(
                session, caller=user.caller, profile_id=profile_id, status="open"
            )
        orders = (
            list_orders(session, caller=user.caller, profile_id=profile_id, limit=20).data
            if user.can("orders:read")
            else []
        )
        returns = customer_returns(session, profile_id) if user.can("orders:read") else []
        suggestions = duplicates.suggestions_for(session, profile_id, limit=5)
        active = merges.active_merges(session, members)
        traits = view["traits"]
        name = display_name(traits) or "Unnamed customer"
        cluster = view["cluster_id"]
    return render(
        request,
        "customer.html",
        view=view,
        name=name,
        traits=traits,
        items=items,
        next_cursor=next_cursor,
        channel_filter=channel or "",
        kinds=kinds,
        labels=labels,
        carts=carts,
        orders=orders,
        returns=returns,
        suggestions=[_suggestion(s, cluster) for s in suggestions],
        merges=active,
    )


def _suggestion(s: Any, cluster: str) -> dict[str, Any]:
    other = s.b if s.a.cluster_id == cluster else s.a
    return {
        "profile_id": other.cluster_id,
        "name": other.display.get("name") or other.full or other.cluster_id,
        "score": round(s.score * 100),
        "evidence": [f"{m.field}: {m.a} ≈ {m.b}" for m in s.evidence],
    }


@router.post("/customers/{profile_id}/merge")
def merge(
    request: Request,
    user: Staff,
    profile_id: str,
    other_id: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form(max_length=200)] = "same person (console review)",
) -> Response:
    from seamline.identity import duplicates

    require(user, "customers:write")
    with db_of(request).transaction() as session:
        duplicates.decide(
            session,
            profile_id,
            other_id,
            decision=duplicates.MERGED,
            reason=reason.strip() or "same person (console review)",
            by=user.id,
        )
    return redirect(f"{PREFIX}/customers/{profile_id}", notice="Customers merged.")


@router.post("/customers/{profile_id}/dismiss")
def dismiss(
    request: Request,
    user: Staff,
    profile_id: str,
    other_id: Annotated[str, Form(max_length=40)],
) -> Response:
    from seamline.identity import duplicates

    require(user, "customers:write")
    with db_of(request).transaction() as session:
        duplicates.decide(
            session, profile_id, other_id, decision=duplicates.DISMISSED, reason=None, by=user.id
        )
    return redirect(f"{PREFIX}/customers/{profile_id}", notice="Suggestion dismissed.")


@router.post("/customers/{profile_id}/unmerge")
def unmerge(
    request: Request,
    user: Staff,
    profile_id: str,
    merge_id: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form(max_length=200)] = "not the same person",
) -> Response:
    from seamline.identity import merges

    require(user, "customers:write")
    with db_of(request).transaction() as session:
        merges.unmerge(
            session,
            profile_id,
            merge_id,
            reason=reason.strip() or "not the same person",
            by=user.id,
        )
    return redirect(f"{PREFIX}/customers/{profile_id}", notice="Merge undone.")
