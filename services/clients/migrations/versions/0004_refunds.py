"""refunds: what a purchase's group place was, and when a refund took it back

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("purchases_applied", sa.Column("group_id", sa.Uuid(), nullable=True))
    op.add_column(
        "purchases_applied",
        sa.Column("revoked_at", kit.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("purchases_applied") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("group_id")
