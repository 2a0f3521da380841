"""Appointment emails: what each ``clients.appointment_*.v1`` event calls for.

Every event carries the whole appointment as it is now and a ``sequence``
that grows with each change. Each email's id derives from (appointment,
sequence, template, recipient), so a redelivery, or the same change
published again under a new event id, finds its row and sends nothing more.

- requested: the client ("we got your request") and the coach (the
  business's owner; the event is retried until ``clients.business_created.v1``
  has been seen, like the coach's subscription email);
- confirmed (with the coupon site and number when given), declined: the client;
- rescheduled (old and new time): the client and the coach;
- canceled (by whom): the client, and the coach when the client canceled;
- reminder: a row queued with the confirmation (or the reschedule of a
  confirmed appointment), due ``reminder_hours_before`` hours before the
  start; the sender takes no row before it is due. The next change of the
  appointment deletes it while it is still waiting, so a canceled or moved
  appointment's reminder never goes out (a moved one gets its own).

Times are written in the recipient's zone (the client's, or the business's
for the coach) with zoneinfo, so a date past a daylight-saving change in
one zone and not the other still shows the right hour, with the zone named.
Each email carries an ``.ics`` (REQUEST while the appointment stands,
CANCEL once declined or canceled) with UID ``<appointment id>@clientele``
and SEQUENCE = the event's sequence, so a calendar keeps the newest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.clients import (
    AppointmentCanceledV1,
    AppointmentConfirmedV1,
    AppointmentDeclinedV1,
    AppointmentRequestedV1,
    AppointmentRescheduledV1,
)
from kit.db import insert_ignoring_conflicts, utcnow
from kit.logging import get_logger
from kit.validation import normalize_email
from notifications.emails import calendar
from notifications.emails.attachments import Attachment
from notifications.emails.rendering import one_line
from notifications.emails.service import BusinessNotKnownYet, EmailService, email_id
from notifications.models import QUEUED, AppointmentState, Email, KnownBusiness

log = get_logger(__name__)

APPOINTMENT_REQUESTED = "appointment_requested"
APPOINTMENT_REQUESTED_COACH = "appointment_requested_coach"
APPOINTMENT_CONFIRMED = "appointment_confirmed"
APPOINTMENT_DECLINED = "appointment_declined"
APPOINTMENT_RESCHEDULED = "appointment_rescheduled"
APPOINTMENT_RESCHEDULED_COACH = "appointment_rescheduled_coach"
APPOINTMENT_CANCELED = "appointment_canceled"
APPOINTMENT_CANCELED_COACH = "appointment_canceled_coach"
APPOINTMENT_REMINDER = "appointment_reminder"

CONFIRMED = "confirmed"
ICS_FILENAME = "appointment.ics"

AppointmentEvent = (
    AppointmentRequestedV1
    | AppointmentConfirmedV1
    | AppointmentDeclinedV1
    | AppointmentRescheduledV1
    | AppointmentCanceledV1
)


def appointment_key(appointment_id: uuid.UUID, sequence: int) -> str:
    """The natural key of the emails about one version of an appointment."""
    return f"appointment:{appointment_id}:{sequence}"


def calendar_uid(appointment_id: uuid.UUID) -> str:
    return f"{appointment_id}@clientele"


# -- times in the recipient's zone --------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA zone; UTC (logged) when the name is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("appointment_time_zone_unknown", time_zone=one_line(name, 64))
        return ZoneInfo("UTC")


def _plain(text: str) -> str:
    # CLDR puts narrow or no-break spaces in times ("10:00\u202fAM"): plain ones read everywhere.
    return text.replace("\u202f", " ").replace("\xa0", " ")


def _day(moment: datetime, locale: str) -> str:
    return _plain(str(format_date(moment.date(), format="full", locale=locale)))


def _clock(moment: datetime, locale: str) -> str:
    return _plain(str(format_time(moment.time(), format="short", locale=locale)))


def describe_when(starts_at: datetime, ends_at: datetime, zone_name: str, locale: str) -> str:
    """'Saturday, March 20, 2027, 10:00 AM – 11:00 AM EDT (America/New_York)'."""
    tz = zone(zone_name)
    start, end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    until = _clock(end, locale)
    if end.date() != start.date():
        until = f"{_day(end, locale)}, {until}"
    abbreviation = f" {start.tzname()}" if start.tzname() and start.tzname() != tz.key else ""
    return f"{_day(start, locale)}, {_clock(start, locale)} – {until}{abbreviation} ({tz.key})"


def describe_start(starts_at: datetime, zone_name: str, locale: str) -> str:
    """'Saturday, March 20, 2027, 10:00 AM EDT (America/New_York)'."""
    tz = zone(zone_name)
    start = starts_at.astimezone(tz)
    abbreviation = f" {start.tzname()}" if start.tzname() and start.tzname() != tz.key else ""
    return f"{_day(start, locale)}, {_clock(start, locale)}{abbreviation} ({tz.key})"


def _address(value: str) -> str:
    """An address to show or put in the .ics (normalised when it is one), on one line."""
    try:
        return normalize_email(value)
    except ValueError:
        return one_line(value, 320)


# -- the emails ----------------------------------------------------------------------------


@dataclass
class AppointmentEmails:
    emails: EmailService

    @property
    def session(self) -> AsyncSession:
        return self.emails.session

    async def handle(self, event: AppointmentEvent) -> None:
        first_time, newest = await self._advance(event)
        if not newest:
            log.info(
                "appointment_event_superseded",
                appointment_id=str(event.appointment_id),
                sequence=event.sequence,
            )
            return
        business = await self._business(event)
        if isinstance(event, AppointmentRequestedV1):
            await self._requested(event, business)
        elif isinstance(event, AppointmentConfirmedV1):
            await self._to_client(event, APPOINTMENT_CONFIRMED, business)
        elif isinstance(event, AppointmentDeclinedV1):
            await self._to_client(event, APPOINTMENT_DECLINED, business)
        elif isinstance(event, AppointmentRescheduledV1):
            await self._rescheduled(event, business)
        else:
            await self._canceled(event, business)
        if first_time:
            await self._schedule_reminder(event, business)

    # -- the appointment's state ---------------------------------------------------------

    async def _advance(self, event: AppointmentEvent) -> tuple[bool, bool]:
        """Lock the appointment's row and move it to this event's sequence.

        Returns (first time this sequence is seen, this is the newest sequence). A
        newer change deletes the reminder the older one left waiting.
        """
        table = AppointmentState.__table__
        dialect = str(self.session.get_bind().dialect.name)
        inserted = await self.session.execute(
            insert_ignoring_conflicts(dialect, table)  # type: ignore[arg-type]
            .values(
                appointment_id=event.appointment_id,
                business_id=event.business_id,
                sequence=event.sequence,
                status=one_line(event.status, 20),
                reminder_email_id=None,
                updated_at=utcnow(),
            )
            .returning(table.c.appointment_id)
        )
        if inserted.first() is not None:
            return True, True
        state = (
            await self.session.execute(
                select(AppointmentState)
                .where(AppointmentState.appointment_id == event.appointment_id)
                .with_for_update()
            )
        ).scalar_one()
        if event.sequence < state.sequence:
            return False, False
        if event.sequence == state.sequence:
            return False, True  # a redelivery: its emails are there already
        if state.reminder_email_id is not None:
            await self._drop_reminder(state.reminder_email_id, event)
        await self.session.execute(
            update(AppointmentState)
            .where(AppointmentState.appointment_id == event.appointment_id)
            .values(
                sequence=event.sequence,
                status=one_line(event.status, 20),
                reminder_email_id=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return True, True

    async def _drop_reminder(self, reminder_id: uuid.UUID, event: AppointmentEvent) -> None:
        # Only while it waits: one the sender already holds (or sent) is its own.
        result = await self.session.execute(
            delete(Email).where(Email.id == reminder_id, Email.status == QUEUED)
        )
        if getattr(result, "rowcount", 0):
            log.info(
                "appointment_reminder_dropped",
                email_id=str(reminder_id),
                appointment_id=str(event.appointment_id),
                sequence=event.sequence,
            )

    async def _schedule_reminder(
        self, event: AppointmentEvent, business: KnownBusiness | None
    ) -> None:
        hours = event.reminder_hours_before
        if event.status != CONFIRMED or hours <= 0:
            return
        if not isinstance(event, AppointmentConfirmedV1 | AppointmentRescheduledV1):
            return
        due = event.starts_at - timedelta(hours=hours)
        # Confirmed too late for it (the confirmation just said when), or handled so late
        # that the appointment has begun: no reminder.
        if due <= event.occurred_at or event.starts_at <= utcnow():
            return
        template = APPOINTMENT_REMINDER
        context = self._client_context(event, business)
        context["hours_before"] = hours
        recipient = event.client_email
        await self.emails.queue(
            event,
            template,
            recipient,
            context,
            event.business_id,
            key=appointment_key(event.appointment_id, event.sequence),
            attachments=[self._ics(event, business, for_coach=False)],
            send_at=due,
        )
        try:
            reminder_id = email_id(
                appointment_key(event.appointment_id, event.sequence),
                template,
                normalize_email(recipient),
            )
        except ValueError:
            return  # queued as failed: nothing waits
        await self.session.execute(
            update(AppointmentState)
            .where(AppointmentState.appointment_id == event.appointment_id)
            .values(reminder_email_id=reminder_id)
            .execution_options(synchronize_session=False)
        )

    async def _business(self, event: AppointmentEvent) -> KnownBusiness | None:
        if event.business_id is None:
            return None
        return await self.emails.repo.business_by_id(event.business_id)

    def _coach(self, event: AppointmentEvent, business: KnownBusiness | None) -> KnownBusiness:
        """The business, for an email to its owner: retried until it is known."""
        if business is None:
            raise BusinessNotKnownYet(f"business {event.business_id} not known yet")
        return business

    # -- by event ----------------------------------------------------------------------

    async def _requested(
        self, event: AppointmentRequestedV1, business: KnownBusiness | None
    ) -> None:
        if event.business_id is None:
            log.error("appointment_without_business_id", appointment_id=str(event.appointment_id))
        else:
            # Checked first: raising rolls back the client's email too, so both are
            # queued together when the event is retried.
            self._coach(event, business)
        await self._to_client(event, APPOINTMENT_REQUESTED, business)
        if business is not None:
            await self._to_coach(event, APPOINTMENT_REQUESTED_COACH, business)

    async def _rescheduled(
        self, event: AppointmentRescheduledV1, business: KnownBusiness | None
    ) -> None:
        # The coach hears of a move only when the client made it.
        tell_coach = event.rescheduled_by == "client" and event.business_id is not None
        if tell_coach:
            self._coach(event, business)
        await self._to_client(event, APPOINTMENT_RESCHEDULED, business)
        if tell_coach and business is not None:
            await self._to_coach(event, APPOINTMENT_RESCHEDULED_COACH, business)

    async def _canceled(self, event: AppointmentCanceledV1, business: KnownBusiness | None) -> None:
        tell_coach = event.canceled_by == "client" and event.business_id is not None
        if tell_coach:
            self._coach(event, business)
        await self._to_client(event, APPOINTMENT_CANCELED, business)
        if tell_coach and business is not None:
            await self._to_coach(event, APPOINTMENT_CANCELED_COACH, business)

    # -- rendering and queueing ------------------------------------------------------------

    def _common(self, event: AppointmentEvent, business: KnownBusiness | None) -> dict[str, Any]:
        named = one_line(event.business_name)
        return {
            "business_name": named or (business.name if business else "") or "your coach",
            "offering_name": one_line(event.offering_name) or "Appointment",
            "client_name": one_line(event.client_name) or "A client",
            "client_email": _address(event.client_email),
            "coupon_site": one_line(event.coupon_site, 100) if event.coupon_site else None,
            "coupon_number": one_line(event.coupon_number, 100) if event.coupon_number else None,
            "status": event.status,
            "canceled_by": getattr(event, "canceled_by", None),
        }

    def _times(self, event: AppointmentEvent, zone_name: str) -> dict[str, Any]:
        locale = self.emails.settings.price_locale
        previous = getattr(event, "previous_starts_at", None)
        return {
            "when": describe_when(event.starts_at, event.ends_at, zone_name, locale),
            "previous_when": describe_start(previous, zone_name, locale) if previous else None,
            "time_zone": zone(zone_name).key,
        }

    def _client_context(
        self, event: AppointmentEvent, business: KnownBusiness | None
    ) -> dict[str, Any]:
        return {
            **self._common(event, business),
            **self._times(event, event.client_time_zone),
            "name": one_line(event.client_name) or "there",
            "home_url": self.emails._link("/home"),
        }

    async def _to_client(
        self, event: AppointmentEvent, template: str, business: KnownBusiness | None
    ) -> None:
        await self.emails.queue(
            event,
            template,
            event.client_email,
            self._client_context(event, business),
            event.business_id,
            key=appointment_key(event.appointment_id, event.sequence),
            attachments=[self._ics(event, business, for_coach=False)],
        )

    async def _to_coach(
        self, event: AppointmentEvent, template: str, business: KnownBusiness
    ) -> None:
        context = {
            **self._common(event, business),
            **self._times(event, event.business_time_zone),
            "calendar_url": self.emails._link(f"/businesses/{business.business_id}/calendar"),
        }
        await self.emails.queue(
            event,
            template,
            business.owner_email,
            context,
            event.business_id,
            key=appointment_key(event.appointment_id, event.sequence),
            attachments=[self._ics(event, business, for_coach=True)],
        )

    def _ics(
        self, event: AppointmentEvent, business: KnownBusiness | None, *, for_coach: bool
    ) -> Attachment:
        common = self._common(event, business)
        ended = isinstance(event, AppointmentCanceledV1 | AppointmentDeclinedV1)
        if ended:
            method, status = calendar.CANCEL, calendar.CANCELLED
        elif event.status == CONFIRMED:
            method, status = calendar.REQUEST, calendar.CONFIRMED
        else:
            method, status = calendar.REQUEST, calendar.TENTATIVE
        with_whom = common["client_name"] if for_coach else common["business_name"]
        description = [f"{common['offering_name']} with {with_whom}."]
        if common["coupon_site"] or common["coupon_number"]:
            coupon = " ".join(v for v in (common["coupon_site"], common["coupon_number"]) if v)
            description.append(f"Coupon: {coupon}")
        organizer_email = (
            _address(business.owner_email) if business else self.emails.settings.mail_from_address
        )
        text = calendar.calendar(
            calendar.CalendarEvent(
                uid=calendar_uid(event.appointment_id),
                sequence=event.sequence,
                stamp=event.occurred_at,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                summary=f"{common['offering_name']} with {with_whom}",
                description="\n".join(description),
                organizer=calendar.Person(common["business_name"], organizer_email),
                attendee=calendar.Person(common["client_name"], common["client_email"]),
                method=method,
                status=status,
            )
        )
        return Attachment(
            filename=ICS_FILENAME,
            content_type="text/calendar",
            params={"method": method},
            text=text,
        )
