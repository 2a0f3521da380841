"""forms: the details an agreement or worksheet was bought with, signatures, answers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import kit.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for entitlements made before: their agreement text was never kept here.
    op.add_column("entitlements", sa.Column("details", sa.JSON(), nullable=True))
    op.create_table(
        "agreement_signatures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entitlement_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("signed_name", sa.String(length=200), nullable=False),
        sa.Column("signed_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("offering_version_id", sa.Uuid(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_agreement_signatures_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_agreement_signatures_business_id_businesses"),
        ),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlements.id"],
            name=op.f("fk_agreement_signatures_entitlement_id_entitlements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_signatures")),
        sa.UniqueConstraint("entitlement_id", name=op.f("uq_agreement_signatures_entitlement_id")),
    )
    op.create_table(
        "worksheet_answers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("entitlement_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("submitted_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_worksheet_answers_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_worksheet_answers_business_id_businesses"),
        ),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlements.id"],
            name=op.f("fk_worksheet_answers_entitlement_id_entitlements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worksheet_answers")),
        sa.UniqueConstraint("entitlement_id", name=op.f("uq_worksheet_answers_entitlement_id")),
    )


def downgrade() -> None:
    op.drop_table("worksheet_answers")
    op.drop_table("agreement_signatures")
    with op.batch_alter_table("entitlements") as batch:
        batch.drop_column("details")
