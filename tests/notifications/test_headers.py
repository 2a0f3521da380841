"""Nothing a user typed can become a header or a recipient."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest

from notifications.emails.headers import InvalidHeaders, decode_headers, encode_headers
from notifications.emails.repository import ClaimedEmail
from notifications.emails.sender import InvalidRecipient, build_message
from notifications.models import Email
from tests.notifications import events
from tests.notifications.conftest import (
    Notifications,
    SmtpServer,
    free_port,
    notifications_settings,
)
from tests.notifications.mail import html_text, parts
from tests.notifications.test_emails import wait_for_business

# What a message of ours may carry, and nothing else.
EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "mime-version",
    "content-type",
}


async def test_line_breaks_in_names_never_become_headers(notifications: Notifications) -> None:
    business = events.business_created(business_name="Evil Biz\r\nX-Injected: yes")
    await notifications.publish(business)
    await wait_for_business(notifications, business.business_id)  # type: ignore[arg-type]
    await notifications.publish(
        events.account_registered(
            business_id=business.business_id,
            display_name="Eve\r\nBcc: spy@evil.test\r\n\r\n<b>body</b>\u2028X-Other: 1",
        )
    )

    [received] = await notifications.wait_for_delivery()
    assert received.rcpt_tos == ["casey@example.com"], "no recipient was added"
    message = received.message
    assert {name.lower() for name in message} == EXPECTED_HEADERS
    assert message.get_all("Bcc") is None and message.get_all("X-Injected") is None
    subject = message["Subject"]
    assert subject == "Welcome to Clientele, Eve Bcc: spy@evil.test <b>body</b> X-Other: 1"
    # The raw header block has exactly one line per header (no continuation smuggled in).
    head = received.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(
        line.lower().startswith(("bcc:", "x-injected:", "x-other:")) for line in head.splitlines()
    )
    text, html = parts(message)
    assert "Evil Biz X-Injected: yes" in text
    assert "&lt;b&gt;body&lt;/b&gt;" in html and "<b>body</b>" not in html
    assert "Eve Bcc: spy@evil.test <b>body</b> X-Other: 1" in html_text(html)


async def test_an_address_with_a_line_break_is_never_sent(notifications: Notifications) -> None:
    event = events.magic_link_requested(email="casey@example.com\r\nBcc: spy@evil.test")
    await notifications.publish(event)

    await notifications.wait_for_status("failed")
    await asyncio.sleep(0.3)
    row = await notifications.email()
    assert row.last_error is not None and row.last_error.startswith("invalid recipient address")
    assert "\n" not in row.recipient and "\r" not in row.recipient
    assert notifications.smtp.handler.rcpt_attempts == 0


async def test_the_sender_checks_the_address_again(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    # A row that reached the table some other way (a bug, a manual insert) is still refused.
    harness = await make_notifications(smtp_server)
    await harness.start_worker()
    async with harness.sessionmaker() as session, session.begin():
        session.add(
            Email(
                id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                event_name="clients.magic_link_requested.v1",
                template="magic_link",
                recipient="casey@example.com\r\nBcc: spy@evil.test",
                subject="Hello",
                text_body="text",
                html_body="<p>html</p>",
            )
        )
    await harness.wait_for_status("failed")
    row = await harness.email()
    assert row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("invalid recipient address")
    assert smtp_server.handler.rcpt_attempts == 0


@pytest.mark.parametrize(
    "recipient",
    ["casey@example.com\nBcc: spy@evil.test", "not-an-address", "a@b@example.com", ""],
)
def test_build_message_refuses_a_bad_recipient(recipient: str) -> None:
    settings = notifications_settings("sqlite+aiosqlite:///:memory:", "amqp://x", "", free_port())
    claimed = ClaimedEmail(
        id=uuid.uuid4(),
        template="magic_link",
        recipient=recipient,
        subject="Hi",
        text_body="t",
        html_body="h",
        attempts=1,
        lease=None,  # type: ignore[arg-type]
    )
    with pytest.raises(InvalidRecipient):
        build_message(claimed, settings)


def test_build_message_flattens_a_subject_with_line_breaks() -> None:
    settings = notifications_settings("sqlite+aiosqlite:///:memory:", "amqp://x", "", free_port())
    claimed = ClaimedEmail(
        id=uuid.uuid4(),
        template="welcome",
        recipient="casey@example.com",
        subject="Hi\r\nBcc: spy@evil.test",
        text_body="t",
        html_body="h",
        attempts=1,
        lease=None,  # type: ignore[arg-type]
    )
    message, envelope_recipient = build_message(claimed, settings)
    assert envelope_recipient == "casey@example.com"
    assert message["Subject"] == "Hi Bcc: spy@evil.test"
    assert message.get_all("Bcc") is None
    assert f"<{claimed.id}@clientele>" == message["Message-ID"]


@pytest.mark.parametrize(
    "headers",
    [
        {"List-Unsubscribe": "<https://app.example.test/u>\r\nBcc: spy@evil.test"},
        {"List-Unsubscribe": "<https://app.example.test/u>\nX: y"},
        {"List-Unsubscribe": "<https://app.example.test/u>\u2028X: y"},
        {"List-Unsubscribe": "<https://app.example.test/ü>"},
        {"List-Unsubscribe": ""},
        {"List-Unsubscribe": "<https://app.example.test/" + "u" * 900 + ">"},
        {"Bcc": "spy@evil.test"},
        {"From": "Someone Else <ceo@example.com>"},
    ],
)
def test_extra_headers_are_allowed_names_with_one_line_values(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidHeaders):
        encode_headers(headers)
    with pytest.raises(InvalidHeaders):
        decode_headers(json.dumps(headers))


async def test_the_sender_refuses_bad_stored_headers(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    # Headers that reached the table without encode_headers are checked again, and the
    # email fails for good rather than carrying them.
    harness = await make_notifications(smtp_server)
    await harness.start_worker()
    async with harness.sessionmaker() as session, session.begin():
        session.add(
            Email(
                id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                event_name="notifications.campaign_sent",
                template="campaign",
                recipient="casey@example.com",
                subject="Hello",
                text_body="text",
                html_body="<p>html</p>",
                extra_headers=json.dumps({"List-Unsubscribe": "<x>\r\nBcc: spy@evil.test"}),
            )
        )
    await harness.wait_for_status("failed")
    row = await harness.email()
    assert row.attempts == 1
    assert row.last_error == "header List-Unsubscribe must be one line of printable ASCII"
    assert smtp_server.handler.rcpt_attempts == 0
