"""The sender against a real SMTP server that refuses, disappears, or comes back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import make_url

from kit.db import create_engine, create_sessionmaker, utcnow
from notifications.emails.repository import EmailRepository
from notifications.emails.sender import EmailSender
from notifications.emails.service import email_id
from notifications.models import Email
from tests.notifications import events
from tests.notifications.conftest import (
    Notifications,
    SmtpServer,
    free_port,
    no_more_deliveries,
    wait_until,
)
from tests.support.netproxy import CuttableProxy

TRY_LATER = "421 4.3.2 Try again later"
NO_SUCH_USER = "550 5.1.1 No such user"


@asynccontextmanager
async def running(*senders: EmailSender) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sender.run(stop)) for sender in senders]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def queue_emails(harness: Notifications, count: int) -> list[uuid.UUID]:
    ids = []
    for n in range(count):
        event = events.verification_requested()
        context = {"name": f"N{n}", "verify_url": "https://app.example.test/v", "expires_in": "1h"}
        await harness.queue(event, "verify_email", f"person{n}@example.com", **context)
        ids.append(email_id(event.id, "verify_email", f"person{n}@example.com"))
    return ids


async def test_421_for_three_attempts_delays_then_delivers_exactly_once(
    notifications: Notifications,
) -> None:
    notifications.smtp.handler.refuse(TRY_LATER, times=3)
    await notifications.publish(events.magic_link_requested())

    async with no_more_deliveries(notifications.smtp, settle=1.0):
        [received] = await notifications.wait_for_delivery()
    row = await notifications.email()
    assert (row.status, row.attempts) == ("sent", 4)
    assert row.last_error is not None and "421" in row.last_error
    assert notifications.smtp.handler.rcpt_attempts == 4
    assert received.message["Message-ID"] == row.message_id
    # Backoff 0.1 s, 0.2 s, 0.4 s between the attempts (plus jitter).
    assert row.sent_at is not None and row.sent_at - row.created_at >= timedelta(seconds=0.7)


async def test_mail_server_down_then_started_delivers_once(
    make_notifications: Callable[..., Awaitable[Notifications]],
) -> None:
    smtp = SmtpServer(free_port())  # nothing listens on its port yet
    harness = await make_notifications(smtp)
    await harness.start_worker()
    await harness.publish(events.account_registered())

    async def retried() -> bool:
        rows = await harness.emails()
        return bool(rows) and rows[0].attempts >= 3 and rows[0].status == "queued"

    await wait_until(retried, what="several failed attempts")
    row = await harness.email()
    assert row.last_error is not None and "SMTPConnect" in row.last_error
    assert row.sent_at is None

    await smtp.start()
    try:
        async with no_more_deliveries(smtp):
            await harness.wait_for_delivery()
        assert len(smtp.received) == 1
        assert (await harness.email()).status == "sent"
    finally:
        await smtp.stop()


async def test_550_fails_the_email_without_retrying(notifications: Notifications) -> None:
    notifications.smtp.handler.refuse(NO_SUCH_USER)
    await notifications.publish(events.password_reset_requested())

    await notifications.wait_for_status("failed")
    await asyncio.sleep(0.6)  # several backoff periods: no further attempt may come
    row = await notifications.email()
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error is not None and "550" in row.last_error
    assert notifications.smtp.handler.rcpt_attempts == 1
    assert notifications.smtp.received == []


async def test_refused_for_ever_gives_up_after_max_attempts(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    harness = await make_notifications(smtp_server, email_max_attempts=3)
    await harness.start_worker()
    smtp_server.handler.refuse(TRY_LATER)
    await harness.publish(events.verification_requested())

    await harness.wait_for_status("failed")
    await asyncio.sleep(0.5)
    row = await harness.email()
    assert row.attempts == 3
    assert row.last_error is not None and row.last_error.startswith("gave up after 3 attempts")
    assert smtp_server.handler.rcpt_attempts == 3


async def test_two_senders_never_send_the_same_email(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    harness = await make_notifications(smtp_server, sender_batch_size=3, sender_poll_interval=0.01)
    ids = await queue_emails(harness, 60)
    engines = [create_engine(harness.settings.database_url) for _ in range(2)]
    senders = [EmailSender(create_sessionmaker(e), harness.settings) for e in engines]
    try:
        async with running(*senders), no_more_deliveries(smtp_server):
            await harness.wait_for_delivery(60)
    finally:
        for engine in engines:
            await engine.dispose()
    message_ids = [r.message["Message-ID"] for r in smtp_server.received]
    assert sorted(message_ids) == sorted(f"<{i}@clientele>" for i in ids)
    rows = await harness.emails()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}


async def test_an_abandoned_email_is_sent_again_with_the_same_message_id(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    harness = await make_notifications(smtp_server)
    abandoned, held = await queue_emails(harness, 2)
    now = utcnow()
    async with harness.sessionmaker() as session, session.begin():
        # A sender died while sending the first: its lease ran out. Another holds the second.
        for row_id, locked_until in (
            (abandoned, now - timedelta(seconds=1)),
            (held, now + timedelta(minutes=1)),
        ):
            await session.execute(
                update(Email)
                .where(Email.id == row_id)
                .values(status="sending", attempts=1, locked_until=locked_until)
            )

    assert await EmailSender(harness.sessionmaker, harness.settings).send_batch() == 1
    [received] = smtp_server.received
    assert received.message["Message-ID"] == f"<{abandoned}@clientele>"
    rows = {r.id: r for r in await harness.emails()}
    assert (rows[abandoned].status, rows[abandoned].attempts) == ("sent", 2)
    assert (rows[held].status, rows[held].attempts) == ("sending", 1)


async def test_a_sender_that_lost_its_lease_cannot_overwrite_the_new_holder(
    make_notifications: Callable[..., Awaitable[Notifications]],
) -> None:
    harness = await make_notifications(SmtpServer(free_port()))
    [row_id] = await queue_emails(harness, 1)
    now = utcnow()
    async with harness.sessionmaker() as session, session.begin():
        [stale] = await EmailRepository(session).claim_due(now, 10, now + timedelta(seconds=1))
    later = now + timedelta(seconds=2)
    async with harness.sessionmaker() as session, session.begin():
        [current] = await EmailRepository(session).claim_due(
            later, 10, later + timedelta(minutes=2)
        )
    async with harness.sessionmaker() as session, session.begin():
        repo = EmailRepository(session)
        assert await repo.reschedule(stale, now, "stale sender") is False
        assert await repo.mark_sent(current, later, "<x@clientele>") is True
    row = await harness.email()
    assert (row.id, row.status, row.attempts, row.last_error) == (row_id, "sent", 2, None)


async def test_stopping_hands_claimed_emails_back_without_using_an_attempt(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    harness = await make_notifications(smtp_server)
    await queue_emails(harness, 3)
    stop = asyncio.Event()
    stop.set()
    assert await EmailSender(harness.sessionmaker, harness.settings).send_batch(stop) == 3
    rows = await harness.emails()
    assert {(r.status, r.attempts, r.locked_until) for r in rows} == {("queued", 0, None)}
    assert smtp_server.received == []


async def test_sender_rides_out_a_database_outage(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    harness = await make_notifications(smtp_server)
    url = make_url(harness.settings.database_url)
    proxy = await CuttableProxy(url.host or "127.0.0.1", url.port or 5432).start()
    via_proxy = create_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    sender = EmailSender(create_sessionmaker(via_proxy), harness.settings)
    try:
        async with running(sender):
            await queue_emails(harness, 1)
            await harness.wait_for_delivery(1)
            proxy.cut()
            await queue_emails(harness, 2)
            await asyncio.sleep(1.0)
            assert len(smtp_server.received) == 1, "nothing is sent while the database is away"
            proxy.restore()
            async with no_more_deliveries(smtp_server):
                await harness.wait_for_delivery(3)
    finally:
        await via_proxy.dispose()
        await proxy.close()
    assert len(smtp_server.received) == 3
    assert {r.status for r in await harness.emails()} == {"sent"}
