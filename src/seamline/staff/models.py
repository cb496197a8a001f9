"""Staff users (email + argon2 password + role) and their console sessions.

Session cookies are random tokens stored as SHA-256 hashes, like API keys: they carry enough
entropy that a fast hash is safe and a lookup is one indexed query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, one_of
from seamline.kit import clock
from seamline.staff.roles import ROLES

USER_AGENT_MAX_LENGTH = 300


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # As typed at creation (for display); ``email_key`` is the casefolded, stripped form that
    # logins match on and that is unique.
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # The locations an associate works at (empty for the other roles).
    location_ids: Mapped[list[str]]
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint(one_of("role", ROLES), name="role_known"),)


class StaffSession(Base):
    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
