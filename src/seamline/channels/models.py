"""Channel instances: a kind, a name, a unique handle, and for stores the location they serve."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, Timestamped

CHANNEL_KINDS = (
    "web",
    "app",
    "store",
    "marketplace",
    "social",
    "email",
    "sms",
    "push",
    "phone",
    "chat",
)


class Channel(Timestamped, Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    # The store location this channel sells at (a foreign key once locations exist).
    location_id: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in CHANNEL_KINDS) + ")", name="kind_known"
        ),
    )
