"""refunds and the activity feed

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-09 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("refunded_minor", sa.Integer(), server_default="0", nullable=False),
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot add a constraint in place
        op.create_check_constraint(
            op.f("ck_orders_refunded_minor"),
            "orders",
            "refunded_minor >= 0 AND refunded_minor <= amount_minor",
        )
    op.create_index("ix_orders_business_id_paid_at", "orders", ["business_id", "paid_at"])
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("revoke_access", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_refunds_amount")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint(
            "business_id", "idempotency_key", name=op.f("uq_refunds_business_id_idempotency_key")
        ),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_refunds_stripe_refund_id")),
    )
    op.create_index(
        "ix_refunds_business_id_created_at", "refunds", ["business_id", "created_at"]
    )
    op.create_index("ix_refunds_order_id", "refunds", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_refunds_order_id", table_name="refunds")
    op.drop_index("ix_refunds_business_id_created_at", table_name="refunds")
    op.drop_table("refunds")
    op.drop_index("ix_orders_business_id_paid_at", table_name="orders")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_orders_refunded_minor"), "orders", type_="check")
    op.drop_column("orders", "refunded_minor")
