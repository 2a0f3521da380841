"""Appointment emails, end to end through RabbitMQ, PostgreSQL and a real SMTP server.

Each change of an appointment (requested, confirmed, declined, rescheduled, canceled)
sends its emails once per (appointment, sequence, template, recipient), with the time in
the recipient's zone and an .ics calendar file; a confirmed appointment gets a reminder
that waits until it is due and never goes out once the appointment is canceled or moved.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import update

from kit.contracts.clients import (
    AppointmentCanceledV1,
    AppointmentConfirmedV1,
    AppointmentDeclinedV1,
    AppointmentRequestedV1,
    AppointmentRescheduledV1,
)
from kit.db import utcnow
from notifications.emails import calendar
from notifications.emails.appointments import appointment_key, describe_when
from notifications.emails.service import email_id
from notifications.models import AppointmentState, Email
from tests.notifications import events
from tests.notifications.conftest import (
    PUBLIC_BASE_URL,
    Notifications,
    Received,
    no_more_deliveries,
    wait_until,
)
from tests.notifications.mail import html_text

CLIENT = "jamie.client@example.com"
COACH = "owner@example.com"
PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"
# After the US moved its clocks (March 14, 2027) and before Europe does (March 28): New York
# is UTC-4 (EDT) while Paris is still UTC+1 (CET). The events are published in December,
# when both are on winter time, so a fixed offset taken "now" would be an hour off.
DST_START = datetime(2027, 3, 20, 14, 0, tzinfo=UTC)


def appointment_event(kind: type[Any], business_id: uuid.UUID, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "business_id": business_id,
        "appointment_id": uuid.uuid4(),
        "offering_id": uuid.uuid4(),
        "offering_name": "Intro call",
        "business_name": "Casey Coaching",
        "business_time_zone": PARIS,
        "client_account_id": uuid.uuid4(),
        "client_email": "Jamie.Client@Example.com",
        "client_name": "Jamie Client",
        "client_time_zone": NEW_YORK,
        "starts_at": DST_START,
        "ends_at": DST_START + timedelta(hours=1),
        "status": "requested",
        "sequence": 1,
        "reminder_hours_before": 0,
        **overrides,
    }
    if "ends_at" not in overrides:
        values["ends_at"] = values["starts_at"] + timedelta(hours=1)
    return kind(**values)


def then(kind: type[Any], before: Any, **changes: Any) -> Any:
    """The next change of the same appointment (a new event id, the next sequence)."""
    facts = before.model_dump(exclude={"id", "occurred_at", "previous_starts_at", "canceled_by"})
    facts["sequence"] = before.sequence + 1
    facts.update(changes)
    if "starts_at" in changes and "ends_at" not in changes:
        facts["ends_at"] = changes["starts_at"] + (before.ends_at - before.starts_at)
    return kind(**facts)


def again(event: Any) -> Any:
    """The same change published once more (a new event id, the same sequence)."""
    return type(event)(**event.model_dump(exclude={"id"}))


async def known_business(notifications: Notifications) -> uuid.UUID:
    business = events.business_created(owner_email=COACH)
    await notifications.publish_all(business)
    assert business.business_id is not None
    return business.business_id


def to(received: list[Received], recipient: str) -> list[EmailMessage]:
    return [r.message for r in received if r.rcpt_tos == [recipient]]


def bodies(message: EmailMessage) -> tuple[str, str]:
    """(text, the HTML's visible text)."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), html_text(str(html.get_content()))


def ics(message: EmailMessage) -> tuple[bytes, list[str], EmailMessage]:
    """The raw .ics bytes, its unfolded content lines and its MIME part."""
    assert message.get_content_type() == "multipart/mixed"
    [part] = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert isinstance(part, EmailMessage)
    assert part.get_filename() == "appointment.ics"
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    # CRLF line endings, and never a bare LF or CR.
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 75, line
    lines = raw.decode("utf-8").replace("\r\n ", "").split("\r\n")[:-1]
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert "VERSION:2.0" in lines
    assert lines.index("BEGIN:VEVENT") < lines.index("END:VEVENT")
    return raw, lines, part


def prop(lines: list[str], name: str) -> str:
    """The value of a property (parameters dropped)."""
    [value] = [
        line.split(":", 1)[1] for line in lines if line.split(":", 1)[0].split(";", 1)[0] == name
    ]
    return value


def assert_calendar(
    message: EmailMessage, event: Any, method: str, status: str, starts_at: datetime | None = None
) -> list[str]:
    _raw, lines, part = ics(message)
    assert part.get_param("method") == method
    assert prop(lines, "METHOD") == method
    assert prop(lines, "STATUS") == status
    assert prop(lines, "UID") == f"{event.appointment_id}@clientele"
    assert prop(lines, "SEQUENCE") == str(event.sequence)
    start = starts_at or event.starts_at
    assert prop(lines, "DTSTART") == start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    end = start + (event.ends_at - event.starts_at)
    assert prop(lines, "DTEND") == end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    assert prop(lines, "DTSTAMP").endswith("Z")
    assert prop(lines, "ATTENDEE") == f"mailto:{CLIENT}"
    assert prop(lines, "ORGANIZER") == f"mailto:{COACH}"
    return lines


def message_id(event: Any, template: str, recipient: str) -> str:
    key = appointment_key(event.appointment_id, event.sequence)
    return f"<{email_id(key, template, recipient)}@clientele>"


async def reminders(notifications: Notifications) -> list[Email]:
    return [r for r in await notifications.emails() if r.template == "appointment_reminder"]


# -- request, confirmation, time zones ------------------------------------------------------


async def test_a_request_tells_the_client_and_the_coach_each_in_their_own_zone(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    event = appointment_event(
        AppointmentRequestedV1, business_id, coupon_site="Groupon", coupon_number="GX-42"
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(event, again(event), event)
        received = await notifications.wait_for_delivery(2)
    assert len(received) == 2

    [client] = to(received, CLIENT)
    assert client["Subject"] == "Your appointment request with Casey Coaching was received"
    assert client["Message-ID"] == message_id(event, "appointment_requested", CLIENT)
    for body in bodies(client):
        assert "Hi Jamie Client" in body
        # New York is already on summer time (EDT) on March 20, 2027.
        assert "Saturday, March 20, 2027, 10:00 AM – 11:00 AM EDT (America/New_York)" in body
        assert "Groupon" in body and "GX-42" in body
    assert f"{PUBLIC_BASE_URL}/home" in bodies(client)[0]
    assert_calendar(client, event, "REQUEST", "TENTATIVE")

    [coach] = to(received, COACH)
    assert coach["Subject"] == "New appointment request from Jamie Client: Intro call"
    assert coach["Message-ID"] == message_id(event, "appointment_requested_coach", COACH)
    for body in bodies(coach):
        # Paris is not yet (CET): 14:00 UTC is 3 PM there, not 4 PM.
        assert "Saturday, March 20, 2027, 3:00 PM – 4:00 PM CET (Europe/Paris)" in body
        assert "Jamie Client (jamie.client@example.com)" in body
        assert "Groupon" in body and "GX-42" in body
    assert f"{PUBLIC_BASE_URL}/businesses/{business_id}/calendar" in bodies(coach)[0]
    assert_calendar(coach, event, "REQUEST", "TENTATIVE")

    rows = await notifications.emails()
    assert sorted((r.template, r.recipient) for r in rows) == [
        ("appointment_requested", CLIENT),
        ("appointment_requested_coach", COACH),
    ]
    assert {r.business_id for r in rows} == {business_id}


def test_times_follow_each_zone_across_its_own_daylight_saving_change() -> None:
    one_hour = timedelta(hours=1)
    # The same UTC hour before and after each zone's change in spring 2027.
    before_us = datetime(2027, 3, 13, 14, 0, tzinfo=UTC)
    after_us = datetime(2027, 3, 15, 14, 0, tzinfo=UTC)
    after_eu = datetime(2027, 3, 29, 14, 0, tzinfo=UTC)
    ny, paris = NEW_YORK, PARIS
    assert "9:00 AM – 10:00 AM EST" in describe_when(before_us, before_us + one_hour, ny, "en_US")
    assert "10:00 AM – 11:00 AM EDT" in describe_when(after_us, after_us + one_hour, ny, "en_US")
    assert "3:00 PM – 4:00 PM CET" in describe_when(after_us, after_us + one_hour, paris, "en_US")
    assert "4:00 PM – 5:00 PM CEST" in describe_when(after_eu, after_eu + one_hour, paris, "en_US")
    # Crossing midnight in the zone names both days.
    late = datetime(2027, 3, 21, 3, 30, tzinfo=UTC)  # 11:30 PM in New York on the 20th
    assert describe_when(late, late + one_hour, ny, "en_US") == (
        "Saturday, March 20, 2027, 11:30 PM – Sunday, March 21, 2027, 12:30 AM EDT "
        "(America/New_York)"
    )
    # Not a zone: UTC, named.
    assert describe_when(late, late + one_hour, "Nowhere/Else", "en_US").endswith("(UTC)")


async def test_the_confirmation_shows_the_clients_local_time_and_the_coupon_once(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    requested = appointment_event(
        AppointmentRequestedV1, business_id, coupon_site="Groupon", coupon_number="GX-42"
    )
    confirmed = then(AppointmentConfirmedV1, requested, status="confirmed")
    await notifications.publish_all(requested)
    await notifications.wait_for_delivery(2)
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        # The same change twice (a new event id), and a redelivery of the same event.
        await notifications.publish_all(confirmed, again(confirmed), confirmed)
        received = await notifications.wait_for_delivery(3)
    assert len(received) == 3

    confirmation = received[2].message
    assert received[2].rcpt_tos == [CLIENT]
    assert confirmation["Subject"] == "Confirmed: Intro call with Casey Coaching"
    assert confirmation["Message-ID"] == message_id(confirmed, "appointment_confirmed", CLIENT)
    text, shown = bodies(confirmation)
    for body in (text, shown):
        assert "Casey Coaching confirmed your appointment" in body
        assert "Saturday, March 20, 2027, 10:00 AM – 11:00 AM EDT (America/New_York)" in body
        assert "CET" not in body and "9:00 AM" not in body
    assert "Coupon site: Groupon" in text and "Coupon number: GX-42" in text
    assert "Coupon site Groupon" in shown and "Coupon number GX-42" in shown
    lines = assert_calendar(confirmation, confirmed, "REQUEST", "CONFIRMED")
    assert "GX-42" in prop(lines, "DESCRIPTION")

    rows = [r for r in await notifications.emails() if r.template == "appointment_confirmed"]
    assert len(rows) == 1 and rows[0].attachments is not None
    assert await reminders(notifications) == []  # reminder_hours_before 0: none


async def test_an_email_without_an_ics_is_built_as_before(notifications: Notifications) -> None:
    business_id = await known_business(notifications)
    event = events.client_added(business_id, notify=True, email=CLIENT)
    await notifications.publish_all(event)
    [received] = await notifications.wait_for_delivery(1)
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert list(message.iter_attachments()) == []
    assert (await notifications.email()).attachments is None


async def test_a_declined_request_removes_the_tentative_entry(notifications: Notifications) -> None:
    business_id = await known_business(notifications)
    requested = appointment_event(AppointmentRequestedV1, business_id)
    declined = then(AppointmentDeclinedV1, requested, status="declined")
    # One after the other: the consumer runs two batches at once, and a request that
    # arrives after its own decline is stale and rightly sends nothing.
    await notifications.publish_all(requested)
    await notifications.wait_for_delivery(2)
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(declined, again(declined))
        received = await notifications.wait_for_delivery(3)
    [_request, decline] = to(received, CLIENT)
    assert decline["Subject"] == "Your appointment request with Casey Coaching was declined"
    text, _shown = bodies(decline)
    assert "declined your request" in text
    assert "Saturday, March 20, 2027, 10:00 AM – 11:00 AM EDT" in text
    assert_calendar(decline, declined, "CANCEL", "CANCELLED")


async def test_a_cancellation_says_who_canceled_and_tells_the_coach_when_the_client_did(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    by_client = appointment_event(AppointmentConfirmedV1, business_id, status="confirmed")
    by_coach = appointment_event(AppointmentConfirmedV1, business_id, status="confirmed")
    canceled_by_client = then(
        AppointmentCanceledV1, by_client, status="canceled", canceled_by="client"
    )
    canceled_by_coach = then(
        AppointmentCanceledV1, by_coach, status="canceled", canceled_by="coach"
    )
    await notifications.publish_all(by_client, by_coach)
    await notifications.wait_for_delivery(2)
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(canceled_by_client, canceled_by_coach)
        received = await notifications.wait_for_delivery(5)
    assert len(received) == 5
    cancellations = {r.message["Message-ID"]: r.message for r in received[2:]}

    mine = cancellations[message_id(canceled_by_client, "appointment_canceled", CLIENT)]
    assert mine["Subject"] == "Canceled: Intro call with Casey Coaching"
    assert "You canceled your appointment with Casey Coaching" in bodies(mine)[0]
    assert_calendar(mine, canceled_by_client, "CANCEL", "CANCELLED")

    coach = cancellations[message_id(canceled_by_client, "appointment_canceled_coach", COACH)]
    assert coach["Subject"] == "Jamie Client canceled their appointment: Intro call"
    assert "Saturday, March 20, 2027, 3:00 PM – 4:00 PM CET (Europe/Paris)" in bodies(coach)[0]
    assert_calendar(coach, canceled_by_client, "CANCEL", "CANCELLED")

    theirs = cancellations[message_id(canceled_by_coach, "appointment_canceled", CLIENT)]
    assert "Casey Coaching canceled your appointment" in bodies(theirs)[0]
    assert_calendar(theirs, canceled_by_coach, "CANCEL", "CANCELLED")


# -- reminders -----------------------------------------------------------------------------


async def test_the_reminder_goes_out_only_once_it_is_due(notifications: Notifications) -> None:
    business_id = await known_business(notifications)
    # Due in a few seconds: one hour before a start one hour and four seconds away.
    starts_at = (utcnow() + timedelta(hours=1, seconds=4)).replace(microsecond=0)
    confirmed = appointment_event(
        AppointmentConfirmedV1,
        business_id,
        status="confirmed",
        starts_at=starts_at,
        reminder_hours_before=1,
    )
    await notifications.publish_all(confirmed, again(confirmed))
    [reminder] = await reminders(notifications)
    assert reminder.status == "queued"
    assert reminder.next_attempt_at == starts_at - timedelta(hours=1)
    received = await notifications.wait_for_delivery(1)
    assert [r.message["Subject"] for r in received] == ["Confirmed: Intro call with Casey Coaching"]

    async with no_more_deliveries(notifications.smtp, settle=1.0):
        received = await notifications.wait_for_delivery(2, timeout=20)
    message = received[1].message
    assert message["Subject"] == "Reminder: Intro call with Casey Coaching in 1 hour"
    assert message["Message-ID"] == message_id(confirmed, "appointment_reminder", CLIENT)
    assert "reminder of your appointment with Casey Coaching in 1 hour" in bodies(message)[0]
    assert_calendar(message, confirmed, "REQUEST", "CONFIRMED")
    [sent] = await reminders(notifications)
    assert sent.status == "sent" and sent.sent_at is not None
    assert sent.sent_at >= starts_at - timedelta(hours=1)  # never before it was due


async def test_a_reminder_waits_and_moves_with_a_reschedule(notifications: Notifications) -> None:
    business_id = await known_business(notifications)
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    confirmed = appointment_event(
        AppointmentConfirmedV1,
        business_id,
        status="confirmed",
        starts_at=starts_at,
        reminder_hours_before=24,
    )
    await notifications.publish_all(confirmed)
    await notifications.wait_for_delivery(1)
    [waiting] = await reminders(notifications)
    assert waiting.status == "queued"
    assert waiting.next_attempt_at == starts_at - timedelta(hours=24)
    await asyncio.sleep(0.5)
    assert len(notifications.smtp.received) == 1  # not due: the sender leaves it

    moved_to = starts_at + timedelta(days=1, hours=2)
    rescheduled = then(
        AppointmentRescheduledV1,
        confirmed,
        status="confirmed",
        starts_at=moved_to,
        previous_starts_at=starts_at,
        rescheduled_by="client",
    )
    await notifications.publish_all(rescheduled, again(rescheduled))
    received = await notifications.wait_for_delivery(3)
    [new_reminder] = await reminders(notifications)  # the first one is gone
    assert new_reminder.id != waiting.id
    assert new_reminder.next_attempt_at == moved_to - timedelta(hours=24)

    client = received[1].message if received[1].rcpt_tos == [CLIENT] else received[2].message
    assert client["Subject"] == "New time for your appointment with Casey Coaching"
    text, _shown = bodies(client)
    new_time = describe_when(moved_to, moved_to + timedelta(hours=1), NEW_YORK, "en_US")
    assert f"New time: {new_time}" in text
    assert "Was: " in text
    assert_calendar(client, rescheduled, "REQUEST", "CONFIRMED", starts_at=moved_to)
    [coach] = to(received, COACH)
    assert coach["Subject"] == "Jamie Client's appointment has moved: Intro call"
    assert (
        describe_when(moved_to, moved_to + timedelta(hours=1), PARIS, "en_US") in bodies(coach)[0]
    )

    # Its time comes (moved into the past here): the new reminder, with the new time, once.
    async with notifications.sessionmaker() as session, session.begin():
        await session.execute(
            update(Email)
            .where(Email.template == "appointment_reminder")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        received = await notifications.wait_for_delivery(4)
    reminder = received[3].message
    assert reminder["Subject"] == "Reminder: Intro call with Casey Coaching in 24 hours"
    assert new_time in bodies(reminder)[0]
    assert_calendar(reminder, rescheduled, "REQUEST", "CONFIRMED", starts_at=moved_to)


async def test_a_canceled_appointments_reminder_is_never_sent(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    confirmed = appointment_event(
        AppointmentConfirmedV1,
        business_id,
        status="confirmed",
        starts_at=starts_at,
        reminder_hours_before=24,
    )
    canceled = then(AppointmentCanceledV1, confirmed, status="canceled", canceled_by="coach")
    await notifications.publish_all(confirmed)
    [waiting] = await reminders(notifications)
    await notifications.publish_all(canceled)
    assert await reminders(notifications) == []

    # A late copy of the confirmation changes nothing: no email, no new reminder.
    await notifications.publish_all(again(confirmed))
    assert await reminders(notifications) == []
    async with notifications.sessionmaker() as session:
        state = await session.get(AppointmentState, confirmed.appointment_id)
        assert state is not None
        assert (state.sequence, state.status, state.reminder_email_id) == (2, "canceled", None)

    # Even once its time has passed, nothing more goes out.
    async with notifications.sessionmaker() as session, session.begin():
        await session.execute(update(Email).values(next_attempt_at=utcnow() - timedelta(days=1)))
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        received = await notifications.wait_for_delivery(2)
    assert [r.message["Subject"] for r in received] == [
        "Confirmed: Intro call with Casey Coaching",
        "Canceled: Intro call with Casey Coaching",
    ]
    async with notifications.sessionmaker() as session:
        assert await session.get(Email, waiting.id) is None


async def test_changes_that_arrive_out_of_order_send_nothing_stale(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    confirmed = appointment_event(
        AppointmentConfirmedV1,
        business_id,
        status="confirmed",
        starts_at=starts_at,
        reminder_hours_before=24,
    )
    canceled = then(AppointmentCanceledV1, confirmed, status="canceled", canceled_by="coach")
    # The cancellation comes first: the confirmation (older) sends nothing and leaves no
    # reminder behind.
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(canceled)
        await notifications.publish_all(confirmed)
        received = await notifications.wait_for_delivery(1)
    assert [r.message["Subject"] for r in received] == ["Canceled: Intro call with Casey Coaching"]
    assert await reminders(notifications) == []


async def test_the_coach_email_waits_for_the_business_to_be_known(
    notifications: Notifications,
) -> None:
    business = events.business_created(owner_email=COACH)
    assert business.business_id is not None
    event = appointment_event(AppointmentRequestedV1, business.business_id)
    await notifications.publish(event)
    await asyncio.sleep(0.5)  # handled and refused at least once: nothing is queued yet
    assert notifications.smtp.received == [] and await notifications.emails() == []

    await notifications.publish(business)
    received = await notifications.wait_for_delivery(2)
    await notifications.wait_handled(event, business)
    assert sorted(r.rcpt_tos[0] for r in received) == [CLIENT, COACH]
    [coach] = to(received, COACH)
    assert_calendar(coach, event, "REQUEST", "TENTATIVE")

    async def one_each() -> bool:
        rows = await notifications.emails()
        return len(rows) == 2 and all(r.status == "sent" for r in rows)

    await wait_until(one_each, what="both emails sent")


# -- the iCalendar writer ------------------------------------------------------------------


def test_the_calendar_escapes_text_and_folds_long_lines_on_character_boundaries() -> None:
    summary = 'Yoga; stretch, breathe \\ relax\nthen tea "ok" ' + "é" * 50
    text = calendar.calendar(
        calendar.CalendarEvent(
            uid="abc@clientele",
            sequence=4,
            stamp=datetime(2026, 12, 2, 9, 30, tzinfo=UTC),
            starts_at=datetime(2027, 3, 20, 10, 0, tzinfo=UTC),
            ends_at=datetime(2027, 3, 20, 11, 0, tzinfo=UTC),
            summary=summary,
            description="Line one\r\nLine two",
            organizer=calendar.Person('Casey "The Coach"; Co', "casey@example.com"),
            attendee=calendar.Person("Jamie, Client", "jamie@example.com"),
            method=calendar.CANCEL,
            status=calendar.CANCELLED,
        )
    )
    raw = text.encode("utf-8")
    assert raw.count(b"\n") == raw.count(b"\r\n")
    physical = raw.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in physical)
    assert any(line.startswith(b" ") for line in physical)  # something was folded
    for line in physical:
        line.decode("utf-8")  # no character cut in two
    lines = text.replace("\r\n ", "").split("\r\n")[:-1]
    assert prop(lines, "SUMMARY") == (
        'Yoga\\; stretch\\, breathe \\\\ relax\\nthen tea "ok" ' + "é" * 50
    )
    assert prop(lines, "DESCRIPTION") == "Line one\\nLine two"
    assert prop(lines, "METHOD") == "CANCEL" and prop(lines, "STATUS") == "CANCELLED"
    assert prop(lines, "SEQUENCE") == "4"
    assert prop(lines, "DTSTAMP") == "20261202T093000Z"
    assert prop(lines, "DTSTART") == "20270320T100000Z"
    organizer = next(line for line in lines if line.startswith("ORGANIZER"))
    assert organizer == 'ORGANIZER;CN="Casey The Coach; Co":mailto:casey@example.com'
    attendee = next(line for line in lines if line.startswith("ATTENDEE"))
    assert attendee.startswith('ATTENDEE;CN="Jamie, Client";')


async def test_a_move_the_coach_made_is_not_emailed_back_to_the_coach(
    notifications: Notifications,
) -> None:
    business_id = await known_business(notifications)
    confirmed = appointment_event(AppointmentConfirmedV1, business_id, status="confirmed")
    await notifications.publish_all(confirmed)
    await notifications.wait_for_delivery(1)
    moved = then(
        AppointmentRescheduledV1,
        confirmed,
        status="confirmed",
        starts_at=confirmed.starts_at + timedelta(days=1),
        previous_starts_at=confirmed.starts_at,
        rescheduled_by="coach",
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(moved)
        received = await notifications.wait_for_delivery(2)
    assert [r.rcpt_tos for r in received[1:]] == [[CLIENT]]
