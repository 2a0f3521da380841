"""The "refund issued" email: once per refund, whatever is delivered again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kit.contracts.payments import OrderRefundedV1
from notifications.emails.service import email_id
from tests.notifications.conftest import PUBLIC_BASE_URL, Notifications, no_more_deliveries
from tests.notifications.mail import all_links, html_links, html_text, parts, text_links
from tests.notifications.test_emails import assert_links_only_from_public_base

REFUNDED_AT = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def order_refunded(**overrides: Any) -> OrderRefundedV1:
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "refund_id": uuid.uuid4(),
        "amount_minor": 4000,
        "currency": "USD",
        "refunded_total_minor": 4000,
        "full": False,
        "revoke_access": False,
        "buyer_email": "Jamie.Buyer@Example.com",
        "buyer_account_id": None,
        "buyer_name": "Jamie Buyer",
        "offering_name": "Spring Reset Course",
        "kind": "course",
        "business_name": "Casey Coaching",
        "refunded_at": REFUNDED_AT,
        **overrides,
    }
    return OrderRefundedV1(**values)


async def test_a_refund_email_names_the_amount_the_business_and_the_order(
    notifications: Notifications,
) -> None:
    event = order_refunded()
    await notifications.publish(event)
    [received] = await notifications.wait_for_delivery()
    message = received.message
    assert received.rcpt_tos == ["jamie.buyer@example.com"]
    assert message["Subject"] == "Your refund from Casey Coaching: $40.00"
    expected_id = email_id(event.refund_id, "refund", "jamie.buyer@example.com")
    assert message["Message-ID"] == f"<{expected_id}@clientele>"
    text, html = parts(message)
    for body in (text, html_text(html)):
        assert "Hi Jamie Buyer" in body
        assert "Casey Coaching refunded $40.00" in body
        assert "Spring Reset Course" in body
        assert "$40.00" in body
        assert "March 4, 2026" in body
        assert str(event.order_id) in body
        assert "has ended" not in body and "refunded in full" not in body
    assert "Refunded in all: $40.00" in text
    home = f"{PUBLIC_BASE_URL}/home"
    assert home in text_links(text) and home in html_links(html)
    assert_links_only_from_public_base(all_links(message))
    await notifications.wait_for_status("sent")
    row = await notifications.email()
    assert (row.template, row.business_id) == ("refund", event.business_id)


async def test_one_email_per_refund_and_a_full_refund_that_revokes_says_so(
    notifications: Notifications,
) -> None:
    first = order_refunded()
    again = first.model_copy(update={"id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})
    rest = order_refunded(
        order_id=first.order_id,
        amount_minor=1050,
        currency="EUR",
        refunded_total_minor=5050,
        full=True,
        revoke_access=True,
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(first, first, again, rest)
        await notifications.wait_for_delivery(2)
    rows = await notifications.emails()
    assert sorted(r.template for r in rows) == ["refund", "refund"]
    assert len(notifications.smtp.received) == 2
    full = next(r.message for r in notifications.smtp.received if "€10.50" in r.message["Subject"])
    text, _html = parts(full)
    assert "This order is now refunded in full." in text
    assert "Your access to Spring Reset Course has ended with this refund." in text
