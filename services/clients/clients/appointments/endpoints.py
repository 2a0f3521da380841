"""HTTP API of appointments (under /api/v1/clients).

Coach (staff of the business in the path; another business's ids are 404):
availability (``/schedule``, ``/blocked-times``), the calendar and the decisions
(``/appointments``). Public: free slots and requests under ``/b/{slug}``. The
requester: ``/me/appointments``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from clients.appointments import schemas
from clients.appointments.service import MAX_SLOT_DAYS, AppointmentService
from clients.identity.endpoints import Identity
from kit.auth import CurrentAccount, CurrentCoach, OptionalViewer, bearer_token

router = APIRouter(tags=["appointments"])


async def appointment_service(request: Request, identity: Identity) -> AppointmentService:
    return AppointmentService(
        identity.session,
        identity.outbox,
        identity.settings,
        identity,
        request.app.state.catalog,
    )


Appointments = Annotated[AppointmentService, Depends(appointment_service)]
BUSINESS = "/businesses/{business_id}"
ONE = BUSINESS + "/appointments/{appointment_id}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# -- availability (coach) -------------------------------------------------------------


@router.get(BUSINESS + "/schedule", response_model=schemas.ScheduleOut)
async def get_schedule(coach: CurrentCoach, appointments: Appointments) -> schemas.ScheduleOut:
    """Weekly hours, time zone, notice and reminder hours, coupon sites (defaults until
    set: UTC, no hours)."""
    return await appointments.schedule(coach.business_id)


@router.put(BUSINESS + "/schedule", response_model=schemas.ScheduleOut)
async def put_schedule(
    body: schemas.ScheduleIn, coach: CurrentCoach, appointments: Appointments
) -> schemas.ScheduleOut:
    return await appointments.set_schedule(coach.business_id, body)


@router.get(BUSINESS + "/blocked-times", response_model=schemas.BlockedTimeList)
async def list_blocked_times(
    coach: CurrentCoach, appointments: Appointments
) -> schemas.BlockedTimeList:
    return await appointments.blocked_times(coach.business_id)


@router.post(
    BUSINESS + "/blocked-times",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.BlockedTimeOut,
)
async def block_time(
    body: schemas.BlockedTimeIn, coach: CurrentCoach, appointments: Appointments
) -> schemas.BlockedTimeOut:
    """Time taken out of the weekly hours: no slot is offered in it."""
    return await appointments.block(coach.business_id, body)


@router.delete(BUSINESS + "/blocked-times/{blocked_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unblock_time(
    blocked_id: uuid.UUID, coach: CurrentCoach, appointments: Appointments
) -> Response:
    await appointments.unblock(coach.business_id, blocked_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the calendar (coach) -------------------------------------------------------------


@router.get(BUSINESS + "/appointments", response_model=schemas.AppointmentList)
async def list_appointments(
    coach: CurrentCoach,
    appointments: Appointments,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    status_: Annotated[
        Literal["requested", "confirmed", "declined", "canceled"] | None,
        Query(alias="status"),
    ] = None,
) -> schemas.AppointmentList:
    """Appointments starting in [from, to) (default: today, UTC, and 35 days on), soonest
    first; requested and confirmed unless ``status`` says otherwise. A time without
    an offset is UTC."""
    return await appointments.listing(coach.business_id, _utc(start), _utc(end), status_)


@router.get(ONE, response_model=schemas.AppointmentOut)
async def get_appointment(
    appointment_id: uuid.UUID, coach: CurrentCoach, appointments: Appointments
) -> schemas.AppointmentOut:
    return await appointments.get(coach.business_id, appointment_id)


@router.post(ONE + "/confirm", response_model=schemas.AppointmentOut)
async def confirm(
    appointment_id: uuid.UUID, coach: CurrentCoach, appointments: Appointments
) -> schemas.AppointmentOut:
    """409 when another confirmed appointment overlaps it (buffers included)."""
    return await appointments.confirm(coach.business_id, appointment_id)


@router.post(ONE + "/decline", response_model=schemas.AppointmentOut)
async def decline(
    appointment_id: uuid.UUID, coach: CurrentCoach, appointments: Appointments
) -> schemas.AppointmentOut:
    return await appointments.decline(coach.business_id, appointment_id)


@router.post(ONE + "/cancel", response_model=schemas.AppointmentOut)
async def coach_cancel(
    appointment_id: uuid.UUID, coach: CurrentCoach, appointments: Appointments
) -> schemas.AppointmentOut:
    return await appointments.coach_cancel(coach.business_id, appointment_id)


@router.post(ONE + "/reschedule", response_model=schemas.AppointmentOut)
async def coach_reschedule(
    appointment_id: uuid.UUID,
    body: schemas.RescheduleIn,
    coach: CurrentCoach,
    appointments: Appointments,
) -> schemas.AppointmentOut:
    return await appointments.coach_reschedule(coach.business_id, appointment_id, body)


# -- public: slots and requests -------------------------------------------------------


@router.get("/b/{slug}/appointment-offerings/{offering_id}/slots", response_model=schemas.SlotList)
async def free_slots(
    request: Request,
    slug: str,
    offering_id: uuid.UUID,
    _viewer: OptionalViewer,
    appointments: Appointments,
    first_day: Annotated[date | None, Query(alias="from")] = None,
    days: Annotated[int, Query(ge=1, le=MAX_SLOT_DAYS)] = 14,
    tz: Annotated[str | None, Query(max_length=64)] = None,
) -> schemas.SlotList:
    """Free slots of the days [from, from + days) in ``tz`` (the visitor's zone; default
    the business's), each with its UTC times and a label in ``tz``. Who may see the
    offering is the catalog's answer for the caller's token."""
    return await appointments.slots(
        slug,
        offering_id,
        first_day=first_day,
        days=days,
        time_zone=tz,
        bearer=bearer_token(request),
    )


@router.post(
    "/b/{slug}/appointments",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.AppointmentOut,
)
async def request_appointment(
    request: Request,
    slug: str,
    body: schemas.AppointmentRequestIn,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
    viewer: OptionalViewer,
    appointments: Appointments,
) -> schemas.AppointmentOut:
    """Request a slot. ``pay_with``: ``credit`` (logged in; the valid credit for this
    offering that expires first), ``free`` (a free offering) or ``order`` (a paid
    offering: the answer is ``awaiting_payment``; buy the offering through payments
    with this ``appointment_id`` and the paid order makes it a request). Repeating it
    with the same Idempotency-Key answers the same appointment."""
    return await appointments.request(slug, body, idempotency_key, viewer, bearer_token(request))


# -- the requester --------------------------------------------------------------------


@router.get("/me/appointments", response_model=schemas.AppointmentList)
async def my_appointments(
    account: CurrentAccount, appointments: Appointments
) -> schemas.AppointmentList:
    """The caller's appointments in every business, soonest first."""
    return await appointments.mine(account.account_id)


@router.post("/me/appointments/{appointment_id}/cancel", response_model=schemas.AppointmentOut)
async def my_cancel(
    appointment_id: uuid.UUID, account: CurrentAccount, appointments: Appointments
) -> schemas.AppointmentOut:
    """Until ``client_notice_hours`` before the start (409 ``notice_period`` after)."""
    return await appointments.client_cancel(account.account_id, appointment_id)


@router.post("/me/appointments/{appointment_id}/reschedule", response_model=schemas.AppointmentOut)
async def my_reschedule(
    appointment_id: uuid.UUID,
    body: schemas.RescheduleIn,
    account: CurrentAccount,
    appointments: Appointments,
) -> schemas.AppointmentOut:
    """To a free slot, until ``client_notice_hours`` before the current start."""
    return await appointments.client_reschedule(account.account_id, appointment_id, body)
