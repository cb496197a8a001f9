"""Human-facing numbers (order #1001, #1002…): a PostgreSQL sequence, a counter row on SQLite.

On PostgreSQL ``nextval`` never blocks a concurrent transaction (a rolled-back checkout leaves
a gap, as every shop's numbering does); SQLite serialises writers anyway, so a counter row is
as good there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, func, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from seamline.db.base import Base

# name -> first value; each has a PostgreSQL sequence ``<name>_seq`` made by the migrations.
SEQUENCES = {"order_number": 1001}


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int]


def next_value(session: Session, name: str) -> int:
    start = SEQUENCES[name]
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(text(f"SELECT nextval('{name}_seq')")).scalar_one())
    found = session.execute(
        text("UPDATE counters SET value = value + 1 WHERE name = :n RETURNING value"), {"n": name}
    ).scalar()
    if found is None:
        session.execute(
            text("INSERT INTO counters (name, value) VALUES (:n, :v)"), {"n": name, "v": start}
        )
        return start
    return int(found)


def next_value_expression(session: Session, name: str) -> Any:
    """What to assign to the numbered column: on PostgreSQL ``nextval`` as a SQL expression
    (the row's ``INSERT`` draws the number and returns it — no statement of its own); on
    SQLite the next value itself."""
    if session.get_bind().dialect.name == "postgresql":
        return func.nextval(f"{name}_seq")
    return next_value(session, name)
