"""Initial schema of the profile service.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 16:05:26.660458
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_batch_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_batch_runs")),
    )
    with op.batch_alter_table("profile_batch_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_batch_runs_kind"), ["kind"], unique=False)

    op.create_table(
        "profile_customers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("email_enc", sa.Text(), nullable=True),
        sa.Column("phone_enc", sa.Text(), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("counts_by_type", sa.JSON(), nullable=False),
        sa.Column("counts_by_channel", sa.JSON(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purchase_days", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("rating_sum", sa.Float(), nullable=False),
        sa.Column("sentiment_count", sa.Integer(), nullable=False),
        sa.Column("sentiment_sum", sa.Float(), nullable=False),
        sa.Column("sentiment_recent", sa.Float(), nullable=True),
        sa.Column("sentiment_last_label", sa.String(length=16), nullable=True),
        sa.Column("churn_probability", sa.Float(), nullable=True),
        sa.Column("churn_band", sa.String(length=16), nullable=True),
        sa.Column("churn_model_version", sa.String(length=200), nullable=True),
        sa.Column("consent", sa.JSON(), nullable=False),
        sa.Column("rfm_cluster", sa.String(length=64), nullable=True),
        sa.Column("rfm_scores", sa.String(length=8), nullable=True),
        sa.Column("clv_p_alive", sa.Float(), nullable=True),
        sa.Column("clv_expected_purchases", sa.Float(), nullable=True),
        sa.Column("clv_expected_value", sa.Float(), nullable=True),
        sa.Column("clv_horizon_days", sa.Integer(), nullable=True),
        sa.Column("clv_model_version", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_customers")),
    )
    with op.batch_alter_table("profile_customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_customers_churn_band"), ["churn_band"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_first_seen"), ["first_seen"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_last_seen"), ["last_seen"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_merged_into"), ["merged_into"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_orders"), ["orders"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_revenue"), ["revenue"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_customers_rfm_cluster"), ["rfm_cluster"], unique=False)

    op.create_table(
        "profile_erasure_receipts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_erasure_receipts")),
        sa.UniqueConstraint("subject_hash", name=op.f("uq_profile_erasure_receipts_subject_hash")),
    )
    op.create_table(
        "profile_identifiers",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=220), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_profile_identifiers")),
    )
    with op.batch_alter_table("profile_identifiers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_identifiers_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "profile_merges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("survivor_id", sa.String(length=200), nullable=False),
        sa.Column("merged_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_merges")),
    )
    with op.batch_alter_table("profile_merges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_merges_merged_id"), ["merged_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_profile_merges_survivor_id"), ["survivor_id"], unique=False)

    op.create_table(
        "profile_segments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_profile_segments_name")),
    )
    op.create_table(
        "profile_timeline",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_timeline")),
    )
    with op.batch_alter_table("profile_timeline", schema=None) as batch_op:
        batch_op.create_index(
            "ix_profile_timeline_customer_time", ["customer_id", "occurred_at", "id"], unique=False
        )

    op.create_table(
        "profile_segment_members",
        sa.Column("segment_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["profile_segments.id"],
            name=op.f("fk_profile_segment_members_segment_id_profile_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("segment_id", "customer_id", name=op.f("pk_profile_segment_members")),
    )
    with op.batch_alter_table("profile_segment_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_profile_segment_members_customer_id"), ["customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("profile_segment_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_segment_members_customer_id"))

    op.drop_table("profile_segment_members")
    with op.batch_alter_table("profile_timeline", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_timeline_customer_time")

    op.drop_table("profile_timeline")
    op.drop_table("profile_segments")
    with op.batch_alter_table("profile_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_merges_survivor_id"))
        batch_op.drop_index(batch_op.f("ix_profile_merges_merged_id"))

    op.drop_table("profile_merges")
    with op.batch_alter_table("profile_identifiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_identifiers_customer_id"))

    op.drop_table("profile_identifiers")
    op.drop_table("profile_erasure_receipts")
    with op.batch_alter_table("profile_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_customers_rfm_cluster"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_revenue"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_orders"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_merged_into"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_last_seen"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_first_seen"))
        batch_op.drop_index(batch_op.f("ix_profile_customers_churn_band"))

    op.drop_table("profile_customers")
    with op.batch_alter_table("profile_batch_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_batch_runs_kind"))

    op.drop_table("profile_batch_runs")
