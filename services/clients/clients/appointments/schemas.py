"""Appointments input and output. Input forbids unknown fields; every problem names its
field (a 422 problem+json) and changes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from clients.appointments import slots
from clients.identity.schemas import Input
from kit.validation import Email, Name, clean_text

Status = Literal["awaiting_payment", "requested", "confirmed", "declined", "canceled", "expired"]
PayWith = Literal["credit", "free", "order"]


def _zone_name(value: str) -> str:
    slots.zone(value)
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone offset (e.g. 2027-03-29T09:00:00Z)")
    if value.second or value.microsecond:
        raise ValueError("must be a whole minute")
    return value


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone_name)]
Instant = Annotated[datetime, AfterValidator(_aware)]
CouponSite = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]
CouponNumber = Annotated[str, StringConstraints(max_length=100), AfterValidator(clean_text)]
Reason = Annotated[str, StringConstraints(max_length=200)]


# -- the schedule --------------------------------------------------------------------


class ScheduleIn(Input):
    time_zone: TimeZone
    # {"mon": [["09:00", "17:00"]], ..., "sun": []}; a day left out has no hours.
    # Checked by the service (slots.weekly_hours_problems), each problem naming its
    # field ("weekly_hours.mon.0").
    weekly_hours: dict[str, Any] = Field(max_length=7)
    # The client may cancel or reschedule until this many hours before the start.
    client_notice_hours: int = Field(24, strict=True, ge=0, le=24 * 365)
    # The reminder email goes this many hours before the start; 0: no reminder.
    reminder_hours_before: int = Field(24, strict=True, ge=0, le=24 * 30)
    coupon_sites: list[CouponSite] = Field(default_factory=list, max_length=50)


class ScheduleOut(BaseModel):
    business_id: uuid.UUID
    time_zone: str
    weekly_hours: dict[str, list[list[str]]]
    client_notice_hours: int
    reminder_hours_before: int
    coupon_sites: list[str]


class BlockedTimeIn(Input):
    starts_at: Instant
    ends_at: Instant
    reason: Reason = ""


class BlockedTimeOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_at: datetime


class BlockedTimeList(BaseModel):
    items: list[BlockedTimeOut]


# -- slots ---------------------------------------------------------------------------


class SlotOut(BaseModel):
    starts_at: datetime  # UTC
    ends_at: datetime
    # "Mon 29 Mar 2027, 10:00" in the asked time zone.
    local_label: str


class SlotList(BaseModel):
    # The zone the labels are in (the visitor's, or the business's when none was asked).
    time_zone: str
    business_time_zone: str
    offering_id: uuid.UUID
    offering_name: str
    duration_minutes: int
    buffer_minutes: int
    slots: list[SlotOut]
    # The business's coupon sites: the request form offers them as a choice.
    coupon_sites: list[str] = []


# -- appointments --------------------------------------------------------------------


class AppointmentRequestIn(Input):
    offering_id: uuid.UUID
    starts_at: Instant
    # The requester's zone: emails show times in it.
    time_zone: TimeZone
    coupon_site: CouponSite | None = None
    coupon_number: CouponNumber | None = None
    # Required without a bearer token (a logged-in requester is who the token says).
    name: Name | None = None
    email: Email | None = None
    pay_with: PayWith


class RescheduleIn(Input):
    starts_at: Instant


class AppointmentOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    business_name: str
    business_slug: str
    offering_id: uuid.UUID
    offering_name: str
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    buffer_minutes: int
    status: Status
    paid_with: PayWith
    coupon_site: str | None
    coupon_number: str | None
    client_id: uuid.UUID | None
    client_name: str
    client_email: str
    client_time_zone: str
    business_time_zone: str
    # awaiting_payment only: when the hold lapses unless the order is paid.
    hold_expires_at: datetime | None = None
    # Whether the client may still cancel or reschedule it themselves (notice period).
    client_can_change: bool = False
    sequence: int
    created_at: datetime
    updated_at: datetime


class AppointmentList(BaseModel):
    items: list[AppointmentOut]
