"""appointment emails

emails.attachments (files an email carries, a JSON list: an appointment's
.ics) and appointments (the newest change of each appointment seen, and
the reminder email it left waiting).

Revision ID: 0004_appointment_emails
Revises: 0003_sequences
Create Date: 2026-12-02 10:30:00.000000
"""

from alembic import op
import sqlalchemy as sa
import kit.db


revision = '0004_appointment_emails'
down_revision = '0003_sequences'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attachments', sa.Text(), nullable=True))

    op.create_table('appointments',
    sa.Column('appointment_id', sa.Uuid(), nullable=False),
    sa.Column('business_id', sa.Uuid(), nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reminder_email_id', sa.Uuid(), nullable=True),
    sa.Column('updated_at', kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('appointment_id', name=op.f('pk_appointments'))
    )


def downgrade() -> None:
    op.drop_table('appointments')
    with op.batch_alter_table('emails', schema=None) as batch_op:
        batch_op.drop_column('attachments')
