"""Tables of the clients service.

Identity rows (accounts, sessions, one-time tokens) belong to a person, not
to a business: one account can be a coach in one business and a client of
several others. Business-owned rows carry ``business_id``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.db import UTCDateTime, new_metadata, utcnow
from kit.messaging import inbox_table, outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored normalised (trimmed, lower case): the unique constraint is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Business(Base):
    __tablename__ = "businesses"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    owner_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffMember(Base):
    """An account working in a business (its owner, or a coach it added)."""

    __tablename__ = "staff_members"

    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))  # owner | coach
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_staff_members_account_id", "account_id"),)


class LoginSession(Base):
    """A browser or API session: its opaque token is exchanged for short-lived JWTs."""

    __tablename__ = "login_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str | None] = mapped_column(String(300))


class OneTimeToken(Base):
    """Magic links, password resets, email verifications and account claims (an account a
    purchase made gets its password from one): hashed, expiring, single use."""

    __tablename__ = "one_time_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(30))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_path: Mapped[str | None] = mapped_column(String(500))


# -- the client book ---------------------------------------------------------------------


class Client(Base):
    """An account in a business's client list (one per business and account)."""

    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    # invited | signed_up | purchased | booked | appointment | added
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | archived
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("business_id", "account_id"),
        Index("ix_clients_business_id_created_at", "business_id", "created_at"),
    )


class ClientGroup(Base):
    __tablename__ = "client_groups"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    name: Mapped[str] = mapped_column(String(120))
    # Lower-cased name: "Yoga" and "yoga" are the same group in one business.
    name_key: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("business_id", "name_key"),)


class GroupMembership(Base):
    __tablename__ = "group_memberships"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("client_groups.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_group_memberships_client_id", "client_id"),)


class Invitation(Base):
    """An emailed, single-use, expiring link that makes a person a client."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # pending | accepted | revoked ("expired" is pending past expires_at)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    invited_by_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    send_count: Mapped[int] = mapped_column(Integer, default=1)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_invitations_business_id_email", "business_id", "email"),
        Index("ix_invitations_business_id_created_at", "business_id", "created_at"),
    )


class InvitationQuota(Base):
    """Invitation emails a business sent on one (UTC) day, against its daily cap."""

    __tablename__ = "invitation_quotas"

    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)


class TimelineEntry(Base):
    """What happened to a client, newest first on the profile."""

    __tablename__ = "timeline_entries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    # invited | invitation_resent | accepted | added | signed_up | archived | restored |
    # group_added | group_removed | purchased | refunded | booked ...
    kind: Mapped[str] = mapped_column(String(40))
    summary: Mapped[str] = mapped_column(String(300))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_timeline_entries_client_id_occurred_at", "client_id", "occurred_at"),
    )


# -- purchases (the effects of payments.order_paid.v1) -----------------------------------


class PurchaseApplied(Base):
    """An order whose effects were applied: the primary key makes it once per order."""

    __tablename__ = "purchases_applied"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(20))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The group place this order made (None when it made none: not a group offering, or
    # the buyer was a member already), so a refund removes only what the order gave.
    group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # When a full refund took back what the order gave (once).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the group place was taken back, by a refund or the end of the subscription,
    # whichever came first (so it is removed once, never a place given again since).
    group_released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # free | one_time | recurring | payment_plan (the order's ``billing.type``)
    billing_type: Mapped[str] = mapped_column(String(20), default="one_time")
    # Ours (payments'), for a recurring or payment plan order.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class Credit(Base):
    """Sessions bought with an engagement offering, used one at a time until they expire."""

    __tablename__ = "credits"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    # The renewal's Stripe invoice; None for the batch the order's own payment gave.
    invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_name: Mapped[str] = mapped_column(String(200))
    total: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The appointment offerings these credits may book, as bought (the engagement's
    # ``appointment_offering_ids``); None or empty: any appointment offering.
    appointment_offering_ids: Mapped[list[str] | None] = mapped_column(JSON)

    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= total", name="remaining"),
        Index("ix_credits_account_id_business_id", "account_id", "business_id"),
        # One batch from the order's payment; renewals add one per invoice.
        Index(
            "uq_credits_order_id_first",
            "order_id",
            unique=True,
            postgresql_where=text("invoice_id IS NULL"),
            sqlite_where=text("invoice_id IS NULL"),
        ),
    )


class Entitlement(Base):
    """Access bought to a course, worksheet, agreement, package or appointment."""

    __tablename__ = "entitlements"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(20))
    offering_name: Mapped[str] = mapped_column(String(200))
    # active | past_due (a subscription payment failed; access kept while Stripe retries) |
    # ended (the subscription ended and took access back) | group_missing |
    # revoked (a full refund that took access back)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The offering version's details as bought (agreements and worksheets only: the
    # agreement text, the worksheet questions), so what the buyer signs or answers is
    # what they bought even after the coach edits the offering. None for other kinds
    # and for entitlements made before it was kept.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_entitlements_account_id_business_id", "account_id", "business_id"),)


class SubscriptionEventApplied(Base):
    """A subscription event whose effects were applied, by its natural key, so a second
    event for the same invoice (or attempt, or end) changes nothing: ``renewed`` once per
    invoice, ``payment_failed`` once per invoice and attempt, ``ended`` once per
    subscription (invoice_id "" and attempt 0 where they do not apply)."""

    __tablename__ = "subscription_events_applied"

    subscription_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    effect: Mapped[str] = mapped_column(String(20), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- forms (agreements to sign, worksheets to fill) ---------------------------------------


class AgreementSignature(Base):
    """An agreement entitlement signed by its buyer: once (the unique entitlement), with the
    exact text they were shown (the entitlement's snapshot) and its SHA-256."""

    __tablename__ = "agreement_signatures"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    entitlement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entitlements.id"), unique=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    signed_name: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    offering_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    text_sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)


class WorksheetAnswers(Base):
    """A worksheet entitlement's answers: one row, saved again as the buyer edits them.
    ``answers`` is a list of ``{"question", "answer"}`` (the question as bought)."""

    __tablename__ = "worksheet_answers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    entitlement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entitlements.id"), unique=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    answers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- appointments ------------------------------------------------------------------------


