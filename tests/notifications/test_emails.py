"""Each email, from the event on the broker to the message the SMTP server received."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from sqlalchemy import select

from kit.contracts.base import Event
from notifications.emails.rendering import EmailRenderer
from notifications.emails.service import EmailService, email_id
from notifications.models import KnownBusiness, inbox
from tests.notifications import events
from tests.notifications.conftest import (
    MAIL_FROM,
    PUBLIC_BASE_URL,
    Notifications,
    SmtpServer,
    free_port,
    no_more_deliveries,
    wait_until,
)
from tests.notifications.mail import all_links, html_links, html_text, parts, text_links


async def wait_for_business(harness: Notifications, business_id: uuid.UUID) -> None:
    async def known() -> bool:
        async with harness.sessionmaker() as session:
            return await session.get(KnownBusiness, business_id) is not None

    await wait_until(known, what="business known")


def assert_links_only_from_public_base(links: list[str]) -> None:
    assert links, "the email has links"
    for link in links:
        assert link.startswith(f"{PUBLIC_BASE_URL}/"), link


async def test_welcome_email_greets_the_coach_names_the_business_and_links_to_verify(
    notifications: Notifications,
) -> None:
    business = events.business_created()
    await notifications.publish(business)
    await wait_for_business(notifications, business.business_id)  # type: ignore[arg-type]
    event = events.account_registered(
        business_id=business.business_id, email="  Casey@Example.COM ", display_name="Casey Coach"
    )
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.mail_from == "no-reply@clientele.test"
    assert received.rcpt_tos == ["casey@example.com"]
    assert message["From"] == MAIL_FROM
    assert message["To"] == "casey@example.com"
    assert message["Subject"] == "Welcome to Clientele, Casey Coach"
    expected_id = email_id(event.id, "welcome", "casey@example.com")
    assert message["Message-ID"] == f"<{expected_id}@clientele>"
    sent_on = parsedate_to_datetime(message["Date"])
    assert abs(sent_on - datetime.now(UTC)) < timedelta(minutes=1)

    text, html = parts(message)
    verify_link = f"{PUBLIC_BASE_URL}/verify-email?token={event.verification_token}"
    account_link = f"{PUBLIC_BASE_URL}/account"
    assert verify_link in text_links(text) and verify_link in html_links(html)
    assert account_link in text_links(text) and account_link in html_links(html)
    assert "Hi Casey Coach," in text and "Welcome to Clientele, Casey Coach!" in html_text(html)
    assert "Your account for Casey Coaching is ready." in text
    assert "Your account for Casey Coaching is ready." in html_text(html)
    assert "expires in 48 hours" in text and "expires in 48 hours" in html_text(html)
    assert_links_only_from_public_base(all_links(message))

    # The server has the message; the sender records that just after.
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.status, row.attempts, row.template) == ("sent", 1, "welcome")
    assert row.id == expected_id and row.message_id == message["Message-ID"]
    assert row.business_id == business.business_id and row.event_id == event.id
    assert row.sent_at is not None and row.locked_until is None


async def test_a_client_account_from_an_invitation_gets_no_coach_welcome(
    notifications: Notifications,
) -> None:
    client_account = events.account_registered(
        origin="invitation", verification_token=None, verification_expires_at=None
    )
    coach_account = events.account_registered(email="second-coach@example.com")
    async with no_more_deliveries(notifications.smtp):
        await notifications.publish(client_account)
        await notifications.wait_handled(client_account)
    await notifications.publish(coach_account)
    [received] = await notifications.wait_for_delivery()
    assert received.rcpt_tos == ["second-coach@example.com"]
    assert [row.recipient for row in await notifications.emails()] == ["second-coach@example.com"]


async def test_welcome_without_known_business_or_token_is_generic(
    notifications: Notifications,
) -> None:
    event = events.account_registered(verification_token=None, verification_expires_at=None)
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    text, html = parts(received.message)
    assert "Your account is ready." in text and "Your account is ready." in html_text(html)
    assert "verify-email" not in text and "verify-email" not in html
    account_link = f"{PUBLIC_BASE_URL}/account"
    assert account_link in text_links(text) and account_link in html_links(html)
    assert "Go to my account" in html_text(html)
    assert_links_only_from_public_base(all_links(received.message))
    assert (await notifications.email()).business_id == event.business_id


ACCOUNT_EMAILS = [
    pytest.param(
        events.verification_requested,
        "verify_email",
        "Confirm your email address for Clientele",
        "/verify-email?token=",
        "48 hours",
        id="verify_email",
    ),
    pytest.param(
        events.magic_link_requested,
        "magic_link",
        "Your link to log in to Clientele",
        "/login/magic/confirm?token=",
        "15 minutes",
        id="magic_link",
    ),
    pytest.param(
        events.password_reset_requested,
        "password_reset",
        "Reset your Clientele password",
        "/password/reset?token=",
        "60 minutes",
        id="password_reset",
    ),
]


@pytest.mark.parametrize(("make_event", "template", "subject", "path", "expiry"), ACCOUNT_EMAILS)
async def test_account_email_carries_its_single_use_link(
    notifications: Notifications,
    make_event: Callable[..., Event],
    template: str,
    subject: str,
    path: str,
    expiry: str,
) -> None:
    event: Any = make_event(token=events.ODD_TOKEN, email="Robin@Example.com")
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["robin@example.com"]
    assert message["To"] == "robin@example.com"
    assert message["From"] == MAIL_FROM
    assert message["Subject"] == subject
    assert (
        message["Message-ID"] == f"<{email_id(event.id, template, 'robin@example.com')}@clientele>"
    )
    text, html = parts(message)
    # The token is url-encoded: it cannot add or change query parameters.
    link = f"{PUBLIC_BASE_URL}{path}{events.ODD_TOKEN_ENCODED}"
    assert link in text_links(text)
    assert link in html_links(html)
    assert f"expires in {expiry}" in text and f"expires in {expiry}" in html_text(html)
    assert "Hi Casey Coach" in text
    assert_links_only_from_public_base(all_links(message))
    # The server has the message; the sender records that just after.
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.template, row.status, row.business_id) == (template, "sent", None)


async def test_magic_link_email_says_it_works_once_and_can_be_ignored(
    notifications: Notifications,
) -> None:
    await notifications.publish(events.magic_link_requested(next_path="/offerings?tab=all"))
    [received] = await notifications.wait_for_delivery()
    text, html = parts(received.message)
    for body in (text, html_text(html)):
        assert "works only once" in body
        assert "If you did not ask for this link, you can safely ignore this email" in body
    [link] = [u for u in text_links(text) if "/login/magic/confirm" in u]
    assert link.endswith("&next=%2Fofferings%3Ftab%3Dall")


@pytest.mark.parametrize(
    ("next_path", "query_end"),
    [
        (None, "token=abc"),
        ("/account", "token=abc&next=%2Faccount"),
        ("/offerings/1?tab=all&x=y", "token=abc&next=%2Fofferings%2F1%3Ftab%3Dall%26x%3Dy"),
        # Links in our email never lead off the site, whatever the event says.
        ("//evil.test/phish", "token=abc"),
        ("https://evil.test", "token=abc"),
        ("/%2F%2Fevil.test", "token=abc"),
    ],
)
async def test_magic_link_keeps_only_a_local_next_path(
    make_notifications: Callable[..., Awaitable[Notifications]],
    next_path: str | None,
    query_end: str,
) -> None:
    harness = await make_notifications(SmtpServer(free_port()))
    event = events.magic_link_requested(token="abc", next_path=next_path)
    async with harness.sessionmaker() as session, session.begin():
        await EmailService(session, harness.settings, EmailRenderer()).magic_link(event)
    row = await harness.email()
    expected = f"{PUBLIC_BASE_URL}/login/magic/confirm?{query_end}"
    assert text_links(row.text_body) == [expected]
    assert expected in html_links(row.html_body)


async def test_the_same_event_delivered_three_times_sends_one_email(
    notifications: Notifications,
) -> None:
    event = events.password_reset_requested()
    for _ in range(3):
        await notifications.publish(event)
    async with no_more_deliveries(notifications.smtp):
        await notifications.wait_for_delivery()
    assert len(notifications.smtp.received) == 1
    assert len(await notifications.emails()) == 1


async def test_queueing_the_same_email_again_finds_the_first_row(
    make_notifications: Callable[..., Awaitable[Notifications]],
) -> None:
    # Below the inbox: even a re-run the inbox did not catch (e.g. after its purge) is one row.
    harness = await make_notifications(SmtpServer(free_port()))
    event = events.verification_requested()
    context = {"name": "Casey", "verify_url": f"{PUBLIC_BASE_URL}/x", "expires_in": "1 hour"}
    assert await harness.queue(event, "verify_email", "casey@example.com", **context) is True
    assert await harness.queue(event, "verify_email", "CASEY@example.com", **context) is False
    assert await harness.queue(event, "verify_email", "other@example.com", **context) is True
    rows = await harness.emails()
    assert sorted((r.recipient, r.id) for r in rows) == sorted(
        (address, email_id(event.id, "verify_email", address))
        for address in ("casey@example.com", "other@example.com")
    )
    async with harness.sessionmaker() as session:
        ids = set((await session.execute(select(KnownBusiness.business_id))).scalars())
    assert ids == set()


async def test_business_created_twice_is_remembered_once(notifications: Notifications) -> None:
    business = events.business_created(business_name="First Name")
    await notifications.publish(business)
    await wait_for_business(notifications, business.business_id)  # type: ignore[arg-type]
    # A second creation event for the same business (another id) must not overwrite it.
    again = events.business_created(business_id=business.business_id)
    await notifications.publish(again)

    async def handled() -> bool:
        async with notifications.sessionmaker() as session:
            query = select(inbox.c.event_id).where(inbox.c.event_id == again.id)
            return (await session.execute(query)).first() is not None

    await wait_until(handled, what="second event handled")
    async with notifications.sessionmaker() as session:
        rows = list((await session.execute(select(KnownBusiness))).scalars())
    assert [(r.business_id, r.name, r.slug) for r in rows] == [
        (business.business_id, "First Name", "casey-coaching")
    ]
