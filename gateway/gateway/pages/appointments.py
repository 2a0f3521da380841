"""Appointment pages: the coach's calendar and availability, the booking page of an
appointment offering, and the client's own appointments.

- ``/businesses/{id}/calendar?week=YYYY-MM-DD``: a week (Monday first) of requested
  and confirmed appointments in the business's time zone, with the coach's
  decisions (confirm, decline, cancel, reschedule); the requests waiting for an
  answer are listed above it, whatever their week.
- ``/businesses/{id}/availability``: time zone, weekly hours (``09:00-12:00,
  13:00-17:00`` per day), notice and reminder hours, coupon sites, blocked times.
- ``/b/{slug}/offerings/{id}/book?tz=…&slot=…``: the free slots of the next two
  weeks in the visitor's zone (the page's script adds ``tz`` from the browser),
  then the request form. A paid offering is bought through the normal checkout
  with the request's ``appointment_id``; its payment makes the request.
- ``/appointments``: the logged-in client's appointments, with cancel and
  reschedule while the business's notice period allows it.

The clients service decides everything (free slots, who may book, overlaps,
the notice period); these pages turn its refusals into words.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.pages.coach import CoachPage, coach_form, coach_page
from gateway.pages.common import (
    FormData,
    Obj,
    P,
    body_of,
    call_clients,
    expired_form,
    guarded,
    public_fields,
    read_form,
)
from gateway.pages.rendering import Notice, Pages
from gateway.pages.storefront import _offering as storefront_offering
from gateway.pages.storefront import not_found, offering_card, storefront_context
from gateway.sessions import ActiveSession
from gateway.upstream import Reply, UpstreamUnavailable

router = APIRouter(include_in_schema=False)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Brussels",
    "Europe/Zurich",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Helsinki",
    "Europe/Istanbul",
    "Africa/Lagos",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Africa/Nairobi",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Perth",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/St_Johns",
    "America/Halifax",
    "America/New_York",
    "America/Toronto",
    "America/Chicago",
    "America/Mexico_City",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Bogota",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
)
STATUSES = {
    "requested": ("Requested", "badge--warning"),
    "confirmed": ("Confirmed", "badge--success"),
    "declined": ("Declined", "badge--neutral"),
    "canceled": ("Canceled", "badge--neutral"),
    "awaiting_payment": ("Awaiting payment", "badge--brand"),
    "expired": ("Expired", "badge--neutral"),
}
OPEN = ("requested", "confirmed")
COACH_ACTIONS = ("confirm", "decline", "cancel", "reschedule")
BOOK = "appointment_book.html"
BOOKING_DAYS = 14
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,200}$")
RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})$")
# The clients service's refusals, in words a person can act on.
REASONS = {
    "overlap": "Another confirmed appointment overlaps this time. Nothing was changed.",
    "slot_not_available": "That time is no longer free. Please pick another slot.",
    "no_credit": "You hold no credit for this appointment. Choose another way to pay.",
    "not_self_bookable": (
        "Only clients holding a credit for this appointment can book it themselves. "
        "Please contact the business."
    ),
    "login_required": "Please log in to book with a credit.",
    "in_the_past": "This appointment's time has passed; it can no longer be confirmed.",
}


# -- times and zones ---------------------------------------------------------------------


def zone_of(name: str | None) -> ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _zone(name: str | None) -> ZoneInfo:
    return zone_of(name) or ZoneInfo("UTC")


def parse_instant(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def day_label(day: date) -> str:
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def time_label(when: datetime, zone: ZoneInfo) -> str:
    """ "Mon 29 Mar 2027, 09:00" in ``zone`` (the clients service's slot labels)."""
    local = when.astimezone(zone)
    return f"{day_label(local.date())}, {local:%H:%M}"


def utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_input(when: datetime, zone: ZoneInfo) -> str:
    """The value of a datetime-local input."""
    return when.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def from_local_input(value: str | None, zone: ZoneInfo) -> datetime | None:
    """A datetime-local input's value, read in ``zone``."""
    try:
        naive = datetime.strptime((value or "").strip()[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        return None
    return naive.replace(tzinfo=zone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def week_start(value: str | None, zone: ZoneInfo) -> date:
    try:
        day = date.fromisoformat(value) if value else datetime.now(zone).date()
    except ValueError:
        day = datetime.now(zone).date()
    return day - timedelta(days=day.weekday())


def appointment_view(data: dict[str, Any], zone: ZoneInfo) -> Obj:
    """An AppointmentOut with its times in ``zone``, as the templates read it."""
    starts = parse_instant(data.get("starts_at")) or datetime.now(UTC)
    ends = parse_instant(data.get("ends_at")) or starts
    status = str(data.get("status") or "")
    label, badge = STATUSES.get(status, (status.replace("_", " ").capitalize(), "badge--neutral"))
    local_start, local_end = starts.astimezone(zone), ends.astimezone(zone)
    return Obj(
        {
            **data,
            "id": str(data["id"]),
            "status": status,
            "status_label": label,
            "status_badge": badge,
            "open": status in OPEN,
            "starts": starts,
            "local_start": local_start,
            "when": time_label(starts, zone),
            "span": f"{local_start:%H:%M}–{local_end:%H:%M}",
            "input_value": local_input(starts, zone),
            "zone": zone.key,
            "coupon_site": data.get("coupon_site") or "",
            "coupon_number": data.get("coupon_number") or "",
            "client_name": data.get("client_name") or "",
            "client_email": data.get("client_email") or "",
            "client_can_change": bool(data.get("client_can_change")),
        }
    )


def refusal(reply: Reply, fallback: str) -> str:
    """The words for a refused change: by the service's ``reason`` when we know it."""
    if reply.status >= 500 or reply.status == 0:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    reason = reply.body.get("reason") if isinstance(reply.body, dict) else None
    if reason == "notice_period":
        return reply.detail or "It is too close to the appointment to change it online."
    if reason in REASONS:
        return REASONS[str(reason)]
    fields = reply.field_errors()
    if "starts_at" in fields:
        return f"That time cannot be used: it {fields['starts_at']}."
    return reply.detail or fallback


# -- the coach's calendar --------------------------------------------------------------


async def _schedule(p: Pages, page: CoachPage) -> dict[str, Any]:
    reply = await call_clients(p, "GET", f"{page.base}/schedule", token=page.token)
    result: dict[str, Any] = body_of(reply)
    return result


def _hour_range(schedule: dict[str, Any], appointments: list[Obj]) -> range:
    """The hours down the side of the week: the weekly hours and every appointment."""
    first, last = 24, 0
    for ranges in (schedule.get("weekly_hours") or {}).values():
        for opening, closing in ranges:
            first = min(first, int(opening[:2]))
            end_hour, end_minute = int(closing[:2]), int(closing[3:5])
            last = max(last, end_hour + (1 if end_minute else 0))
    for a in appointments:
        first = min(first, a.local_start.hour)
        last = max(last, a.local_start.hour + 1)
    if first >= last:
        first, last = 9, 17
    return range(first, min(last, 24))


async def _calendar(
    p: Pages,
    request: Request,
    page: CoachPage,
    week: str | None,
    *,
    status: int = 200,
    notice: Notice | None = None,
) -> Response:
    schedule = await _schedule(p, page)
    zone = _zone(schedule.get("time_zone"))
    monday = week_start(week, zone)
    start = local_midnight(monday, zone)
    end = local_midnight(monday + timedelta(days=7), zone)
    listed = await call_clients(
        p,
        "GET",
        f"{page.base}/appointments",
        token=page.token,
        params={"from": utc_text(start), "to": utc_text(end)},
    )
    appointments = [appointment_view(a, zone) for a in body_of(listed).get("items", [])]
    waiting_reply = await call_clients(
        p, "GET", f"{page.base}/appointments", token=page.token, params={"status": "requested"}
    )
    waiting = [appointment_view(a, zone) for a in body_of(waiting_reply).get("items", [])]
    today = datetime.now(zone).date()
    days = [monday + timedelta(days=n) for n in range(7)]
    hours = _hour_range(schedule, appointments)
    cells: dict[tuple[int, int], list[Obj]] = {}
    for a in appointments:
        day_index = (a.local_start.date() - monday).days
        hour = min(max(a.local_start.hour, hours.start), hours.stop - 1)
        cells.setdefault((day_index, hour), []).append(a)
    return await p.render(
        request,
        "appointment_calendar.html",
        status=status,
        notice=notice,
        business=page.business,
        zone=zone.key,
        week=monday.isoformat(),
        week_label=f"{day_label(monday)} – {day_label(days[-1])}",
        previous_week=(monday - timedelta(days=7)).isoformat(),
        next_week=(monday + timedelta(days=7)).isoformat(),
        this_week=week_start(None, zone).isoformat(),
        days=[
            Obj(
                {
                    "index": n,
                    "name": WEEKDAYS[d.weekday()],
                    "label": f"{d.day} {MONTHS[d.month - 1]}",
                    "today": d == today,
                }
            )
            for n, d in enumerate(days)
        ],
        hours=list(hours),
        cells=cells,
        count=len(appointments),
        waiting=waiting,
        week_of=lambda a: week_start(a.local_start.date().isoformat(), zone).isoformat(),
    )


@router.get("/businesses/{business_id}/calendar")
async def calendar(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _calendar(p, request, page, request.query_params.get("week"))


@router.post("/businesses/{business_id}/calendar/{appointment_id}/{action}")
async def calendar_action(
    request: Request, business_id: uuid.UUID, appointment_id: uuid.UUID, action: str, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    week = form.get("week") or None
    if action not in COACH_ACTIONS:
        return await not_found(p, request, "There is no such page.")
    body: dict[str, Any] | None = None
    if action == "reschedule":
        zone = _zone((await _schedule(p, page)).get("time_zone"))
        when = from_local_input(form.get("starts_at"), zone)
        if when is None:
            notice = Notice("error", "Choose the new date and time first. Nothing was changed.")
            return await _calendar(p, request, page, week, status=422, notice=notice)
        body = {"starts_at": when.isoformat()}
    reply = await call_clients(
        p,
        "POST",
        f"{page.base}/appointments/{appointment_id}/{action}",
        token=page.token,
        json_body=body,
    )
    if reply.status == 404:
        return await not_found(p, request, "There is no such appointment in this business.")
    if not reply.ok:
        text = refusal(reply, "This appointment could not be changed.")
        return await _calendar(
            p, request, page, week, status=reply.status, notice=Notice("error", text)
        )
    back = f"{page.base}/calendar" + (f"?{urlencode({'week': week})}" if week else "")
    return p.redirect(back, notice=f"appointment_{action}")


# -- the coach's availability ----------------------------------------------------------


def _hours_text(ranges: list[list[str]]) -> str:
    return ", ".join(f"{opening}-{closing}" for opening, closing in ranges)


def _schedule_form(schedule: dict[str, Any]) -> dict[str, Any]:
    hours = schedule.get("weekly_hours") or {}
    return {
        "time_zone": schedule.get("time_zone") or "UTC",
        **{f"hours_{day}": _hours_text(hours.get(day) or []) for day in DAYS},
        "client_notice_hours": str(schedule.get("client_notice_hours", 24)),
        "reminder_hours_before": str(schedule.get("reminder_hours_before", 24)),
        "coupon_sites": "\n".join(schedule.get("coupon_sites") or []),
    }


def parse_hours(text: str) -> list[list[str]] | None:
    """ "09:00-12:00, 13:00-17:00" as [["09:00", "12:00"], ["13:00", "17:00"]]; None when
    a part cannot be read (the service checks the order and the overlaps)."""
    ranges = []
    for part in re.split(r"[,;\n]+", text or ""):
        part = part.strip()
        if not part:
            continue
        match = RANGE.match(part)
        if match is None:
            return None
        h1, m1, h2, m2 = match.groups()
        ranges.append([f"{int(h1):02d}:{m1}", f"{int(h2):02d}:{m2}"])
    return ranges


def schedule_body(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    weekly: dict[str, list[list[str]]] = {}
    for day in DAYS:
        ranges = parse_hours(form.get(f"hours_{day}", ""))
        if ranges is None:
            errors[f"hours_{day}"] = "Write the hours like 09:00-12:00, 13:00-17:00."
        else:
            weekly[day] = ranges
    numbers: dict[str, int] = {}
    for name in ("client_notice_hours", "reminder_hours_before"):
        try:
            numbers[name] = int((form.get(name) or "0").strip() or "0")
        except ValueError:
            errors[name] = "Enter a whole number of hours."
    lines = (form.get("coupon_sites") or "").splitlines()
    body = {
        "time_zone": (form.get("time_zone") or "").strip(),
        "weekly_hours": weekly,
        **numbers,
        "coupon_sites": [line.strip() for line in lines if line.strip()],
    }
    return body, errors


def _schedule_errors(reply: Reply) -> tuple[dict[str, str], str | None]:
    placed: dict[str, str] = {}
    rest: list[str] = []
    body = reply.body if isinstance(reply.body, dict) else {}
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        parts = str(error.get("field", "")).split(".")
        message = str(error.get("message", "is invalid"))
        if parts[0] == "weekly_hours" and len(parts) > 1 and parts[1] in DAYS:
            placed.setdefault(f"hours_{parts[1]}", message)
        elif parts[0] in ("time_zone", "client_notice_hours", "reminder_hours_before"):
            placed.setdefault(parts[0], message)
        elif parts[0] == "coupon_sites":
            placed.setdefault("coupon_sites", message)
        elif parts[0] in ("starts_at", "ends_at", "reason"):
            placed.setdefault(parts[0], message)
        else:
            rest.append(message)
    general = "; ".join(rest) or None
    if not placed and general is None:
        general = reply.detail or "This could not be saved. Please check the form."
    return placed, general


async def _availability(
    p: Pages,
    request: Request,
    page: CoachPage,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    block_form: dict[str, Any] | None = None,
    block_errors: dict[str, str] | None = None,
    block_error: str | None = None,
) -> Response:
    schedule = await _schedule(p, page)
    zone = _zone(schedule.get("time_zone"))
    blocked_reply = await call_clients(p, "GET", f"{page.base}/blocked-times", token=page.token)
    blocked = []
    for item in body_of(blocked_reply).get("items", []):
        starts = parse_instant(item["starts_at"]) or datetime.now(UTC)
        ends = parse_instant(item["ends_at"]) or starts
        blocked.append(
            Obj(
                {
                    **item,
                    "from_label": time_label(starts, zone),
                    "to_label": time_label(ends, zone),
                }
            )
        )
    return await p.render(
        request,
        "appointment_availability.html",
        status=status,
        business=page.business,
        zone=zone.key,
        zones=COMMON_ZONES,
        days=list(zip(DAYS, DAY_NAMES, strict=True)),
        form=form if form is not None else _schedule_form(schedule),
        errors=errors or {},
        error=error,
        blocked=blocked,
        block_form=block_form or {},
        block_errors=block_errors or {},
        block_error=block_error,
    )


@router.get("/businesses/{business_id}/availability")
async def availability(request: Request, business_id: uuid.UUID, p: P) -> Response:
    page = await coach_page(p, request, business_id)
    if isinstance(page, Response):
        return page
    return await _availability(p, request, page)


@router.post("/businesses/{business_id}/availability")
async def save_availability(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    values = public_fields(form)
    body, local = schedule_body(form)
    if local:
        return await _availability(p, request, page, status=422, form=values, errors=local)
    reply = await call_clients(p, "PUT", f"{page.base}/schedule", token=page.token, json_body=body)
    if reply.ok:
        return p.redirect(f"{page.base}/availability", notice="availability_saved")
    if reply.status >= 500:
        body_of(reply)
    errors, general = _schedule_errors(reply)
    return await _availability(
        p, request, page, status=reply.status, form=values, errors=errors, error=general
    )


@router.post("/businesses/{business_id}/availability/blocked")
async def block_time(request: Request, business_id: uuid.UUID, p: P) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, form, _ = posted
    zone = _zone((await _schedule(p, page)).get("time_zone"))
    values = public_fields(form)
    errors: dict[str, str] = {}
    starts = from_local_input(form.get("starts_at"), zone)
    ends = from_local_input(form.get("ends_at"), zone)
    if starts is None:
        errors["starts_at"] = "Choose a date and time."
    if ends is None:
        errors["ends_at"] = "Choose a date and time."
    if errors or starts is None or ends is None:
        return await _availability(
            p, request, page, status=422, block_form=values, block_errors=errors
        )
    reply = await call_clients(
        p,
        "POST",
        f"{page.base}/blocked-times",
        token=page.token,
        json_body={
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "reason": (form.get("reason") or "").strip(),
        },
    )
    if reply.ok:
        return p.redirect(f"{page.base}/availability", notice="blocked_time_added")
    if reply.status >= 500:
        body_of(reply)
    placed, general = _schedule_errors(reply)
    return await _availability(
        p,
        request,
        page,
        status=reply.status,
        block_form=values,
        block_errors=placed,
        block_error=general,
    )


@router.post("/businesses/{business_id}/availability/blocked/{blocked_id}/delete")
async def unblock_time(
    request: Request, business_id: uuid.UUID, blocked_id: uuid.UUID, p: P
) -> Response:
    posted = await coach_form(p, request, business_id)
    if isinstance(posted, Response):
        return posted
    page, _, _ = posted
    reply = await call_clients(
        p, "DELETE", f"{page.base}/blocked-times/{blocked_id}", token=page.token
    )
    if reply.status == 404:
        return await not_found(p, request, "There is no such blocked time in this business.")
    if not reply.ok:
        body_of(reply)
    return p.redirect(f"{page.base}/availability", notice="blocked_time_removed")


# -- booking (public) ------------------------------------------------------------------


def _token(active: ActiveSession | None) -> str | None:
    return active.access_token if active else None


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


def slot_days(slots: list[dict[str, Any]], zone: ZoneInfo, chosen: datetime | None) -> list[Obj]:
    """The free slots grouped by day in ``zone``."""
    days: dict[date, Obj] = {}
    for slot in slots:
        starts = parse_instant(slot["starts_at"])
        if starts is None:
            continue
        local = starts.astimezone(zone)
        day = days.setdefault(local.date(), Obj({"label": day_label(local.date()), "slots": []}))
        day["slots"].append(
            Obj(
                {
                    "starts_at": utc_text(starts),
                    "time": f"{local:%H:%M}",
                    "label": slot.get("local_label") or time_label(starts, zone),
                    "chosen": chosen is not None and starts == chosen,
                }
            )
        )
    return list(days.values())


async def _credit(p: Pages, active: ActiveSession | None, business_id: str) -> Obj | None:
    """The credit the client would book with: the usable one that expires first (the
    clients service decides which one applies; this only says what the client holds)."""
    if active is None:
        return None
    try:
        reply = await call_clients(p, "GET", "/me/purchases", token=active.access_token)
    except UpstreamUnavailable:
        return None
    if not reply.ok or not isinstance(reply.body, dict):
        return None
    for business in reply.body.get("items", []):
        if str(business.get("business_id")) != business_id:
            continue
        usable = [
            c
            for c in business.get("credits", [])
            if not c.get("expired") and int(c.get("remaining") or 0) > 0
        ]
        usable.sort(key=lambda c: (c.get("expires_at") is None, str(c.get("expires_at") or "")))
        if usable:
            c = usable[0]
            label = c.get("label") or f"{c.get('remaining')} of {c.get('total')} left"
            return Obj({**c, "label": label})
    return None


async def _booking(
    p: Pages, request: Request, slug: str, offering_id: uuid.UUID, tz: str | None, slot: Any
) -> dict[str, Any] | Response:
    """Everything the booking page shows, or the response to give instead."""
    found = await storefront_offering(p, request, slug, offering_id)
    if isinstance(found, Response):
        return found
    data, active = found
    offering = offering_card(data["offering"])
    if offering.kind != "appointment":
        return await not_found(p, request, "This offering is not an appointment.")
    zone_name = tz if zone_of(tz) else None
    params = {"days": str(BOOKING_DAYS)}
    if zone_name:
        params["tz"] = zone_name
    path = f"/b/{slug}/appointment-offerings/{offering_id}/slots"
    reply = await call_clients(p, "GET", path, token=_token(active), params=params)
    if reply.status == 404:
        return await not_found(p, request, "This offering does not exist or is not available.")
    if reply.status >= 500 or reply.status == 0:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    slots: list[dict[str, Any]] = []
    coupon_sites: list[str] = []
    unavailable = None
    zone = _zone(zone_name)
    if reply.ok and isinstance(reply.body, dict):
        zone = _zone(reply.body.get("time_zone"))
        slots = reply.body.get("slots") or []
        coupon_sites = list(reply.body.get("coupon_sites") or [])
    elif reply.status == 401:
        unavailable = "Please log in to book this appointment."
    else:
        unavailable = reply.detail or "This appointment cannot be booked by you."
    chosen_at = parse_instant(slot) if slot else None
    days = slot_days(slots, zone, chosen_at)
    chosen = next((s for d in days for s in d.slots if s.chosen), None)
    free = offering.billing.get("type") == "free"
    credit = await _credit(p, active, str(data["business"]["id"]))
    choices: list[tuple[str, str]] = []
    if credit is not None:
        choices.append(("credit", f"Use a credit ({credit.label})"))
    choices.append(("free", "Free") if free else ("order", f"Pay {offering.price_label}"))
    book_path = f"/b/{slug}/offerings/{offering_id}/book"
    return {
        **storefront_context(data["business"]),
        "offering": offering,
        "can_buy": bool(data.get("can_buy", True)),
        "self_bookable": offering.details.get("new_clients_can_self_book", True),
        "buyer": active.principal if active else None,
        "zone": zone.key,
        "days": days,
        "chosen": chosen,
        "slot_missing": slot is not None and chosen is None,
        "unavailable": unavailable,
        "coupon_sites": coupon_sites,
        "credit": credit,
        "choices": choices,
        "default_pay": "free" if free else ("credit" if credit else "order"),
        "book_path": book_path,
        "tz_given": zone_name is not None,
        "login_href": f"/login?{urlencode({'next': book_path})}",
    }


def _slot_href(book_path: str, zone: str, starts_at: str | None = None) -> str:
    query = {"tz": zone} | ({"slot": starts_at} if starts_at else {})
    return f"{book_path}?{urlencode(query)}"


@router.get("/b/{slug}/offerings/{offering_id}/book")
async def booking_page(request: Request, slug: str, offering_id: uuid.UUID, p: P) -> Response:
    query = request.query_params
    context = await _booking(p, request, slug, offering_id, query.get("tz"), query.get("slot"))
    if isinstance(context, Response):
        return context
    return await p.render(
        request,
        BOOK,
        **context,
        slot_href=_slot_href,
        idempotency_key=new_idempotency_key(),
        form={"pay_with": context["default_pay"]},
    )


def _request_body(form: FormData, context: dict[str, Any], chosen: Obj) -> dict[str, Any]:
    body: dict[str, Any] = {
        "offering_id": context["offering"].id,
        "starts_at": chosen.starts_at,
        "time_zone": context["zone"],
        "pay_with": form.get("pay_with") or context["default_pay"],
    }
    site = (form.get("coupon_site") or "").strip()
    number = (form.get("coupon_number") or "").strip()
    if site:
        body["coupon_site"] = site
    if number:
        body["coupon_number"] = number
    if context["buyer"] is None:
        body["name"] = (form.get("name") or "").strip()
        body["email"] = (form.get("email") or "").strip()
    return body


@router.post("/b/{slug}/offerings/{offering_id}/book")
async def request_appointment(
    request: Request, slug: str, offering_id: uuid.UUID, p: P
) -> Response:
    form = await read_form(request)
    context = await _booking(p, request, slug, offering_id, form.get("tz"), form.get("slot"))
    if isinstance(context, Response):
        return context
    key = form.get("idempotency_key", "")
    if not KEY_PATTERN.match(key):
        key = new_idempotency_key()
    extra = {"slot_href": _slot_href, "idempotency_key": key}
    if stop := await guarded(p, request, form, BOOK, "checkout", **context, **extra):
        return stop
    chosen = context["chosen"]
    if chosen is None:
        # The slot was taken (confirmed) or left the window since the page was shown.
        return await p.render(
            request,
            BOOK,
            status=409,
            **context,
            **extra,
            form=public_fields(form),
            error=REASONS["slot_not_available"],
        )
    active = await p.viewer(request)
    reply = await call_clients(
        p,
        "POST",
        f"/b/{slug}/appointments",
        token=_token(active),
        json_body=_request_body(form, context, chosen),
        headers={"Idempotency-Key": key},
    )
    if reply.ok and isinstance(reply.body, dict):
        appointment = appointment_view(reply.body, _zone(context["zone"]))
        if appointment.status == "awaiting_payment":
            query = urlencode({"appointment_id": appointment.id})
            return p.redirect(f"/b/{slug}/offerings/{offering_id}/checkout?{query}")
        return await p.render(
            request,
            "appointment_requested.html",
            **storefront_context(context["business"]),
            offering=context["offering"],
            appointment=appointment,
        )
    if reply.status >= 500 or reply.status == 0:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    fields = reply.field_errors() if reply.status == 422 else {}
    errors = {
        k: v for k, v in fields.items() if k in {"name", "email", "coupon_site", "coupon_number"}
    }
    error = None if errors and len(errors) == len(fields) else refusal(reply, "")
    if reply.status == 409 or error == REASONS["slot_not_available"]:
        # Another confirmed appointment took it: the slots shown are the fresh ones.
        context["chosen"] = None
    return await p.render(
        request,
        BOOK,
        status=reply.status,
        **{**context, **extra, "idempotency_key": new_idempotency_key()},
        form=public_fields(form),
        errors=errors,
        error=error or "This request could not be sent. Please check the form.",
    )


# -- my appointments -------------------------------------------------------------------


def _login(p: Pages, path: str) -> Response:
    return p.redirect(f"/login?{urlencode({'next': path})}", notice="login_required")


async def _mine(p: Pages, active: ActiveSession) -> list[dict[str, Any]] | None:
    reply = await call_clients(p, "GET", "/me/appointments", token=active.access_token)
    if reply.status == 401:
        return None
    items: list[dict[str, Any]] = body_of(reply).get("items", [])
    return items


def _viewer_zone(request: Request, form: dict[str, str] | None = None) -> str | None:
    name = (form or {}).get("tz") or request.query_params.get("tz")
    return name if zone_of(name) else None


async def _my_page(
    p: Pages,
    request: Request,
    active: ActiveSession,
    tz: str | None,
    *,
    status: int = 200,
    notice: Notice | None = None,
) -> Response:
    items = await _mine(p, active)
    if items is None:
        return _login(p, "/appointments")
    now = datetime.now(UTC)
    upcoming, past = [], []
    for data in items:
        view = appointment_view(data, _zone(tz or data.get("client_time_zone")))
        ends = parse_instant(data.get("ends_at")) or now
        if ends > now and view.status in ("requested", "confirmed", "awaiting_payment"):
            upcoming.append(view)
        else:
            past.append(view)
    past.reverse()  # the most recent first
    return await p.render(
        request,
        "appointments_mine.html",
        status=status,
        notice=notice,
        upcoming=upcoming,
        past=past,
        tz=tz or "",
        tz_given=tz is not None,
    )


@router.get("/appointments")
async def my_appointments(request: Request, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return _login(p, "/appointments")
    return await _my_page(p, request, active, _viewer_zone(request))


async def _own(p: Pages, active: ActiveSession, appointment_id: uuid.UUID) -> dict[str, Any] | None:
    items = await _mine(p, active)
    return next((a for a in items or [] if str(a["id"]) == str(appointment_id)), None)


@router.post("/appointments/{appointment_id}/cancel")
async def cancel_mine(request: Request, appointment_id: uuid.UUID, p: P) -> Response:
    form = await read_form(request)
    active = await p.viewer(request)
    if active is None:
        return _login(p, "/appointments")
    if stop := await expired_form(p, request, form):
        return stop
    tz = _viewer_zone(request, form)
    reply = await call_clients(
        p, "POST", f"/me/appointments/{appointment_id}/cancel", token=active.access_token
    )
    if reply.status == 404 or reply.status == 422:
        return await not_found(p, request, "There is no such appointment, or it is not yours.")
    if not reply.ok:
        text = refusal(reply, "This appointment could not be canceled.")
        return await _my_page(p, request, active, tz, status=reply.status, notice=_error(text))
    return p.redirect(_mine_href(tz), notice="my_appointment_canceled")


def _error(text: str) -> Notice:
    return Notice("error", text)


def _mine_href(tz: str | None) -> str:
    return "/appointments" + (f"?{urlencode({'tz': tz})}" if tz else "")


async def _reschedule_page(
    p: Pages,
    request: Request,
    active: ActiveSession,
    appointment_id: uuid.UUID,
    tz: str | None,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    data = await _own(p, active, appointment_id)
    if data is None:
        return await not_found(p, request, "There is no such appointment, or it is not yours.")
    zone_name = tz or str(data.get("client_time_zone") or "") or None
    params = {"days": str(BOOKING_DAYS)}
    if zone_of(zone_name):
        params["tz"] = str(zone_name)
    reply = await call_clients(
        p,
        "GET",
        f"/b/{data['business_slug']}/appointment-offerings/{data['offering_id']}/slots",
        token=active.access_token,
        params=params,
    )
    if reply.status >= 500 or reply.status == 0:
        raise UpstreamUnavailable(f"clients answered {reply.status}")
    zone = _zone(zone_name)
    slots: list[dict[str, Any]] = []
    if reply.ok and isinstance(reply.body, dict):
        zone = _zone(reply.body.get("time_zone"))
        slots = reply.body.get("slots") or []
    elif error is None:
        error = reply.detail or "The free times of this appointment cannot be shown right now."
    appointment = appointment_view(data, zone)
    return await p.render(
        request,
        "appointment_reschedule.html",
        status=status,
        appointment=appointment,
        days=slot_days(slots, zone, None),
        zone=zone.key,
        tz=tz or "",
        tz_given=tz is not None,
        error=error,
    )


@router.get("/appointments/{appointment_id}/reschedule")
async def reschedule_mine_page(request: Request, appointment_id: uuid.UUID, p: P) -> Response:
    active = await p.viewer(request)
    if active is None:
        return _login(p, f"/appointments/{appointment_id}/reschedule")
    return await _reschedule_page(p, request, active, appointment_id, _viewer_zone(request))


@router.post("/appointments/{appointment_id}/reschedule")
async def reschedule_mine(request: Request, appointment_id: uuid.UUID, p: P) -> Response:
    form = await read_form(request)
    active = await p.viewer(request)
    if active is None:
        return _login(p, "/appointments")
    if stop := await expired_form(p, request, form):
        return stop
    tz = _viewer_zone(request, form)
    starts = parse_instant(form.get("starts_at")) if form.get("starts_at") else None
    if starts is None:
        return await _reschedule_page(
            p, request, active, appointment_id, tz, status=422, error="Choose a new time first."
        )
    reply = await call_clients(
        p,
        "POST",
        f"/me/appointments/{appointment_id}/reschedule",
        token=active.access_token,
        json_body={"starts_at": utc_text(starts)},
    )
    if reply.status == 404:
        return await not_found(p, request, "There is no such appointment, or it is not yours.")
    if not reply.ok:
        text = refusal(reply, "This appointment could not be moved.")
        if isinstance(reply.body, dict) and reply.body.get("reason") == "notice_period":
            return await _my_page(p, request, active, tz, status=409, notice=_error(text))
        return await _reschedule_page(
            p, request, active, appointment_id, tz, status=reply.status, error=text
        )
    return p.redirect(_mine_href(tz), notice="my_appointment_rescheduled")
