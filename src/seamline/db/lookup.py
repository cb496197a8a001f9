"""Loading one object by its public id, or a 404 problem: the same rule for every domain."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from seamline.kit.errors import NotFound

# The width of every public id column (``prefix_`` + 26 characters fits with room to spare).
ID_MAX_LENGTH = 40

T = TypeVar("T")


def usable_id(value: str) -> bool:
    """Whether ``value`` could be an id at all. One that cannot is simply not found: it never
    reaches the database, where a NUL byte would be an error on PostgreSQL rather than a miss."""
    return len(value) <= ID_MAX_LENGTH and "\x00" not in value


def not_found(what: str, object_id: str, code: str) -> NotFound:
    shown = object_id if len(object_id) <= ID_MAX_LENGTH else object_id[:ID_MAX_LENGTH] + "…"
    return NotFound(f"no {what} {shown!r}", code=code)


def get_or_404(
    session: Session,
    model: type[T],
    object_id: str,
    *,
    what: str,
    code: str,
    for_update: bool = False,
) -> T:
    """``session.get`` that answers a missing (or impossible) id with a ``code`` 404 problem."""
    found: Any = None
    if usable_id(object_id):
        found = session.get(model, object_id, with_for_update=for_update)
    if found is None:
        raise not_found(what, object_id, code)
    result: T = found
    return result
