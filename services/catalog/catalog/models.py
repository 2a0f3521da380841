"""Tables of the catalog service.

Every catalog row carries ``business_id`` and every query filters by it.
The read model (businesses, clients, groups, memberships) is built from the
clients service's events and never from its database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
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

DRAFT, PUBLISHED, ARCHIVED = "draft", "published", "archived"
ACTIVE = "active"
KINDS = ("appointment", "engagement", "course", "group", "worksheet", "agreement", "package")
VISIBILITIES = ("public", "unlisted", "established_only", "groups")


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


# -- the catalog ---------------------------------------------------------------------------


class Offering(Base):
    """Something a business sells; what it is lives in its versions."""

    __tablename__ = "offerings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(20), default=DRAFT)  # draft | published | archived
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    current_version_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Spots sold so far (payments will count them); spots left = capacity - spots_taken.
    spots_taken: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"status IN {(DRAFT, PUBLISHED, ARCHIVED)!r}", name="status"),
        Index("ix_offerings_business_id_created_at", "business_id", "created_at"),
    )


class OfferingVersion(Base):
    """One version of an offering. A draft's only version is edited in place; once
    published a version never changes (an edit makes the next one)."""

    __tablename__ = "offering_versions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    offering_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offerings.id"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    billing: Mapped[dict[str, Any]] = mapped_column(JSON)
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    visibility: Mapped[str] = mapped_column(String(20))
    group_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    capacity: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("offering_id", "version"),
        CheckConstraint("price_minor >= 0 AND price_minor <= 99999999", name="price_minor"),
        Index("ix_offering_versions_business_id", "business_id"),
    )


class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    offering_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # in order
    in_app: Mapped[bool] = mapped_column(Boolean, default=False)
    established_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_collections_business_id_created_at", "business_id", "created_at"),)


class DiscountCode(Base):
    """A code worth a percentage or an amount off; deleting one keeps its row (and
    redemptions) but frees the code for a new one."""

    __tablename__ = "discount_codes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    code: Mapped[str] = mapped_column(String(40))  # as the coach wrote it
    code_key: Mapped[str] = mapped_column(String(40))  # lower case: codes match case-insensitively
    percent_off: Mapped[int | None] = mapped_column(Integer)
    amount_off_minor: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    max_per_client: Mapped[int | None] = mapped_column(Integer)
    offering_ids: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every offering
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(
            "(percent_off IS NULL) <> (amount_off_minor IS NULL)", name="one_kind_of_discount"
        ),
        Index(
            "uq_discount_codes_business_id_code_key",
            "business_id",
            "code_key",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )


class DiscountRedemption(Base):
    """One use of a code in a purchase (payments records them)."""

    __tablename__ = "discount_redemptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    business_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    discount_code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("discount_codes.id"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    offering_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_discount_redemptions_code_account", "discount_code_id", "account_id"),
    )


# -- the read model of the client book (from the clients service's events) ----------------


class KnownBusiness(Base):
    __tablename__ = "businesses"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownClient(Base):
    """A client of a business and whether they are active, as of ``status_at``."""

    __tablename__ = "clients"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(20))  # active | archived
    status_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_clients_account_id", "account_id"),)


class KnownGroup(Base):
    __tablename__ = "groups"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))  # null if only its deletion is known
    name_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GroupMembership(Base):
    """Added or removed as of ``changed_at``; a removal stays (as ``is_member`` false)
    so a late "added" that happened before it cannot bring the membership back."""

    __tablename__ = "group_memberships"

    business_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    is_member: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_group_memberships_account_id", "account_id"),)
