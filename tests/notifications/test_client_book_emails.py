"""Transactional emails of the client book: invitations, and "you were added as a client"."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from notifications.emails.service import email_id
from tests.notifications import events
from tests.notifications.conftest import PUBLIC_BASE_URL, Notifications, no_more_deliveries
from tests.notifications.mail import all_links, html_links, html_text, parts, text_links
from tests.notifications.test_emails import assert_links_only_from_public_base
from tests.notifications.test_headers import EXPECTED_HEADERS


async def test_invitation_email_links_to_accept_with_the_encoded_token(
    notifications: Notifications,
) -> None:
    business_id = uuid.uuid4()
    event = events.invitation_sent(
        business_id=business_id,
        email="  Jamie@Example.COM ",
        token=events.ODD_TOKEN,
        inviter_name="Casey Coach",
        business_name="Casey Coaching",
    )
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["jamie@example.com"]
    assert message["Subject"] == "Casey Coach invited you to Casey Coaching on Clientele"
    assert message["Message-ID"] == (
        f"<{email_id(event.id, 'invitation', 'jamie@example.com')}@clientele>"
    )
    # Transactional: no list headers, nothing but what every email carries.
    assert {name.lower() for name in message} == EXPECTED_HEADERS

    text, html = parts(message)
    link = f"{PUBLIC_BASE_URL}/invitations/accept?token={events.ODD_TOKEN_ENCODED}"
    assert link in text_links(text) and link in html_links(html)
    for body in (text, html_text(html)):
        assert "Casey Coach invited you to join Casey Coaching as a client" in body
        assert "The invitation expires in 7 days." in body
        assert "Accepting creates your Clientele account" in body
        assert "the account you already have with this email address" in body
    assert "Accept the invitation" in html_text(html)
    assert_links_only_from_public_base(all_links(message))

    # The server has the message; the sender records that just after.
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.template, row.status, row.business_id) == ("invitation", "sent", business_id)
    assert row.event_id == event.id


async def test_a_resend_is_a_new_email_and_a_redelivery_is_not(
    notifications: Notifications,
) -> None:
    first = events.invitation_sent()
    resend = events.invitation_sent(
        business_id=first.business_id, invitation_id=first.invitation_id, resend=True
    )
    async with no_more_deliveries(notifications.smtp):
        for event in (first, first, resend, resend):
            await notifications.publish(event)
        delivered = await notifications.wait_for_delivery(2)
    assert len(delivered) == 2
    tokens = {
        link.rsplit("token=", 1)[1]
        for received in delivered
        for link in text_links(parts(received.message)[0])
        if "/invitations/accept" in link
    }
    assert tokens == {first.token, resend.token}
    assert {row.event_id for row in await notifications.emails()} == {first.id, resend.id}


async def test_a_short_invitation_says_its_expiry_in_hours(
    notifications: Notifications,
) -> None:
    now = events.at(0)
    event = events.invitation_sent(occurred_at=now, expires_at=now + timedelta(hours=12))
    await notifications.publish(event)
    [received] = await notifications.wait_for_delivery()
    assert "expires in 12 hours" in parts(received.message)[0]


async def test_client_added_with_notify_sends_a_welcome_to_the_client_home(
    notifications: Notifications,
) -> None:
    business_id = uuid.uuid4()
    event = events.client_added(
        business_id,
        email="Robin@Example.com",
        display_name="Robin Client",
        business_name="Casey Coaching",
        notify=True,
    )
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["robin@example.com"]
    assert message["Subject"] == "Casey Coaching added you as a client"
    assert {name.lower() for name in message} == EXPECTED_HEADERS
    text, html = parts(message)
    home = f"{PUBLIC_BASE_URL}/home"
    assert home in text_links(text) and home in html_links(html)
    assert "Hi Robin Client," in text and "Hi Robin Client," in html_text(html)
    assert "Casey Coaching added you to their clients on Clientele" in html_text(html)
    assert "Go to my client home" in html_text(html)
    assert_links_only_from_public_base(all_links(message))
    # The server has the message; the sender records that just after.
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.template, row.status, row.business_id) == ("client_added", "sent", business_id)


async def test_client_added_without_notify_sends_nothing(notifications: Notifications) -> None:
    quiet = events.client_added(uuid.uuid4(), notify=False)
    await notifications.publish_all(quiet)
    await asyncio.sleep(0.3)
    assert await notifications.emails() == []
    assert notifications.smtp.received == []
