"""Emails a purchase calls for: the receipt (once per order) and the claim-your-account link."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kit.contracts.clients import AccountRegisteredV1
from kit.contracts.payments import OrderPaidV1
from notifications.emails.service import email_id
from tests.notifications import events
from tests.notifications.conftest import PUBLIC_BASE_URL, Notifications, no_more_deliveries
from tests.notifications.mail import all_links, html_links, html_text, parts, text_links
from tests.notifications.test_emails import assert_links_only_from_public_base, wait_for_business

PAID_AT = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)


def order_paid(**overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "offering_id": uuid.uuid4(),
        "offering_version_id": uuid.uuid4(),
        "offering_name": "Spring Reset Course",
        "kind": "course",
        "details": {},
        "billing": {"type": "one_time"},
        "buyer_account_id": None,
        "buyer_email": "Jamie.Buyer@Example.com",
        "buyer_name": "Jamie Buyer",
        "amount_minor": 12000,
        "currency": "USD",
        "discount_code": "SPRING",
        "discount_minor": 3000,
        "paid_at": PAID_AT,
        "business_name": "Casey Coaching",
        **overrides,
    }
    return OrderPaidV1(**values)


def claim_registered(**overrides: Any) -> AccountRegisteredV1:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "occurred_at": now,
        "verification_token": None,
        "verification_expires_at": None,
        "origin": "purchase",
        "email": "jamie.buyer@example.com",
        "display_name": "Jamie Buyer",
        "business_name": "Casey Coaching",
        "claim_token": events.ODD_TOKEN,
        "claim_expires_at": now + timedelta(days=7) - timedelta(milliseconds=3),
        **overrides,
    }
    return events.account_registered(**values)


async def test_receipt_names_business_offering_amounts_discount_billing_and_date(
    notifications: Notifications,
) -> None:
    event = order_paid()
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["jamie.buyer@example.com"]
    assert message["Subject"] == "Your receipt from Casey Coaching: Spring Reset Course"
    expected_id = email_id(event.order_id, "receipt", "jamie.buyer@example.com")
    assert message["Message-ID"] == f"<{expected_id}@clientele>"

    text, html = parts(message)
    shown = html_text(html)
    for body in (text, shown):
        assert "Hi Jamie Buyer" in body
        assert "Casey Coaching" in body and "Spring Reset Course" in body
        assert "$150.00" in body, "the price before the discount"
        assert "-$30.00" in body and "SPRING" in body
        assert "Total paid: $120.00" in text or "Total paid $120.00" in shown
        assert "One-time payment" in body
        assert "March 1, 2026" in body
        assert str(event.order_id) in body
    home = f"{PUBLIC_BASE_URL}/home"
    assert home in text_links(text) and home in html_links(html)
    assert_links_only_from_public_base(all_links(message))
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.template, row.business_id, row.event_id) == ("receipt", event.business_id, event.id)


async def test_one_receipt_per_order_whatever_is_delivered_again(
    notifications: Notifications,
) -> None:
    event = order_paid()
    # The same event twice, and a second event for the same order (a republished grant).
    again = event.model_copy(update={"id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(event, event, again)
        await notifications.wait_for_delivery()
    rows = await notifications.emails()
    assert [(r.template, r.event_id) for r in rows] == [("receipt", event.id)]
    assert len(notifications.smtp.received) == 1


async def test_receipt_takes_the_business_name_from_the_read_model_and_writes_other_currencies(
    notifications: Notifications,
) -> None:
    business = events.business_created(business_name="Tokyo Studio", slug="tokyo-studio")
    await notifications.publish(business)
    await wait_for_business(notifications, business.business_id)  # type: ignore[arg-type]
    yen = order_paid(
        business_id=business.business_id,
        business_name=None,
        amount_minor=5000,
        currency="JPY",
        discount_code=None,
        discount_minor=0,
    )
    free = order_paid(
        business_id=business.business_id,
        business_name=None,
        buyer_email="free@example.com",
        offering_name="Intro call",
        amount_minor=0,
        discount_code=None,
        discount_minor=0,
        billing={"type": "free"},
    )
    await notifications.publish_all(yen, free)
    received = await notifications.wait_for_delivery(2)
    by_rcpt = {r.rcpt_tos[0]: r.message for r in received}

    yen_text, _ = parts(by_rcpt["jamie.buyer@example.com"])
    assert by_rcpt["jamie.buyer@example.com"]["Subject"].startswith(
        "Your receipt from Tokyo Studio"
    )
    assert "Total paid: ¥5,000" in yen_text and "Discount" not in yen_text
    free_text, free_html = parts(by_rcpt["free@example.com"])
    assert "Total paid: Free" in free_text and "Billing: Free" in free_text
    assert "Tokyo Studio" in html_text(free_html)


async def test_an_account_made_by_a_purchase_gets_the_claim_link_and_no_welcome(
    notifications: Notifications,
) -> None:
    event = claim_registered()
    await notifications.publish(event)

    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["jamie.buyer@example.com"]
    assert message["Subject"] == "Set a password for your Clientele account"
    text, html = parts(message)
    link = f"{PUBLIC_BASE_URL}/claim?token={events.ODD_TOKEN_ENCODED}"
    assert link in text_links(text) and link in html_links(html)
    assert "Casey Coaching" in text and "Casey Coaching" in html_text(html)
    assert "expires in 7 days" in text and "expires in 7 days" in html_text(html)
    assert_links_only_from_public_base(all_links(message))
    await notifications.wait_for_status("sent")
    [row] = await notifications.emails()
    assert row.template == "claim_account"


async def test_claim_email_uses_public_base_url_and_invitations_get_nothing(
    notifications: Notifications,
) -> None:
    invited = events.account_registered(
        origin="invitation", verification_token=None, verification_expires_at=None
    )
    async with no_more_deliveries(notifications.smtp):
        await notifications.publish_all(invited)
    purchase = claim_registered(claim_token="claim-abc", email="other@example.com")
    await notifications.publish_all(purchase, purchase)
    [received] = await notifications.wait_for_delivery()
    assert received.rcpt_tos == ["other@example.com"]
    text, _ = parts(received.message)
    assert f"{PUBLIC_BASE_URL}/claim?token=claim-abc" in text_links(text)
    assert [r.template for r in await notifications.emails()] == ["claim_account"]
