"""Console-side helpers of the cart and order pages: form → schema, money typed by a person,
the stores a staff member may act at. The domain services check scopes and locations
themselves (``caller=user.caller``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from babel.numbers import get_currency_precision
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.inventory.models import Location
from seamline.kit.errors import FieldError, SeamlineError, Unprocessable

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: dict[str, Any]) -> M:
    """The schema the API would take, built from a form: a refusal names the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in e.get("loc", ())) or "form",
                str(e.get("msg", "invalid")).removeprefix("Value error, "),
            )
            for e in exc.errors()
        ]
        raise Unprocessable("some fields are missing or invalid", errors=errors) from None


def problem_text(exc: SeamlineError) -> str:
    """One sentence for a flash notice: the detail, then the fields it names."""
    text = exc.detail[:1].upper() + exc.detail[1:]
    fields = [f"{e.path.removeprefix('body.')}: {e.message}" for e in exc.errors]
    return text + (" — " + "; ".join(fields) if fields else "") + "."


def to_minor(value: str, currency: str, *, path: str) -> int:
    """``"60"``, ``"60.5"`` or ``"60,50"`` of ``currency`` → minor units (never a float)."""
    digits = get_currency_precision(currency)
    try:
        amount = Decimal(value.strip().replace(",", "."))
    except InvalidOperation:
        amount = Decimal(-1)
    scaled = amount * (10**digits)
    if not amount.is_finite() or amount <= 0 or scaled != scaled.to_integral_value():
        raise Unprocessable(
            f"{value.strip()[:20]!r} is not an amount of {currency}",
            errors=[FieldError(path, f"an amount such as 50 or 49.99 {currency}", "invalid")],
        )
    return int(scaled)


@dataclass(frozen=True)
class Place:
    id: str
    name: str
    kind: str


def places(session: Session, caller: Caller, **capability: bool) -> list[Place]:
    """Active locations with the given capabilities (``pickup=True``…) where ``caller`` may
    act, by name."""
    stmt = select(Location).where(Location.active).order_by(Location.name, Location.id)
    for name, wanted in capability.items():
        stmt = stmt.where(getattr(Location, name).is_(wanted))
    return [
        Place(loc.id, loc.name, loc.kind)
        for loc in session.scalars(stmt)
        if caller.may_act_at(loc.id)
    ]


def location_names(session: Session) -> dict[str, str]:
    rows = session.execute(select(Location.id, Location.name))
    return {loc_id: name for loc_id, name in rows}  # noqa: C416 (a Result has keys())
