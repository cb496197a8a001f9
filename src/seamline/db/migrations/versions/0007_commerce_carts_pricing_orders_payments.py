"""commerce: carts, pricing, orders, payments

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 06:48:12.564435
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import seamline.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Order numbers (db/sequences.py): never blocks a concurrent checkout.
        op.execute("CREATE SEQUENCE order_number_seq START 1001")
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.create_table(
        "payment_webhook_events",
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("received_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_payment_webhook_events")),
    )
    op.create_table(
        "shipping_rates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column(
            "bands",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("free_over", sa.Integer(), nullable=True),
        sa.Column(
            "countries",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('flat', 'weight_band', 'free_over')",
            name=op.f("ck_shipping_rates_kind_known"),
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_shipping_rates_price_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipping_rates")),
    )
    op.create_table(
        "tax_rates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("rate", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("combinable", sa.Boolean(), nullable=False),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("rate >= 0 AND rate <= 10000", name=op.f("ck_tax_rates_rate_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_rates")),
        sa.UniqueConstraint(
            "country", "region", "name", name=op.f("uq_tax_rates_country_region_name")
        ),
    )
    op.create_table(
        "tax_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prices_include_tax", sa.Boolean(), nullable=False),
        sa.Column("tax_shipping", sa.Boolean(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_tax_settings_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_settings")),
    )
    op.create_table(
        "carts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("share_code", sa.String(length=7), nullable=False),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("anonymous_id", sa.String(length=255), nullable=True),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column(
            "shipping_address",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("shipping_rate_id", sa.String(length=40), nullable=True),
        sa.Column(
            "codes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("merged_into_id", sa.String(length=40), nullable=True),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'checking_out', 'completed', 'merged', 'abandoned')",
            name=op.f("ck_carts_status_known"),
        ),
        sa.CheckConstraint(
            "profile_id IS NOT NULL OR anonymous_id IS NOT NULL", name=op.f("ck_carts_has_owner")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_carts_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_carts_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carts")),
        sa.UniqueConstraint("share_code", name=op.f("uq_carts_share_code")),
    )
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.create_index("ix_carts_anonymous", ["anonymous_id", "status"], unique=False)
        batch_op.create_index(
            "uq_carts_open_profile",
            ["profile_id"],
            unique=True,
            sqlite_where=sa.text("status = 'open' AND profile_id IS NOT NULL"),
            postgresql_where=sa.text("status = 'open' AND profile_id IS NOT NULL"),
        )

    op.create_table(
        "promotions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("code_key", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("applies_to", sa.String(length=20), nullable=False),
        sa.Column(
            "target_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("min_subtotal", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("starts_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.Column("ends_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.Column(
            "channel_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("usage_limit", sa.Integer(), nullable=True),
        sa.Column("usage_limit_per_profile", sa.Integer(), nullable=True),
        sa.Column("used_count", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "applies_to IN ('all', 'products', 'collections')",
            name=op.f("ck_promotions_target_known"),
        ),
        sa.CheckConstraint(
            "kind IN ('percentage', 'fixed_amount', 'free_shipping')",
            name=op.f("ck_promotions_kind_known"),
        ),
        sa.CheckConstraint(
            "usage_limit IS NULL OR (used_count <= usage_limit)",
            name=op.f("ck_promotions_within_usage_limit"),
        ),
        sa.CheckConstraint("used_count >= 0", name=op.f("ck_promotions_used_count_positive")),
        sa.CheckConstraint(
            "value >= 0 AND min_subtotal >= 0", name=op.f("ck_promotions_amounts_positive")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_promotions_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
        sa.UniqueConstraint("code_key", name=op.f("uq_promotions_code_key")),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promotions_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "saved_lists",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("share_code", sa.String(length=7), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("anonymous_id", sa.String(length=255), nullable=True),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "profile_id IS NOT NULL OR anonymous_id IS NOT NULL",
            name=op.f("ck_saved_lists_has_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_saved_lists_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_saved_lists_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_lists")),
        sa.UniqueConstraint("share_code", name=op.f("uq_saved_lists_share_code")),
    )
    with op.batch_alter_table("saved_lists", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_saved_lists_anonymous_id"), ["anonymous_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_saved_lists_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "cart_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("cart_id", sa.String(length=40), nullable=False),
        sa.Column("variant_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("fulfilment", sa.String(length=10), nullable=False),
        sa.Column("pickup_location_id", sa.String(length=40), nullable=True),
        sa.Column("added_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(fulfilment = 'pickup') = (pickup_location_id IS NOT NULL)",
            name=op.f("ck_cart_lines_pickup_has_store"),
        ),
        sa.CheckConstraint(
            "fulfilment IN ('ship', 'pickup')", name=op.f("ck_cart_lines_fulfilment_known")
        ),
        sa.CheckConstraint(
            "quantity > 0 AND quantity <= 999", name=op.f("ck_cart_lines_quantity_range")
        ),
        sa.ForeignKeyConstraint(
            ["cart_id"], ["carts.id"], name=op.f("fk_cart_lines_cart_id_carts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pickup_location_id"],
            ["locations.id"],
            name=op.f("fk_cart_lines_pickup_location_id_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_cart_lines_variant_id_variants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_lines")),
    )
    with op.batch_alter_table("cart_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cart_lines_cart_id"), ["cart_id"], unique=False)

    op.create_table(
        "checkouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("cart_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("location_id", sa.String(length=40), nullable=True),
        sa.Column(
            "quote",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tenders",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "reservation_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('reserving', 'paying', 'completed', 'failed')",
            name=op.f("ck_checkouts_status_known"),
        ),
        sa.ForeignKeyConstraint(["cart_id"], ["carts.id"], name=op.f("fk_checkouts_cart_id_carts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkouts")),
    )
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkouts_cart_id"), ["cart_id"], unique=False)
        batch_op.create_index("uq_checkouts_key", ["key_id", "idempotency_key"], unique=True)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("checkout_id", sa.String(length=40), nullable=False),
        sa.Column("cart_id", sa.String(length=40), nullable=True),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("location_id", sa.String(length=40), nullable=True),
        sa.Column("placed_by", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("payment_state", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("prices_include_tax", sa.Boolean(), nullable=False),
        sa.Column("subtotal", sa.Integer(), nullable=False),
        sa.Column("discount_total", sa.Integer(), nullable=False),
        sa.Column("shipping_total", sa.Integer(), nullable=False),
        sa.Column("tax_total", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("paid_total", sa.Integer(), nullable=False),
        sa.Column("refunded_total", sa.Integer(), nullable=False),
        sa.Column(
            "shipping_address",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "codes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "promotions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("cancelled_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "payment_state IN ('unpaid', 'pending', 'paid', 'partially_refunded', 'refunded')",
            name=op.f("ck_orders_payment_state_known"),
        ),
        sa.CheckConstraint(
            "status IN ('placed', 'paid', 'partially_fulfilled', 'fulfilled', 'completed', 'cancelled')",
            name=op.f("ck_orders_status_known"),
        ),
        sa.CheckConstraint(
            "total >= 0 AND refunded_total <= paid_total", name=op.f("ck_orders_money_sane")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_orders_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_orders_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_orders_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("checkout_id", name=op.f("uq_orders_checkout_id")),
        sa.UniqueConstraint("number", name=op.f("uq_orders_number")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "promotion_usages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("promotion_id", sa.String(length=40), nullable=False),
        sa.Column("checkout_id", sa.String(length=40), nullable=False),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'used', 'released')", name=op.f("ck_promotion_usages_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotions.id"],
            name=op.f("fk_promotion_usages_promotion_id_promotions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_usages")),
        sa.UniqueConstraint(
            "promotion_id", "checkout_id", name=op.f("uq_promotion_usages_promotion_id_checkout_id")
        ),
    )
    with op.batch_alter_table("promotion_usages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_promotion_usages_profile", ["promotion_id", "profile_id"], unique=False
        )

    op.create_table(
        "saved_list_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("list_id", sa.String(length=40), nullable=False),
        sa.Column("variant_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("added_via", sa.String(length=20), nullable=False),
        sa.Column("added_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "quantity > 0 AND quantity <= 999", name=op.f("ck_saved_list_items_quantity_range")
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["saved_lists.id"],
            name=op.f("fk_saved_list_items_list_id_saved_lists"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_saved_list_items_variant_id_variants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_list_items")),
        sa.UniqueConstraint(
            "list_id", "variant_id", name=op.f("uq_saved_list_items_list_id_variant_id")
        ),
    )
    op.create_table(
        "fulfilment_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("location_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("shipping_rate_id", sa.String(length=40), nullable=True),
        sa.Column("shipping", sa.Integer(), nullable=False),
        sa.Column("routing_reason", sa.String(length=500), nullable=False),
        sa.Column("pickup_code", sa.String(length=7), nullable=True),
        sa.Column("pickup_expires_at", seamline.db.types.UTCDateTime(), nullable=True),
        sa.Column("carrier", sa.String(length=60), nullable=True),
        sa.Column("tracking_number", sa.String(length=100), nullable=True),
        sa.Column("carrier_status", sa.String(length=60), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ship', 'pickup')", name=op.f("ck_fulfilment_groups_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'ready_for_pickup', 'picked_up', 'shipped', 'delivered', 'expired', 'cancelled')",
            name=op.f("ck_fulfilment_groups_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_fulfilment_groups_location_id_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fulfilment_groups_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_groups")),
    )
    with op.batch_alter_table("fulfilment_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fulfilment_groups_location_id"), ["location_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fulfilment_groups_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fulfilment_groups_tracking_number"), ["tracking_number"], unique=False
        )

    op.create_table(
        "order_history",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=40), nullable=True),
        sa.Column("at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_history_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_order_history")),
    )
    with op.batch_alter_table("order_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_history_order_id"), ["order_id"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("checkout_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=40), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("captured", sa.Integer(), nullable=False),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.Column("change_due", sa.Integer(), nullable=True),
        sa.Column("decline_code", sa.String(length=60), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'authorized', 'captured', 'processing', 'requires_action', 'declined', 'failed', 'voided')",
            name=op.f("ck_payments_status_known"),
        ),
        sa.CheckConstraint(
            "amount > 0 AND captured BETWEEN 0 AND amount AND refunded BETWEEN 0 AND captured",
            name=op.f("ck_payments_amounts_sane"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_checkout_id"), ["checkout_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            "ix_payments_reference", ["provider", "provider_reference"], unique=False
        )

    op.create_table(
        "returns",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("location_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("refund_total", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('requested', 'received', 'refunded', 'cancelled')",
            name=op.f("ck_returns_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_returns_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_returns_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns")),
    )
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_returns_order_id"), ["order_id"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.Column("variant_id", sa.String(length=40), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Integer(), nullable=False),
        sa.Column("subtotal", sa.Integer(), nullable=False),
        sa.Column("discount", sa.Integer(), nullable=False),
        sa.Column("tax", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("quantity_fulfilled", sa.Integer(), nullable=False),
        sa.Column("quantity_returned", sa.Integer(), nullable=False),
        sa.Column("reservation_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "quantity > 0 AND quantity_fulfilled BETWEEN 0 AND quantity AND quantity_returned BETWEEN 0 AND quantity",
            name=op.f("ck_order_lines_quantities_sane"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["fulfilment_groups.id"],
            name=op.f("fk_order_lines_group_id_fulfilment_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_order_lines_variant_id_variants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_lines_order_id"), ["order_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("return_id", sa.String(length=40), nullable=True),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", seamline.db.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_refunds_payment_id"), ["payment_id"], unique=False)

    op.create_table(
        "return_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("return_id", sa.String(length=40), nullable=False),
        sa.Column("order_line_id", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("disposition", sa.String(length=12), nullable=True),
        sa.Column("refund", sa.Integer(), nullable=False),
        sa.Column("exchange_variant_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "disposition IS NULL OR disposition IN ('restock', 'write_off')",
            name=op.f("ck_return_lines_disposition_known"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_return_lines_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_return_lines_order_line_id_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["return_id"], ["returns.id"], name=op.f("fk_return_lines_return_id_returns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_lines")),
    )
    with op.batch_alter_table("return_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_return_lines_return_id"), ["return_id"], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS order_number_seq")
    with op.batch_alter_table("return_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_return_lines_return_id"))

    op.drop_table("return_lines")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_payment_id"))
        batch_op.drop_index(batch_op.f("ix_refunds_order_id"))

    op.drop_table("refunds")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_lines_order_id"))

    op.drop_table("order_lines")
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_returns_order_id"))

    op.drop_table("returns")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_reference")
        batch_op.drop_index(batch_op.f("ix_payments_order_id"))
        batch_op.drop_index(batch_op.f("ix_payments_checkout_id"))

    op.drop_table("payments")
    with op.batch_alter_table("order_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_history_order_id"))

    op.drop_table("order_history")
    with op.batch_alter_table("fulfilment_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fulfilment_groups_tracking_number"))
        batch_op.drop_index(batch_op.f("ix_fulfilment_groups_order_id"))
        batch_op.drop_index(batch_op.f("ix_fulfilment_groups_location_id"))

    op.drop_table("fulfilment_groups")
    op.drop_table("saved_list_items")
    with op.batch_alter_table("promotion_usages", schema=None) as batch_op:
        batch_op.drop_index("ix_promotion_usages_profile")

    op.drop_table("promotion_usages")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_profile_id"))

    op.drop_table("orders")
    with op.batch_alter_table("checkouts", schema=None) as batch_op:
        batch_op.drop_index("uq_checkouts_key")
        batch_op.drop_index(batch_op.f("ix_checkouts_cart_id"))

    op.drop_table("checkouts")
    with op.batch_alter_table("cart_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cart_lines_cart_id"))

    op.drop_table("cart_lines")
    with op.batch_alter_table("saved_lists", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saved_lists_profile_id"))
        batch_op.drop_index(batch_op.f("ix_saved_lists_anonymous_id"))

    op.drop_table("saved_lists")
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_promotions_profile_id"))

    op.drop_table("promotions")
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_carts_open_profile",
            sqlite_where=sa.text("status = 'open' AND profile_id IS NOT NULL"),
            postgresql_where=sa.text("status = 'open' AND profile_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_carts_anonymous")

    op.drop_table("carts")
    op.drop_table("tax_settings")
    op.drop_table("tax_rates")
    op.drop_table("shipping_rates")
    op.drop_table("payment_webhook_events")
    op.drop_table("counters")
