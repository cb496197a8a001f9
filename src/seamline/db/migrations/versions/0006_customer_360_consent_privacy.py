"""customer 360, consent, privacy

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 03:39:33.214476
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import seamline.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "duplicate_decisions",
        sa.Column("profile_a_id", sa.String(length=40), nullable=False),
        sa.Column("profile_b_id", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        sa.Column("decided_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("merge_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "decision IN ('dismissed', 'merged')",
            name=op.f("ck_duplicate_decisions_decision_known"),
        ),
        sa.CheckConstraint(
            "profile_a_id < profile_b_id", name=op.f("ck_duplicate_decisions_ordered_pair")
        ),
        sa.PrimaryKeyConstraint(
            "profile_a_id", "profile_b_id", name=op.f("pk_duplicate_decisions")
        ),
    )
    op.create_table(
        "erased_identifiers",
        sa.Column("kind", sa.String(length=80), nullable=False),
        sa.Column("value_hash", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("erased_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value_hash", name=op.f("pk_erased_identifiers")),
    )
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("cluster_id", sa.String(length=40), nullable=False),
        sa.Column(
            "profile_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("requested_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("completed_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('export', 'erase')", name=op.f("ck_privacy_requests_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('completed', 'failed')", name=op.f("ck_privacy_requests_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_requests")),
    )
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_privacy_requests_profile_id"), ["profile_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_privacy_requests_cluster_id"), ["cluster_id"], unique=False
        )

    op.create_table(
        "channel_activity",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("first_seen", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("events_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_channel_activity_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "channel", name=op.f("pk_channel_activity")),
    )
    op.create_table(
        "consent_changes",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("effective_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("recorded_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=80), nullable=True),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('email', 'sms', 'push', 'whatsapp', 'phone')",
            name=op.f("ck_consent_changes_channel_known"),
        ),
        sa.CheckConstraint(
            "level IS NULL OR level IN ('single', 'confirmed')",
            name=op.f("ck_consent_changes_level_known"),
        ),
        sa.CheckConstraint(
            "purpose IN ('marketing', 'transactional')",
            name=op.f("ck_consent_changes_purpose_known"),
        ),
        sa.CheckConstraint(
            "state IN ('granted', 'denied')", name=op.f("ck_consent_changes_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_consent_changes_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "id", name=op.f("pk_consent_changes")),
    )
    with op.batch_alter_table("consent_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_changes_profile_time", ["profile_id", "recorded_at"], unique=False
        )

    op.create_table(
        "consents",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("effective_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("recorded_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("change_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_consents_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "channel", "purpose", name=op.f("pk_consents")),
    )
    op.create_table(
        "customer_orders",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("order_key", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("placed_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor",
            name=op.f("ck_customer_orders_refund_within_total"),
        ),
        sa.CheckConstraint("total_minor >= 0", name=op.f("ck_customer_orders_total_not_negative")),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_customer_orders_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "order_key", name=op.f("pk_customer_orders")),
        sa.UniqueConstraint("order_key", name=op.f("uq_customer_orders_order_key")),
    )
    op.create_table(
        "profile_metrics",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("orders_count", sa.Integer(), nullable=False),
        sa.Column("total_spent_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("first_purchase_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_purchase_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_profile_metrics_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "currency", name=op.f("pk_profile_metrics")),
    )
    op.create_table(
        "profile_preferences",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("set_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("set_by", sa.String(length=80), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_profile_preferences_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "name", name=op.f("pk_profile_preferences")),
    )
    op.create_table(
        "timeline_entries",
        sa.Column("profile_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("occurred_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=True),
        sa.Column("aggregate_type", sa.String(length=40), nullable=False),
        sa.Column("aggregate_id", sa.String(length=80), nullable=False),
        sa.Column("summary", sa.String(length=255), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_timeline_entries_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("profile_id", "id", name=op.f("pk_timeline_entries")),
        sa.UniqueConstraint(
            "event_id", "profile_id", name=op.f("uq_timeline_entries_event_id_profile_id")
        ),
    )
    with op.batch_alter_table("timeline_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_timeline_entries_profile_time", ["profile_id", "occurred_at", "id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("timeline_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_timeline_entries_profile_time")

    op.drop_table("timeline_entries")
    op.drop_table("profile_preferences")
    op.drop_table("profile_metrics")
    op.drop_table("customer_orders")
    op.drop_table("consents")
    with op.batch_alter_table("consent_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_changes_profile_time")

    op.drop_table("consent_changes")
    op.drop_table("channel_activity")
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_requests_cluster_id"))
        batch_op.drop_index(batch_op.f("ix_privacy_requests_profile_id"))

    op.drop_table("privacy_requests")
    op.drop_table("erased_identifiers")
    op.drop_table("duplicate_decisions")
