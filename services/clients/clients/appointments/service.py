"""Appointments: a business's availability, requests for its slots and what the coach
and the client do with them.

Rules (see docs/architecture.md, "Appointments"):

- The offering (duration, buffer, who may self-book, price) comes from the catalog's
  quote for the viewer, over HTTP with the viewer's bearer token: a refusal there
  (not published, established clients only, group only…) is passed on unchanged.
- A request names a free slot (``slots.py``) and pays with a credit (the applicable
  valid credit expiring first, decremented in the same transaction), nothing (a free
  offering), or an order: then it waits as ``awaiting_payment`` (never shown to the
  coach, void after ``CLIENTS_APPOINTMENT_HOLD_MINUTES``) until ``payments.order_paid.v1``
  names it (``appointment_id``) and makes it a request.
- The requester becomes a client (account by id, else by email, else made), source
  ``appointment``, through the client book's one way in.
- Confirming (and any reschedule of a confirmed appointment) locks the business's
  schedule row first, then checks for an overlap with the other confirmed
  appointments, buffers included: of two confirmations of one slot, one waits for the
  other and gets 409.
- The client cancels or reschedules until ``client_notice_hours`` before the start; a
  declined or canceled appointment paid with a credit gives the credit back, once.
- Every change writes its event (the whole appointment, ``sequence`` + 1) in the same
  transaction, through the outbox.
- Group membership is never looked at after the request: removing a client from a
  group leaves their appointments as they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clients.appointments import schemas, slots
from clients.appointments.repository import LONGEST, AppointmentRepository
from clients.book.service import ClientBook, timeline_row
from clients.config import ClientsSettings
from clients.identity.service import IdentityService
from clients.models import Account, Appointment, AppointmentSchedule, BlockedTime, Business
from kit.auth import Principal
from kit.catalog_quotes import CatalogClient, Quote
from kit.contracts.clients import (
    AppointmentCanceledV1,
    AppointmentConfirmedV1,
    AppointmentDeclinedV1,
    AppointmentRequestedV1,
    AppointmentRescheduledV1,
)
from kit.contracts.payments import OrderPaidV1
from kit.db import utcnow
from kit.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound, Unauthorized
from kit.logging import get_logger
from kit.messaging import Outbox

log = get_logger(__name__)

AWAITING_PAYMENT = "awaiting_payment"
REQUESTED = "requested"
CONFIRMED = "confirmed"
DECLINED = "declined"
CANCELED = "canceled"
EXPIRED = "expired"  # shown only: an awaiting_payment request past its hold
OPEN = (REQUESTED, CONFIRMED)
COACH_STATUSES = (REQUESTED, CONFIRMED, DECLINED, CANCELED)

DEFAULT_SCHEDULE: dict[str, Any] = {
    "time_zone": "UTC",
    "weekly_hours": {day: [] for day in slots.DAYS},
    "client_notice_hours": 24,
    "reminder_hours_before": 24,
    "coupon_sites": [],
}
TIMELINE_KINDS: dict[type[Any], str] = {
    AppointmentConfirmedV1: "appointment_confirmed",
    AppointmentDeclinedV1: "appointment_declined",
    AppointmentCanceledV1: "appointment_canceled",
    AppointmentRescheduledV1: "appointment_rescheduled",
}
MAX_SLOT_DAYS = 62
MAX_LIST_DAYS = 400
MAX_BLOCK_DAYS = 366


@dataclass(frozen=True)
class Settings:
    """A schedule as the rules read it (the defaults when the business set none)."""

    time_zone: str
    weekly_hours: dict[str, list[list[str]]]
    client_notice_hours: int
    reminder_hours_before: int
    coupon_sites: list[str]

    @classmethod
    def of(cls, row: AppointmentSchedule | None) -> Settings:
        if row is None:
            return cls(**DEFAULT_SCHEDULE)
        return cls(
            time_zone=row.time_zone,
            weekly_hours=slots.normalized_hours(row.weekly_hours or {}),
            client_notice_hours=row.client_notice_hours,
            reminder_hours_before=row.reminder_hours_before,
            coupon_sites=list(row.coupon_sites or []),
        )

    @property
    def zone(self) -> Any:
        return slots.zone(self.time_zone)


@dataclass(frozen=True)
class Offering:
    """The appointment offering, from its quote."""

    id: uuid.UUID
    version_id: uuid.UUID
    name: str
    duration_minutes: int
    buffer_minutes: int
    new_clients_can_self_book: bool
    free: bool

    @classmethod
    def of(cls, quote: Quote) -> Offering:
        details = quote.details
        duration = details.get("duration_minutes")
        buffer = details.get("buffer_minutes") or 0
        return cls(
            id=quote.offering_id,
            version_id=quote.version_id,
            name=quote.name,
            duration_minutes=duration if isinstance(duration, int) and duration > 0 else 60,
            buffer_minutes=buffer if isinstance(buffer, int) and buffer > 0 else 0,
            new_clients_can_self_book=details.get("new_clients_can_self_book", True) is not False,
            free=quote.free,
        )


def _invalid(errors: list[FieldError]) -> InvalidInput:
    return InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def credit_applies(appointment_offering_ids: list[str] | None, offering_id: uuid.UUID) -> bool:
    """A credit books any appointment offering unless its engagement named some."""
    if not appointment_offering_ids:
        return True
    return str(offering_id) in {str(i) for i in appointment_offering_ids}


@dataclass
class AppointmentService:
    session: AsyncSession
    outbox: Outbox
    settings: ClientsSettings
    identity: IdentityService | None = None
    catalog: CatalogClient | None = None

    def __post_init__(self) -> None:
        self.repo = AppointmentRepository(self.session)
        self.book = ClientBook(self.session, self.outbox)

    # -- the schedule --------------------------------------------------------------

    async def _business(self, business_id: uuid.UUID) -> Business:
        business = await self.repo.business(business_id)
        if business is None:
            raise NotFound("No such business.")
        return business

    async def _public_business(self, slug: str) -> Business:
        business = await self.repo.business_by_slug(slug)
        if business is None:
            raise NotFound("No such business.")
        return business

    async def _settings(self, business_id: uuid.UUID) -> Settings:
        return Settings.of(await self.repo.schedule(business_id))

    async def schedule(self, business_id: uuid.UUID) -> schemas.ScheduleOut:
        await self._business(business_id)
        found = await self._settings(business_id)
        return schemas.ScheduleOut(business_id=business_id, **found.__dict__)

    async def set_schedule(
        self, business_id: uuid.UUID, body: schemas.ScheduleIn
    ) -> schemas.ScheduleOut:
        await self._business(business_id)
        problems = slots.weekly_hours_problems(body.weekly_hours)
        if problems:
            raise _invalid([FieldError(field, message) for field, message in problems])
        hours = slots.normalized_hours(body.weekly_hours)
        seen: dict[str, str] = {}
        for site in body.coupon_sites:
            seen.setdefault(site.casefold(), site)
        await self.repo.lock_schedule(business_id, self._defaults())
        row = await self.repo.schedule(business_id)
        assert row is not None
        await self.session.refresh(row)
        row.time_zone = body.time_zone
        row.weekly_hours = hours
        row.client_notice_hours = body.client_notice_hours
        row.reminder_hours_before = body.reminder_hours_before
        row.coupon_sites = list(seen.values())
        row.updated_at = utcnow()
        await self.session.flush()
        return await self.schedule(business_id)

    @staticmethod
    def _defaults() -> dict[str, object]:
        return {**DEFAULT_SCHEDULE, "updated_at": utcnow()}

    # -- blocked times -------------------------------------------------------------

    async def blocked_times(self, business_id: uuid.UUID) -> schemas.BlockedTimeList:
        await self._business(business_id)
        rows = await self.repo.blocked_times(business_id)
        return schemas.BlockedTimeList(items=[_blocked_out(b) for b in rows])

    async def block(
        self, business_id: uuid.UUID, body: schemas.BlockedTimeIn
    ) -> schemas.BlockedTimeOut:
        await self._business(business_id)
        if body.ends_at <= body.starts_at:
            raise InvalidInput.for_field("ends_at", "must be after starts_at")
        if body.ends_at - body.starts_at > timedelta(days=MAX_BLOCK_DAYS):
            raise InvalidInput.for_field(
                "ends_at", f"at most {MAX_BLOCK_DAYS} days after starts_at"
            )
        row = BlockedTime(
            id=uuid.uuid4(),
            business_id=business_id,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason.strip(),
            created_at=utcnow(),
        )
        await self.repo.add(row)
        return _blocked_out(row)

    async def unblock(self, business_id: uuid.UUID, blocked_id: uuid.UUID) -> None:
        row = await self.repo.blocked_time(business_id, blocked_id)
        if row is None:
            raise NotFound("No such blocked time.")
        await self.repo.delete(row)

    # -- slots ---------------------------------------------------------------------

    async def _offering(
        self, business: Business, offering_id: uuid.UUID, bearer: str | None
    ) -> Offering:
        assert self.catalog is not None
        quote = await self.catalog.quote(offering_id, bearer)
        if quote.business_id != business.id or quote.kind != "appointment":
            raise NotFound("No such appointment offering.", reason="not_found")
        return Offering.of(quote)

    async def _free(
        self,
        business_id: uuid.UUID,
        found: Settings,
        offering_duration: int,
        offering_buffer: int,
        start: datetime,
        end: datetime,
        now: datetime,
        *,
        excluding: uuid.UUID | None = None,
    ) -> list[slots.Interval]:
        busy = [
            slots.Busy(a.starts_at, a.ends_at, a.buffer_minutes)
            for a in await self.repo.confirmed_between(
                business_id, start, end + LONGEST, excluding=excluding
            )
        ]
        blocked = [
            (b.starts_at, b.ends_at)
            for b in await self.repo.blocked_times(business_id, start, end + LONGEST)
        ]
        return slots.free_slots(
            hours=found.weekly_hours,
            tz=found.zone,
            start=start,
            end=end,
            duration_minutes=offering_duration,
            buffer_minutes=offering_buffer,
            busy=busy,
            blocked=blocked,
            now=now,
        )

    async def slots(
        self,
        slug: str,
        offering_id: uuid.UUID,
        *,
        first_day: date | None,
        days: int,
        time_zone: str | None,
        bearer: str | None,
    ) -> schemas.SlotList:
        business = await self._public_business(slug)
        found = await self._settings(business.id)
        try:
            viewer_zone = slots.zone(time_zone) if time_zone else found.zone
        except ValueError as exc:
            raise InvalidInput.for_field("tz", str(exc), "query") from exc
        offering = await self._offering(business, offering_id, bearer)
        now = utcnow()
        first = first_day or now.astimezone(viewer_zone).date()
        start = slots.local_midnight(first, viewer_zone)
        end = slots.local_midnight(first + timedelta(days=days), viewer_zone)
        free = await self._free(
            business.id, found, offering.duration_minutes, offering.buffer_minutes, start, end, now
        )
        return schemas.SlotList(
            time_zone=str(viewer_zone.key),
            business_time_zone=found.time_zone,
            offering_id=offering.id,
            offering_name=offering.name,
            duration_minutes=offering.duration_minutes,
            buffer_minutes=offering.buffer_minutes,
            slots=[
                schemas.SlotOut(
                    starts_at=s, ends_at=e, local_label=slots.local_label(s, viewer_zone)
                )
                for s, e in free
            ],
            coupon_sites=list(found.coupon_sites),
        )

    async def _slot_is_free(
        self,
        business_id: uuid.UUID,
        found: Settings,
        duration: int,
        buffer: int,
        starts_at: datetime,
        *,
        excluding: uuid.UUID | None = None,
    ) -> bool:
        free = await self._free(
            business_id,
            found,
            duration,
            buffer,
            starts_at,
            starts_at + timedelta(minutes=1),
            utcnow(),
            excluding=excluding,
        )
        return any(s == starts_at for s, _ in free)

    # -- requests ------------------------------------------------------------------

    async def request(
        self,
        slug: str,
        body: schemas.AppointmentRequestIn,
        idempotency_key: str,
        viewer: Principal | None,
        bearer: str | None,
    ) -> schemas.AppointmentOut:
        business = await self._public_business(slug)
        existing = await self.repo.by_key(business.id, idempotency_key)
        if existing is not None:
            return await self._replay(existing, body, viewer)
        account = await self.repo.account(viewer.account_id) if viewer else None
        if viewer is not None and account is None:
            raise Unauthorized("No such account.")
        if viewer is None and body.pay_with == "credit":
            raise Unauthorized("Log in to book with a credit.", reason="login_required")
        missing = [] if viewer else [f for f in ("name", "email") if getattr(body, f) is None]
        if missing:
            raise _invalid([FieldError(f, "required when not logged in") for f in missing])
        email = account.email if account else str(body.email)
        name = account.display_name if account else str(body.name)
        offering = await self._offering(business, body.offering_id, bearer)
        found = await self._settings(business.id)
        now = utcnow()
        starts_at = body.starts_at.astimezone(slots.zone("UTC"))

        # What pays for it.
        credits = (
            [
                c
                for c in await self.repo.usable_credits(business.id, account.id, now)
                if credit_applies(c.appointment_offering_ids, offering.id)
            ]
            if account is not None
            else []
        )
        if body.pay_with == "free" and not offering.free:
            raise InvalidInput.for_field("pay_with", "this offering is not free")
        if body.pay_with == "order" and offering.free:
            raise InvalidInput.for_field("pay_with", "this offering is free: use 'free'")
        if body.pay_with == "credit":
            if account is None:
                raise Unauthorized("Log in to book with a credit.", reason="login_required")
            if not credits:
                raise InvalidInput(
                    "You hold no credit for this appointment.",
                    errors=[FieldError("pay_with", "no valid credit applies to this offering")],
                    reason="no_credit",
                )
        if not offering.new_clients_can_self_book:
            entitled = account is not None and await self.repo.has_entitlement(
                business.id, account.id, offering.id
            )
            if not credits and not entitled:
                raise Forbidden(
                    "Only clients holding a credit for it can book this appointment.",
                    reason="not_self_bookable",
                )
        if body.coupon_site is not None and body.coupon_site not in found.coupon_sites:
            raise InvalidInput.for_field("coupon_site", "not one of the business's coupon sites")
        if not await self._slot_is_free(
            business.id, found, offering.duration_minutes, offering.buffer_minutes, starts_at
        ):
            raise Conflict(
                "That time is not free; pick another slot.",
                errors=[FieldError("starts_at", "not a free slot of this offering")],
                reason="slot_not_available",
            )

        # Who asks: a client of the business (unless the request waits for payment:
        # then the order's payment makes them one).
        client_id = None
        if body.pay_with != "order":
            assert self.identity is not None
            [account] = await self.identity.accounts_for_purchases(
                [(account.id if account else None, email, name)], business=business
            )
            client_id = await self._client_of(business, account)
        appointment_id = uuid.uuid4()
        row: dict[str, object] = {
            "id": appointment_id,
            "business_id": business.id,
            "offering_id": offering.id,
            "offering_version_id": offering.version_id,
            "offering_name": offering.name[:200],
            "duration_minutes": offering.duration_minutes,
            "buffer_minutes": offering.buffer_minutes,
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(minutes=offering.duration_minutes),
            "status": AWAITING_PAYMENT if body.pay_with == "order" else REQUESTED,
            "paid_with": body.pay_with,
            "account_id": account.id if account else None,
            "client_id": client_id,
            "requester_email": email,
            "requester_name": name[:200],
            "client_time_zone": body.time_zone,
            "coupon_site": body.coupon_site,
            "coupon_number": body.coupon_number,
            "credit_id": None,
            "credit_returned_at": None,
            "order_id": None,
            "hold_expires_at": (
                now + timedelta(minutes=self.settings.appointment_hold_minutes)
                if body.pay_with == "order"
                else None
            ),
            "idempotency_key": idempotency_key,
            "sequence": 0,
            "canceled_by": None,
            "created_at": now,
            "updated_at": now,
        }
        if not await self.repo.claim(row):
            # A concurrent request with the same key committed first: answer it.
            existing = await self.repo.by_key(business.id, idempotency_key)
            if existing is None:
                raise Conflict("The same request is being made; try again.")
            return await self._replay(existing, body, viewer)
        appointment = await self.repo.appointment(business.id, appointment_id)
        assert appointment is not None
        if body.pay_with == "credit":
            for credit in credits:
                if await self.repo.take_credit(credit.id):
                    appointment.credit_id = credit.id
                    break
            else:  # concurrent bookings took the last sessions meanwhile
                raise InvalidInput(
                    "You hold no credit for this appointment.",
                    errors=[FieldError("pay_with", "no valid credit applies to this offering")],
                    reason="no_credit",
                )
        await self.session.flush()
        if appointment.status == REQUESTED:
            await self._requested(appointment, business, found, account, now)
        log.info(
            "appointment_requested",
            appointment_id=str(appointment.id),
            business_id=str(business.id),
            paid_with=body.pay_with,
            status=appointment.status,
        )
        return self._out(appointment, account, business, found, now)

    async def _replay(
        self,
        existing: Appointment,
        body: schemas.AppointmentRequestIn,
        viewer: Principal | None,
    ) -> schemas.AppointmentOut:
        """The same Idempotency-Key again: the request it made, if it is the same one."""
        same = existing.offering_id == body.offering_id and existing.starts_at == body.starts_at
        if viewer is not None and existing.account_id not in (None, viewer.account_id):
            same = False
        if not same:
            raise Conflict("This Idempotency-Key was used for another request.")
        return await self._present(existing)

    async def _client_of(self, business: Business, account: Account) -> uuid.UUID:
        created = await self.book.add_clients(
            business, [account], source="appointment", notify=False
        )
        if account.id in created:
            return created[account.id]
        existing = await self.book.repo.clients_of_accounts(business.id, [account.id])
        return existing[account.id].id

    async def _requested(
        self,
        appointment: Appointment,
        business: Business,
        found: Settings,
        account: Account | None,
        now: datetime,
    ) -> None:
        assert appointment.client_id is not None and account is not None
        when = slots.local_label(appointment.starts_at, found.zone)
        await self.book.repo.add_timeline(
            [
                timeline_row(
                    business.id,
                    appointment.client_id,
                    "booked",
                    f"Requested {appointment.offering_name} on {when} ({found.time_zone})",
                    now,
                )
            ]
        )
        await self.outbox.enqueue(
            self.session,
            AppointmentRequestedV1(**self._facts(appointment, business, found, account)),
        )

    # -- paid requests (payments.order_paid.v1 with appointment_id) -----------------

    async def orders_paid(
        self, business: Business, paid: list[tuple[OrderPaidV1, Account, uuid.UUID]]
    ) -> int:
        """Requests whose orders were paid become requests the coach sees (once: only an
        appointment still awaiting payment changes). A hold that lapsed is honoured
        too: the money was taken, and a request blocks nothing until confirmed."""
        done = 0
        found: Settings | None = None
        for event, account, client_id in paid:
            assert event.appointment_id is not None
            appointment = await self.repo.for_order(business.id, event.appointment_id)
            if appointment is None or appointment.offering_id != event.offering_id:
                log.error(
                    "paid_appointment_unknown",
                    order_id=str(event.order_id),
                    appointment_id=str(event.appointment_id),
                )
                continue
            if appointment.status != AWAITING_PAYMENT or appointment.paid_with != "order":
                log.info("paid_appointment_already_applied", order_id=str(event.order_id))
                continue
            now = utcnow()
            found = found or await self._settings(business.id)
            appointment.account_id = account.id
            appointment.client_id = client_id
            appointment.requester_email = account.email
            appointment.requester_name = account.display_name[:200]
            appointment.order_id = event.order_id
            appointment.status = REQUESTED
            appointment.hold_expires_at = None
            appointment.updated_at = now
            await self.session.flush()
            await self._requested(appointment, business, found, account, now)
            log.info(
                "paid_appointment_requested",
                appointment_id=str(appointment.id),
                order_id=str(event.order_id),
            )
            done += 1
        return done

    # -- the coach -----------------------------------------------------------------

    async def listing(
        self,
        business_id: uuid.UUID,
        start: datetime | None,
        end: datetime | None,
        status: str | None,
    ) -> schemas.AppointmentList:
        business = await self._business(business_id)
        found = await self._settings(business_id)
        now = utcnow()
        start = start or datetime.combine(now.date(), datetime.min.time(), tzinfo=now.tzinfo)
        end = end or start + timedelta(days=35)
        if end <= start:
            raise InvalidInput.for_field("to", "must be after from", "query")
        if end - start > timedelta(days=MAX_LIST_DAYS):
            raise InvalidInput.for_field("to", f"at most {MAX_LIST_DAYS} days after from", "query")
        statuses = [status] if status else list(OPEN)
        rows = await self.repo.listing(business_id, start, end, statuses)
        return schemas.AppointmentList(
            items=[self._out(a, acc, business, found, now) for a, acc in rows]
        )

    async def get(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> schemas.AppointmentOut:
        appointment = await self.repo.appointment(business_id, appointment_id)
        if appointment is None or appointment.status == AWAITING_PAYMENT:
            raise NotFound("No such appointment.")
        return await self._present(appointment)

    async def _coach_appointment(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> Appointment:
        appointment = await self.repo.appointment(business_id, appointment_id, lock=True)
        # An unpaid request does not exist for the coach.
        if appointment is None or appointment.status == AWAITING_PAYMENT:
            raise NotFound("No such appointment.")
        return appointment

    async def confirm(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> schemas.AppointmentOut:
        business = await self._business(business_id)
        await self.repo.lock_schedule(business_id, self._defaults())
        appointment = await self._coach_appointment(business_id, appointment_id)
        if appointment.status != REQUESTED:
            raise Conflict(
                f"Only a requested appointment can be confirmed (it is {appointment.status}).",
                reason="not_requested",
            )
        now = utcnow()
        if appointment.starts_at <= now:
            raise Conflict("This appointment's time has passed.", reason="in_the_past")
        await self._refuse_overlap(appointment, appointment.starts_at)
        return await self._change(
            appointment, business, CONFIRMED, AppointmentConfirmedV1, "Confirmed", now
        )

    async def decline(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> schemas.AppointmentOut:
        business = await self._business(business_id)
        appointment = await self._coach_appointment(business_id, appointment_id)
        if appointment.status != REQUESTED:
            raise Conflict(
                f"Only a requested appointment can be declined (it is {appointment.status}).",
                reason="not_requested",
            )
        now = utcnow()
        await self._return_credit(appointment, now)
        return await self._change(
            appointment, business, DECLINED, AppointmentDeclinedV1, "Declined", now
        )

    async def coach_cancel(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> schemas.AppointmentOut:
        business = await self._business(business_id)
        appointment = await self._coach_appointment(business_id, appointment_id)
        return await self._cancel(appointment, business, "coach")

    async def coach_reschedule(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID, body: schemas.RescheduleIn
    ) -> schemas.AppointmentOut:
        """The coach may move it to any future time (outside the weekly hours too); a
        confirmed appointment still may not overlap another confirmed one."""
        business = await self._business(business_id)
        await self.repo.lock_schedule(business_id, self._defaults())
        appointment = await self._coach_appointment(business_id, appointment_id)
        self._must_be_open(appointment)
        starts_at = body.starts_at.astimezone(slots.zone("UTC"))
        if starts_at <= utcnow():
            raise InvalidInput.for_field("starts_at", "must be in the future")
        if appointment.status == CONFIRMED:
            await self._refuse_overlap(appointment, starts_at)
        return await self._reschedule(appointment, business, starts_at, by="coach")

    async def _refuse_overlap(self, appointment: Appointment, starts_at: datetime) -> None:
        """409 when the appointment at ``starts_at`` would overlap another confirmed one
        of the business (buffers included). Called with the schedule row locked."""
        mine = slots.occupied(starts_at, appointment.duration_minutes, appointment.buffer_minutes)
        for other in await self.repo.confirmed_between(
            appointment.business_id, mine[0], mine[1], excluding=appointment.id
        ):
            theirs = slots.Busy(other.starts_at, other.ends_at, other.buffer_minutes).occupied
            if slots.overlaps(mine, theirs):
                raise Conflict(
                    "Another confirmed appointment overlaps this time.",
                    reason="overlap",
                    conflicting_appointment_id=str(other.id),
                )

    @staticmethod
    def _must_be_open(appointment: Appointment) -> None:
        if appointment.status not in OPEN:
            raise Conflict(
                f"This appointment is {appointment.status}.",
                reason=f"appointment_{appointment.status}",
            )

    async def _cancel(
        self, appointment: Appointment, business: Business, by: str
    ) -> schemas.AppointmentOut:
        self._must_be_open(appointment)
        now = utcnow()
        await self._return_credit(appointment, now)
        appointment.canceled_by = by
        summary = "Canceled by the coach" if by == "coach" else "Canceled by the client"
        return await self._change(
            appointment, business, CANCELED, AppointmentCanceledV1, summary, now, canceled_by=by
        )

    async def _return_credit(self, appointment: Appointment, now: datetime) -> None:
        """A credit-paid appointment declined or canceled gives its credit back, once."""
        credit_id = await self.repo.claim_credit_return(appointment.id, now)
        if credit_id is not None:
            await self.repo.give_back_credit(credit_id)
            await self.session.refresh(appointment)

    async def _reschedule(
        self, appointment: Appointment, business: Business, starts_at: datetime, *, by: str
    ) -> schemas.AppointmentOut:
        previous = appointment.starts_at
        if starts_at == previous:
            raise InvalidInput.for_field("starts_at", "is the appointment's current time")
        appointment.starts_at = starts_at
        appointment.ends_at = starts_at + timedelta(minutes=appointment.duration_minutes)
        found = await self._settings(business.id)
        when = slots.local_label(starts_at, found.zone)
        return await self._change(
            appointment,
            business,
            appointment.status,
            AppointmentRescheduledV1,
            f"Moved to {when} ({found.time_zone})",
            utcnow(),
            previous_starts_at=previous,
            rescheduled_by=by,
        )

    async def _change(
        self,
        appointment: Appointment,
        business: Business,
        status: str,
        event_type: type[Any],
        summary: str,
        now: datetime,
        **extra: Any,
    ) -> schemas.AppointmentOut:
        """Apply a change: the new status, sequence + 1, a timeline entry and the event,
        in this transaction."""
        appointment.status = status
        appointment.sequence += 1
        appointment.updated_at = now
        await self.session.flush()
        found = await self._settings(business.id)
        account = await self.repo.account(appointment.account_id)
        assert account is not None and appointment.client_id is not None
        await self.book.repo.add_timeline(
            [
                timeline_row(
                    business.id,
                    appointment.client_id,
                    TIMELINE_KINDS[event_type],
                    f"{appointment.offering_name}: {summary}",
                    now,
                )
            ]
        )
        await self.outbox.enqueue(
            self.session,
            event_type(**self._facts(appointment, business, found, account), **extra),
        )
        log.info(
            "appointment_changed",
            appointment_id=str(appointment.id),
            status=status,
            sequence=appointment.sequence,
            event_name=event_type.name,
        )
        return self._out(appointment, account, business, found, now)

    # -- the client ----------------------------------------------------------------

    async def mine(self, account_id: uuid.UUID) -> schemas.AppointmentList:
        now = utcnow()
        rows = await self.repo.of_account(account_id, now)
        businesses = await self.repo.businesses(list({a.business_id for a, _ in rows}))
        schedules = await self.repo.schedules(list(businesses))

        def found_of(business_id: uuid.UUID) -> Settings:
            return Settings.of(schedules.get(business_id))

        return schemas.AppointmentList(
            items=[
                self._out(a, acc, businesses[a.business_id], found_of(a.business_id), now)
                for a, acc in rows
            ]
        )

    async def _own(self, account_id: uuid.UUID, appointment_id: uuid.UUID) -> Appointment:
        appointment = await self.repo.appointment_of_account(account_id, appointment_id, lock=True)
        if appointment is None:
            raise NotFound("No such appointment.")
        return appointment

    def _within_notice(self, appointment: Appointment, found: Settings, now: datetime) -> None:
        deadline = appointment.starts_at - timedelta(hours=found.client_notice_hours)
        if now > deadline:
            raise Conflict(
                f"Changes are possible until {found.client_notice_hours} hours before the "
                "appointment; contact the business.",
                reason="notice_period",
            )

    async def client_cancel(
        self, account_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> schemas.AppointmentOut:
        appointment = await self._own(account_id, appointment_id)
        business = await self._business(appointment.business_id)
        now = utcnow()
        if appointment.status == AWAITING_PAYMENT:
            # Never a request yet: it just goes (nobody was told about it).
            appointment.status = CANCELED
            appointment.canceled_by = "client"
            appointment.updated_at = now
            await self.session.flush()
            return await self._present(appointment)
        self._must_be_open(appointment)
        self._within_notice(appointment, await self._settings(business.id), now)
        return await self._cancel(appointment, business, "client")

    async def client_reschedule(
        self, account_id: uuid.UUID, appointment_id: uuid.UUID, body: schemas.RescheduleIn
    ) -> schemas.AppointmentOut:
        """To a free slot of the same offering (duration and buffer as booked), within
        the notice period; a confirmed appointment stays confirmed."""
        found_first = await self.repo.appointment_of_account(account_id, appointment_id)
        if found_first is None:
            raise NotFound("No such appointment.")
        business = await self._business(found_first.business_id)
        await self.repo.lock_schedule(business.id, self._defaults())
        appointment = await self._own(account_id, appointment_id)
        self._must_be_open(appointment)
        found = await self._settings(business.id)
        self._within_notice(appointment, found, utcnow())
        starts_at = body.starts_at.astimezone(slots.zone("UTC"))
        if not await self._slot_is_free(
            business.id,
            found,
            appointment.duration_minutes,
            appointment.buffer_minutes,
            starts_at,
            excluding=appointment.id,
        ):
            raise Conflict(
                "That time is not free; pick another slot.",
                errors=[FieldError("starts_at", "not a free slot of this offering")],
                reason="slot_not_available",
            )
        return await self._reschedule(appointment, business, starts_at, by="client")

    # -- output --------------------------------------------------------------------

    async def _present(self, appointment: Appointment) -> schemas.AppointmentOut:
        business = await self._business(appointment.business_id)
        found = await self._settings(business.id)
        account = await self.repo.account(appointment.account_id)
        return self._out(appointment, account, business, found, utcnow())

    def _out(
        self,
        appointment: Appointment,
        account: Account | None,
        business: Business,
        found: Settings,
        now: datetime,
    ) -> schemas.AppointmentOut:
        status = appointment.status
        if status == AWAITING_PAYMENT and (
            appointment.hold_expires_at is None or appointment.hold_expires_at <= now
        ):
            status = EXPIRED
        can_change = status in OPEN and now <= appointment.starts_at - timedelta(
            hours=found.client_notice_hours
        )
        return schemas.AppointmentOut(
            id=appointment.id,
            business_id=business.id,
            business_name=business.name,
            business_slug=business.slug,
            offering_id=appointment.offering_id,
            offering_name=appointment.offering_name,
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
            duration_minutes=appointment.duration_minutes,
            buffer_minutes=appointment.buffer_minutes,
            status=status,
            paid_with=appointment.paid_with,
            coupon_site=appointment.coupon_site,
            coupon_number=appointment.coupon_number,
            client_id=appointment.client_id,
            client_name=account.display_name if account else appointment.requester_name,
            client_email=account.email if account else appointment.requester_email,
            client_time_zone=appointment.client_time_zone,
            business_time_zone=found.time_zone,
            hold_expires_at=appointment.hold_expires_at if status == AWAITING_PAYMENT else None,
            client_can_change=can_change,
            sequence=appointment.sequence,
            created_at=appointment.created_at,
            updated_at=appointment.updated_at,
        )

    @staticmethod
    def _facts(
        appointment: Appointment, business: Business, found: Settings, account: Account
    ) -> dict[str, Any]:
        return {
            "business_id": business.id,
            "appointment_id": appointment.id,
            "offering_id": appointment.offering_id,
            "offering_name": appointment.offering_name,
            "business_name": business.name,
            "business_time_zone": found.time_zone,
            "client_account_id": account.id,
            "client_email": account.email,
            "client_name": account.display_name,
            "client_time_zone": appointment.client_time_zone,
            "starts_at": appointment.starts_at,
            "ends_at": appointment.ends_at,
            "coupon_site": appointment.coupon_site,
            "coupon_number": appointment.coupon_number,
            "status": appointment.status,
            "sequence": appointment.sequence,
            "reminder_hours_before": found.reminder_hours_before,
        }


def _blocked_out(row: BlockedTime) -> schemas.BlockedTimeOut:
    return schemas.BlockedTimeOut(
        id=row.id,
        business_id=row.business_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        reason=row.reason,
        created_at=row.created_at,
    )
