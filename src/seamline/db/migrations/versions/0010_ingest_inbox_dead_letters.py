"""ingest inbox: attempts, last error and a failed state (dead letters)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seamline.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_inbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=10), server_default="pending", nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failed_at", seamline.db.types.UTCDateTime(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_ingest_inbox_state_known"), "state IN ('pending', 'failed')"
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_inbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ingest_inbox_state_known"), type_="check")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("last_error")
        batch_op.drop_column("attempts")
        batch_op.drop_column("state")
