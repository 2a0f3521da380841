"""orders may pay for an appointment request

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("appointment_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "appointment_id")
