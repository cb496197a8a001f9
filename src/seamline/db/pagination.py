"""Keyset pagination: pages follow an indexed key, so they stay stable under inserts and never
scan skipped rows the way OFFSET does."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from seamline.kit.pagination import MAX_LIMIT

T = TypeVar("T")


def keyset_page(
    session: Session,
    stmt: Select[T],
    key: InstrumentedAttribute[Any],
    *,
    after: Any = None,
    limit: int = 50,
    descending: bool = False,
) -> tuple[list[T], str | None]:
    """One page of ``stmt`` ordered by ``key``, starting past ``after`` (the previous page's
    cursor); returns the rows and the next cursor (``None`` on the last page)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if after is not None:
        stmt = stmt.where(key < after if descending else key > after)
    stmt = stmt.order_by(key.desc() if descending else key).limit(limit + 1)
    rows = list(session.scalars(stmt))
    cursor = str(getattr(rows[limit - 1], key.key)) if len(rows) > limit else None
    return rows[:limit], cursor
