"""checkout expiry: a deadline on the checkout row, swept by the worker (no timer row)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seamline.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", seamline.db.types.UTCDateTime(), nullable=True))
        batch_op.create_index(
            "ix_checkouts_paying_expires_at",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'paying'"),
            sqlite_where=sa.text("status = 'paying'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_checkouts_paying_expires_at",
            postgresql_where=sa.text("status = 'paying'"),
            sqlite_where=sa.text("status = 'paying'"),
        )
        batch_op.drop_column("expires_at")
