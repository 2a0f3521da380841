"""Tables of the notifications service.

``emails`` is both the queue the sender works through and the log the API
shows. Its id is derived from (event id, template, recipient), so handling
an event twice finds the same row instead of queueing a second email.
``businesses`` is a read model of the clients service's businesses, and
``appointments`` what this service knows of each appointment (the newest
change seen, its pending reminder).

The audience tables (``audience_clients``, ``audience_groups``,
``group_memberships``) are a read model of the client book, fed by the
clients service's events. Events may come late, twice or out of order, so
each fact carries the ``occurred_at`` of the event that last set it and an
older event never overwrites a newer one; removals and deletions are kept
as tombstones so that a late "added" cannot bring them back.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.db import UTCDateTime, new_metadata, utcnow
from kit.messaging import inbox_table, outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


# Sequence steps that act on a client's account publish through it (see sequences).
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
EMAIL_STATUSES = (QUEUED, SENDING, SENT, FAILED)

# Bulk (promotional) emails: the sender takes them after every due transactional one, so a
# big campaign never holds up a login link.
CAMPAIGN_TEMPLATE = "campaign"
BULK_TEMPLATES = (CAMPAIGN_TEMPLATE,)


class Email(Base):
    __tablename__ = "emails"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # Account emails (login links, resets) belong to a person, not a business.
    business_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(50))
    # Normalised (trimmed, lower case) so one address is one recipient.
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(400))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # While 'sending': the claim's lease. A row whose lease ran out was abandoned by a
    # crashed sender and may be claimed again.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(200))  # the Message-ID header
    # Headers of this email only (e.g. List-Unsubscribe), as a JSON object of one-line
    # strings; checked when written and again by the sender (emails.headers).
    extra_headers: Mapped[str | None] = mapped_column(Text)
    # Files it carries (an appointment's .ics), as a JSON list; checked when written and
    # again by the sender (emails.attachments). Null for almost every email.
    attachments: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("event_id", "template", "recipient"),
        CheckConstraint(f"status IN {EMAIL_STATUSES!r}", name="status"),
        # The sender's query: due rows by status, oldest first.
        Index("ix_emails_status_next_attempt_at", "status", "next_attempt_at"),
        # The API's query: one business's emails, newest first.
        Index("ix_emails_business_id_created_at", "business_id", "created_at"),
    )


class KnownBusiness(Base):
    """A business as announced by ``clients.business_created.v1``."""

    __tablename__ = "businesses"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80))
    owner_account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    owner_email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AppointmentState(Base):
    """The newest change of an appointment seen (``clients.appointment_*.v1``), and the
    reminder email it left waiting.

    Its row is locked while an event of the appointment is handled, so events of one
    appointment are handled one at a time. An event older than ``sequence`` (late or
    out of order) sends nothing: the newer change already told everyone. A newer one
    deletes the queued reminder (``reminder_email_id``) before anything else.
    """

    __tablename__ = "appointments"

    appointment_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    reminder_email_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- the audience read model ---------------------------------------------------------------

ACTIVE = "active"
ARCHIVED = "archived"


class AudienceClient(Base):
    """A client of a business, from ``clients.client_added/archived/restored.v1``.

    ``email`` is null while only an archive/restore event is known (it came first).
    """

    __tablename__ = "audience_clients"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    email: Mapped[str | None] = mapped_column(String(320))  # normalised
    display_name: Mapped[str | None] = mapped_column(String(200))
    profile_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # email and name
    status: Mapped[str] = mapped_column(String(20))
    status_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint(f"status IN {(ACTIVE, ARCHIVED)!r}", name="status"),)


class AudienceGroup(Base):
    """A client group; a deleted group stays as a tombstone (``deleted``)."""

    __tablename__ = "audience_groups"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))  # null if only its deletion is known
    name_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GroupMembership(Base):
    """Whether a client is in a group (``is_member`` false: removed, kept as a tombstone).

    A membership may name a group not known yet (its creation event is late).
    """

    __tablename__ = "group_memberships"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    is_member: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- unsubscribes and campaigns ------------------------------------------------------------


class Unsubscribe(Base):
    """An address that wants no more promotional email from a business."""

    __tablename__ = "unsubscribes"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # normalised
    unsubscribed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


DRAFT = "draft"
CAMPAIGN_SENT = "sent"
AUDIENCE_ALL = "all"
AUDIENCE_GROUP = "group"


class Campaign(Base):
    """A promotional email a coach writes once and sends to an audience.

    Sending turns it into one ``emails`` row per recipient (template
    ``campaign``, ``event_id`` = the campaign's id); its counts come from those.
    """

    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)  # account id of the coach
    subject: Mapped[str] = mapped_column(String(200))
    body_markdown: Mapped[str] = mapped_column(Text)
    discount_code: Mapped[str | None] = mapped_column(String(64))
    audience_kind: Mapped[str] = mapped_column(String(10))
    audience_group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(10), default=DRAFT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Addresses of the audience left out at sending because they had unsubscribed.
    unsubscribed_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint(f"status IN {(DRAFT, CAMPAIGN_SENT)!r}", name="status"),
        CheckConstraint(
            f"(audience_kind = '{AUDIENCE_ALL}' AND audience_group_id IS NULL) OR "
            f"(audience_kind = '{AUDIENCE_GROUP}' AND audience_group_id IS NOT NULL)",
            name="audience",
        ),
        Index("ix_campaigns_business_id_created_at", "business_id", "created_at"),
    )


# -- sequences -------------------------------------------------------------------------------
#
# A sequence is a coach's list of steps linked to one offering; a paid (or free) order of
# that offering starts one run (unique per sequence and order). A run's steps are copied
# into ``sequence_step_runs`` when it starts (what the step does, and when it is due), so
# editing the sequence later changes only runs that start afterwards. The runner claims
# due pending step-runs with SKIP LOCKED; a step-run's status change and its effect (an
# ``emails`` row or an ``outbox`` event) commit together, so each step happens once.

SEQ_START = "start"
SEQ_PREVIOUS = "previous"
DELAY_FROM = (SEQ_START, SEQ_PREVIOUS)
ACTION_EMAIL = "email"
ACTION_WORKSHEET = "assign_worksheet"
ACTION_AGREEMENT = "request_agreement"
ACTION_GROUP = "add_to_group"
SEQUENCE_ACTIONS = (ACTION_EMAIL, ACTION_WORKSHEET, ACTION_AGREEMENT, ACTION_GROUP)

RUN_ACTIVE = "active"
RUN_COMPLETED = "completed"
RUN_STOPPED = "stopped"
RUN_STATUSES = (RUN_ACTIVE, RUN_COMPLETED, RUN_STOPPED)

STEP_PENDING = "pending"
STEP_DONE = "done"
STEP_SKIPPED = "skipped"
STEP_STOPPED = "stopped"
STEP_STATUSES = (STEP_PENDING, STEP_DONE, STEP_SKIPPED, STEP_STOPPED)

STOP_REFUND = "refund"
STOP_SUBSCRIPTION_END = "subscription_end"


class Sequence(Base):
    __tablename__ = "sequences"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(200))
    # The offering whose orders start it: at most one (live) sequence per offering.
    offering_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    stop_on_refund: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_on_subscription_end: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Deleted sequences are kept (their runs are history) but unlinked and hidden.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_sequences_business_id_created_at", "business_id", "created_at"),)


class SequenceStep(Base):
    __tablename__ = "sequence_steps"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    sequence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    delay_minutes: Mapped[int] = mapped_column(Integer)
    delay_from: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(30))
    email_subject: Mapped[str | None] = mapped_column(String(200))
    email_body_markdown: Mapped[str | None] = mapped_column(Text)
    # assign_worksheet / request_agreement: the offering; add_to_group: the group.
    target_offering_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        UniqueConstraint("sequence_id", "position"),
        CheckConstraint(f"delay_from IN {DELAY_FROM!r}", name="delay_from"),
        CheckConstraint(f"action IN {SEQUENCE_ACTIONS!r}", name="action"),
        CheckConstraint("delay_minutes >= 0", name="delay_minutes"),
    )


class SequenceRun(Base):
    """One order going through one sequence."""

    __tablename__ = "sequence_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    sequence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    sequence_name: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_name: Mapped[str] = mapped_column(String(200))
    buyer_account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    buyer_email: Mapped[str] = mapped_column(String(320))
    buyer_name: Mapped[str] = mapped_column(String(200))
    business_name: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=RUN_ACTIVE)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("sequence_id", "order_id"),
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index("ix_sequence_runs_sequence_id_started_at", "sequence_id", "started_at"),
    )


class SequenceStepRun(Base):
    """One step of one run: a copy of the step as it was when the run started, its due
    time and what became of it."""

    __tablename__ = "sequence_step_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # derived from (run, step)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sequence_runs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(30))
    delay_minutes: Mapped[int] = mapped_column(Integer)
    delay_from: Mapped[str] = mapped_column(String(10))
    email_subject: Mapped[str | None] = mapped_column(String(200))
    email_body_markdown: Mapped[str | None] = mapped_column(Text)
    target_offering_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=STEP_PENDING)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # After a failed attempt: not before then (due_at stays what the sequence said).
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the step made: the email's id, or the event's id.
    result_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        UniqueConstraint("run_id", "step_id"),
        CheckConstraint(f"status IN {STEP_STATUSES!r}", name="status"),
        # The runner's query: pending step-runs by due time.
        Index("ix_sequence_step_runs_status_due_at", "status", "due_at"),
    )


class SequenceOrderStop(Base):
    """A full refund or an ended subscription heard for an order: runs of that order that
    start later (their order_paid came late) start stopped when the sequence says so."""

    __tablename__ = "sequence_order_stops"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    cause: Mapped[str] = mapped_column(String(20), primary_key=True)
    business_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class KnownOffering(Base):
    """An offering as announced by ``catalog.offering_published.v1`` (the newest version
    heard of) and ``catalog.offering_archived.v1``: names and details of sequence targets."""

    __tablename__ = "known_offerings"

    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    version_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    version: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
