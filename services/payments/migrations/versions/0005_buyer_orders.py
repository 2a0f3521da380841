"""a buyer's orders in every business (purchase history)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_buyer_account_id", "orders", ["buyer_account_id"], unique=False)
    op.create_index("ix_orders_buyer_email", "orders", ["buyer_email"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_orders_buyer_email", table_name="orders")
    op.drop_index("ix_orders_buyer_account_id", table_name="orders")