class AppointmentSchedule(Base):
    """A business's availability: one row per business. Confirming an appointment locks
    this row (``SELECT … FOR UPDATE``), so confirmations of one business happen one at a
    time and two never overlap."""

    __tablename__ = "appointment_schedules"

    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"), primary_key=True)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # {"mon": [["09:00", "17:00"]], ..., "sun": []} in the business's time zone.
    weekly_hours: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON)
    client_notice_hours: Mapped[int] = mapped_column(Integer, default=24)
    reminder_hours_before: Mapped[int] = mapped_column(Integer, default=24)
    coupon_sites: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlockedTime(Base):
    """Time the business takes out of its weekly hours (holidays, a day off)."""

    __tablename__ = "blocked_times"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_blocked_times_business_id_starts_at", "business_id", "starts_at"),)


class Appointment(Base):
    """A request for a slot of an appointment offering, and what became of it.

    status: awaiting_payment (a paid offering's request until its order is paid; never
    shown to the coach, void after ``hold_expires_at``) | requested | confirmed |
    declined | canceled. ``sequence`` grows with every change (the events carry it).
    """

    __tablename__ = "appointments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    offering_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_name: Mapped[str] = mapped_column(String(200))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    paid_with: Mapped[str] = mapped_column(String(10))  # credit | free | order
    # The requester: the account is None only while an anonymous request awaits payment.
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id"))
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_name: Mapped[str] = mapped_column(String(200))
    client_time_zone: Mapped[str] = mapped_column(String(64))
    coupon_site: Mapped[str | None] = mapped_column(String(200))
    coupon_number: Mapped[str | None] = mapped_column(String(100))
    credit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("credits.id"))
    # When the credit went back (a decline or a cancel): once.
    credit_returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    canceled_by: Mapped[str | None] = mapped_column(String(10))  # coach | client
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("business_id", "idempotency_key"),
        Index("ix_appointments_business_id_starts_at", "business_id", "starts_at"),
        Index("ix_appointments_account_id_starts_at", "account_id", "starts_at"),
    )


# -- sequence actions (notifications.sequence_action_requested.v1) -----------------------


class SequenceActionApplied(Base):
    """A sequence step applied to a client: the primary key makes it once per (run, step)
    however often the event comes. ``entitlement_id`` / ``group_id``: what it gave."""

    __tablename__ = "sequence_actions_applied"

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    step_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    action: Mapped[str] = mapped_column(String(30))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    entitlement_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
