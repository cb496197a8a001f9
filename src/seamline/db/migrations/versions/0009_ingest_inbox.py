"""ingest inbox

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 10:51:10.325316
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import seamline.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("received_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_inbox")),
    )


def downgrade() -> None:
    op.drop_table("ingest_inbox")
