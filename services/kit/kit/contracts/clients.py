"""Events published by the clients service.

Tokens travel only in these bodies (never in logs): notifications needs
them to build the links it emails.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from kit.contracts.base import Event


class AccountRegisteredV1(Event):
    name: ClassVar[str] = "clients.account_registered.v1"

    account_id: uuid.UUID
    email: str
    display_name: str
    # Single-use token that verifies the email address; emailed in the welcome.
    verification_token: str | None = None
    verification_expires_at: datetime | None = None
    # How the account came to be: "coach_signup", "invitation" or "purchase".
    origin: str = "coach_signup"
    # The business created with the account (coach_signup), or the one the buyer
    # bought from (purchase), when there is one (for the email it calls for).
    business_name: str | None = None
    # origin "purchase" only: the account has no password yet. This single-use token
    # lets its owner set one (the claim-your-account email links to it).
    claim_token: str | None = None
    claim_expires_at: datetime | None = None


class BusinessCreatedV1(Event):
    name: ClassVar[str] = "clients.business_created.v1"

    business_name: str
    slug: str
    owner_account_id: uuid.UUID
    owner_email: str


class MagicLinkRequestedV1(Event):
    name: ClassVar[str] = "clients.magic_link_requested.v1"

    account_id: uuid.UUID
    email: str
    display_name: str
    token: str
    expires_at: datetime
    next_path: str | None = None


class PasswordResetRequestedV1(Event):
    name: ClassVar[str] = "clients.password_reset_requested.v1"

    account_id: uuid.UUID
    email: str
    display_name: str
    token: str
    expires_at: datetime


class EmailVerificationRequestedV1(Event):
    name: ClassVar[str] = "clients.email_verification_requested.v1"

    account_id: uuid.UUID
    email: str
    display_name: str
    token: str
    expires_at: datetime


# -- the client book ---------------------------------------------------------------------
# business_id is always set on these.


class ClientAddedV1(Event):
    """An account became a client of a business (or came back after being removed)."""

    name: ClassVar[str] = "clients.client_added.v1"

    client_id: uuid.UUID
    account_id: uuid.UUID
    email: str
    display_name: str
    business_name: str
    # invited | signed_up | purchased | booked | added
    source: str
    # True when the person should be told by email (added by a coach directly).
    notify: bool = False


class ClientArchivedV1(Event):
    name: ClassVar[str] = "clients.client_archived.v1"

    client_id: uuid.UUID
    account_id: uuid.UUID


class ClientRestoredV1(Event):
    name: ClassVar[str] = "clients.client_restored.v1"

    client_id: uuid.UUID
    account_id: uuid.UUID


class InvitationSentV1(Event):
    """An invitation email is due (first sending or a resend); the token is in the body."""

    name: ClassVar[str] = "clients.invitation_sent.v1"

    invitation_id: uuid.UUID
    email: str
    business_name: str
    inviter_name: str
    token: str
    expires_at: datetime
    resend: bool = False


class GroupCreatedV1(Event):
    name: ClassVar[str] = "clients.group_created.v1"

    group_id: uuid.UUID
    group_name: str


class GroupRenamedV1(Event):
    name: ClassVar[str] = "clients.group_renamed.v1"

    group_id: uuid.UUID
    group_name: str


class GroupDeletedV1(Event):
    """The group is gone; its memberships ended with it (no separate removal events)."""

    name: ClassVar[str] = "clients.group_deleted.v1"

    group_id: uuid.UUID


class GroupMemberAddedV1(Event):
    name: ClassVar[str] = "clients.group_member_added.v1"

    group_id: uuid.UUID
    client_id: uuid.UUID
    account_id: uuid.UUID


class GroupMemberRemovedV1(Event):
    name: ClassVar[str] = "clients.group_member_removed.v1"

    group_id: uuid.UUID
    client_id: uuid.UUID
    account_id: uuid.UUID


# -- appointments ----------------------------------------------------------------------
#
# Every change of an appointment is one event carrying the whole appointment as it is
# now (so an email or a calendar entry never needs to look anything up). ``sequence``
# grows with every change: it is the .ics SEQUENCE and part of each email's dedupe key.


class _AppointmentFacts(Event):
    appointment_id: uuid.UUID
    offering_id: uuid.UUID
    offering_name: str
    business_name: str
    business_time_zone: str
    client_account_id: uuid.UUID
    client_email: str
    client_name: str
    client_time_zone: str
    starts_at: datetime
    ends_at: datetime
    coupon_site: str | None = None
    coupon_number: str | None = None
    status: str
    sequence: int
    reminder_hours_before: int = 0


class AppointmentRequestedV1(_AppointmentFacts):
    """A person asked for a slot (status ``requested``); the coach decides."""

    name: ClassVar[str] = "clients.appointment_requested.v1"


class AppointmentConfirmedV1(_AppointmentFacts):
    name: ClassVar[str] = "clients.appointment_confirmed.v1"


class AppointmentDeclinedV1(_AppointmentFacts):
    name: ClassVar[str] = "clients.appointment_declined.v1"


class AppointmentRescheduledV1(_AppointmentFacts):
    """The time changed (by the coach or the client); ``starts_at`` is the new one."""

    name: ClassVar[str] = "clients.appointment_rescheduled.v1"

    previous_starts_at: datetime
    rescheduled_by: str = "coach"  # coach | client


class AppointmentCanceledV1(_AppointmentFacts):
    name: ClassVar[str] = "clients.appointment_canceled.v1"

    canceled_by: str  # coach | client
