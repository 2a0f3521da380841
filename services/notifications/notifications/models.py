"""Tables of the notifications service.

``emails`` is both the queue the sender works through and the log the API
shows. Its id is derived from (event id, template, recipient), so handling
an event twice finds the same row instead of queueing a second email.
``businesses`` is a read model of the clients service's businesses.

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


# Nothing is published yet; the table is there for the events this service will emit.
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
