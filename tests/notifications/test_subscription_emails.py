"""Emails of subscriptions and payment plans: the first receipt says what comes next, a
renewal receipt per invoice, a failed-payment email per attempt, the end per subscription
(to the buyer and to the coach). Each once, however often its event comes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kit.contracts.payments import (
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from notifications.emails.service import email_id, invoice_key
from tests.notifications import events
from tests.notifications.conftest import PUBLIC_BASE_URL, Notifications, no_more_deliveries
from tests.notifications.mail import all_links, html_links, html_text, parts, text_links
from tests.notifications.test_emails import assert_links_only_from_public_base, wait_for_business
from tests.notifications.test_purchase_emails import order_paid

BUYER = "jamie.buyer@example.com"
COACH = "casey@example.com"
MONTHLY = {"type": "recurring", "interval": "month", "interval_count": 1}
PLAN = {"type": "payment_plan", "installments": 3, "interval": "month", "interval_count": 1}
EVIL_NAME = '<b onmouseover="x()">Yoga & Co</b>'


def renewed(**overrides: Any) -> SubscriptionRenewedV1:
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "subscription_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "invoice_id": f"in_{uuid.uuid4().hex[:16]}",
        "offering_id": uuid.uuid4(),
        "offering_version_id": uuid.uuid4(),
        "offering_name": "Monthly Membership",
        "kind": "membership",
        "billing": MONTHLY,
        "buyer_email": "Jamie.Buyer@Example.com",
        "buyer_name": "Jamie Buyer",
        "amount_minor": 5000,
        "currency": "EUR",
        "period_start": datetime(2026, 4, 1, 10, 0, tzinfo=UTC),
        "period_end": datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
        "next_charge_at": datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
        "installment": 2,
        "paid_at": datetime(2026, 4, 1, 10, 5, tzinfo=UTC),
        "business_name": "Casey Coaching",
        **overrides,
    }
    return SubscriptionRenewedV1(**values)


def payment_failed(**overrides: Any) -> SubscriptionPaymentFailedV1:
    subscription_id = overrides.pop("subscription_id", uuid.uuid4())
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "subscription_id": subscription_id,
        "order_id": uuid.uuid4(),
        "invoice_id": f"in_{uuid.uuid4().hex[:16]}",
        "attempt": 1,
        "offering_name": "Monthly Membership",
        "kind": "membership",
        "buyer_email": "Jamie.Buyer@Example.com",
        "buyer_name": "Jamie Buyer",
        "amount_minor": 5000,
        "currency": "EUR",
        "failure_message": "Your card was declined.",
        "next_attempt_at": datetime(2026, 4, 4, 10, 0, tzinfo=UTC),
        "update_card_path": (
            f"/billing/subscriptions/{subscription_id}/card?token=tok-{uuid.uuid4().hex}"
        ),
        "failed_at": datetime(2026, 4, 1, 10, 5, tzinfo=UTC),
        "business_name": "Casey Coaching",
        **overrides,
    }
    return SubscriptionPaymentFailedV1(**values)


def ended(**overrides: Any) -> SubscriptionEndedV1:
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "subscription_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "offering_id": uuid.uuid4(),
        "offering_name": "Monthly Membership",
        "kind": "membership",
        "billing": MONTHLY,
        "buyer_email": "Jamie.Buyer@Example.com",
        "buyer_name": "Jamie Buyer",
        "reason": "canceled",
        "revoke_access": True,
        "installments_paid": 4,
        "ended_at": datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
        "business_name": "Casey Coaching",
        **overrides,
    }
    return SubscriptionEndedV1(**values)


def again(event: Any) -> Any:
    """The same fact in another event (a republished one: new id, same natural key)."""
    return event.model_copy(update={"id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})


async def known_business(notifications: Notifications) -> uuid.UUID:
    business = events.business_created(owner_email="Casey@Example.com")
    await notifications.publish(business)
    await wait_for_business(notifications, business.business_id)  # type: ignore[arg-type]
    assert business.business_id is not None
    return business.business_id


def bodies(message: Any) -> tuple[str, str, str]:
    text, html = parts(message)
    return text, html, html_text(html)


# -- the first receipt ---------------------------------------------------------------------


async def test_the_first_receipt_of_a_subscription_says_the_billing_and_the_next_charge(
    notifications: Notifications,
) -> None:
    subscription = order_paid(
        billing=MONTHLY,
        amount_minor=5000,
        currency="EUR",
        discount_code=None,
        discount_minor=0,
        offering_name=EVIL_NAME,
        subscription_id=uuid.uuid4(),
        next_charge_at=datetime(2026, 4, 1, 15, 30, tzinfo=UTC),
    )
    plan = order_paid(
        buyer_email="plan@example.com",
        billing=PLAN,
        amount_minor=10000,
        currency="EUR",
        discount_code=None,
        discount_minor=0,
        subscription_id=uuid.uuid4(),
        next_charge_at=datetime(2026, 4, 1, 15, 30, tzinfo=UTC),
        installments_total=3,
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(subscription, plan, again(subscription), again(plan))
        received = await notifications.wait_for_delivery(2)
    by_rcpt = {r.rcpt_tos[0]: r.message for r in received}

    message = by_rcpt[BUYER]
    expected_id = email_id(subscription.order_id, "receipt", BUYER)
    assert message["Message-ID"] == f"<{expected_id}@clientele>"
    text, html, shown = bodies(message)
    for body in (text, shown):
        assert "€50.00 every month" in body
        assert "Next charge: April 1, 2026" in body
        assert "March 1, 2026" in body
        assert EVIL_NAME in body  # shown as written...
    assert "<b onmouseover" not in html  # ...never as markup
    assert "&lt;b onmouseover=&#34;x()&#34;&gt;Yoga &amp; Co&lt;/b&gt;" in html
    assert "\n" not in message["Subject"]

    text, _html, shown = bodies(by_rcpt["plan@example.com"])
    for body in (text, shown):
        assert "Installment 1 of 3, then €100.00 every month" in body
        assert "Next charge: April 1, 2026" in body
        assert "Total paid" in body and "€100.00" in body


async def test_a_one_time_receipt_has_no_next_charge(notifications: Notifications) -> None:
    await notifications.publish_all(order_paid())
    [received] = await notifications.wait_for_delivery()
    text, _html, shown = bodies(received.message)
    for body in (text, shown):
        assert "One-time payment" in body and "Next charge" not in body


# -- renewals --------------------------------------------------------------------------------


async def test_a_renewal_receipt_says_what_was_paid_the_period_and_the_next_charge_once(
    notifications: Notifications,
) -> None:
    event = renewed(offering_name=EVIL_NAME, buyer_name="Jamie <Buyer>")
    next_invoice = renewed(
        subscription_id=event.subscription_id,
        order_id=event.order_id,
        business_id=event.business_id,
        installment=3,
        period_start=datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
        period_end=datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
        next_charge_at=datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
        paid_at=datetime(2026, 5, 1, 10, 5, tzinfo=UTC),
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(event, event, again(event))
        [received] = await notifications.wait_for_delivery()
        await notifications.publish_all(again(next_invoice), next_invoice)
        await notifications.wait_for_delivery(2)
    assert len(notifications.smtp.received) == 2

    message = received.message
    assert received.rcpt_tos == [BUYER]
    # (stripped: Python folds a long subject with a quoted string right after "Subject:")
    assert message["Subject"].strip() == f"Your renewal receipt from Casey Coaching: {EVIL_NAME}"
    expected_id = email_id(invoice_key(event.invoice_id), "subscription_renewed", BUYER)
    assert message["Message-ID"] == f"<{expected_id}@clientele>"
    text, html, shown = bodies(message)
    for body in (text, shown):
        assert "Hi Jamie <Buyer>" in body
        assert "has been renewed" in body
        assert "€50.00" in body
        assert "Period: April 1, 2026 to May 1, 2026" in body
        assert "Next charge: May 1, 2026" in body
        assert str(event.order_id) in body
        assert "Installment" not in body
    assert "<Buyer>" not in html and "Jamie &lt;Buyer&gt;" in html
    assert "<b onmouseover" not in html
    assert f"{PUBLIC_BASE_URL}/home" in text_links(text)
    assert_links_only_from_public_base(all_links(message))

    second = notifications.smtp.received[1].message
    assert "Next charge: June 1, 2026" in parts(second)[0]
    rows = await notifications.emails()
    assert sorted(r.template for r in rows) == ["subscription_renewed"] * 2
    assert {r.business_id for r in rows} == {event.business_id}


async def test_an_installment_receipt_and_the_last_one_of_a_plan(
    notifications: Notifications,
) -> None:
    second = renewed(
        billing=PLAN,
        offering_name="Spring Plan",
        amount_minor=10000,
        installment=2,
        installments_total=3,
        buyer_email="second@example.com",
    )
    last = renewed(
        billing=PLAN,
        offering_name="Spring Plan",
        amount_minor=10000,
        installment=3,
        installments_total=3,
        completed=True,
        next_charge_at=None,
        buyer_email="last@example.com",
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(second, last, again(last))
        received = await notifications.wait_for_delivery(2)
    by_rcpt = {r.rcpt_tos[0]: r.message for r in received}

    message = by_rcpt["second@example.com"]
    assert message["Subject"] == "Your receipt from Casey Coaching: Spring Plan, installment 2 of 3"
    text, _html, shown = bodies(message)
    for body in (text, shown):
        assert "Installment 2 of 3" in body and "€100.00" in body
        assert "Next charge: May 1, 2026" in body
        assert "last installment" not in body

    message = by_rcpt["last@example.com"]
    assert message["Subject"] == "Your receipt from Casey Coaching: Spring Plan, installment 3 of 3"
    text, _html, shown = bodies(message)
    for body in (text, shown):
        assert "Installment 3 of 3" in body
        assert "This was the last installment — nothing more will be charged" in body
        assert "Next charge" not in body


# -- failed payments ------------------------------------------------------------------------


async def test_a_failed_payment_email_links_to_update_the_card_once_per_attempt(
    notifications: Notifications,
) -> None:
    first = payment_failed(failure_message='Declined <script>alert("x")</script>')
    retried = payment_failed(
        subscription_id=first.subscription_id,
        business_id=first.business_id,
        order_id=first.order_id,
        invoice_id=first.invoice_id,
        update_card_path=first.update_card_path,
        attempt=2,
        failure_message=None,
        next_attempt_at=None,
        failed_at=datetime(2026, 4, 4, 10, 5, tzinfo=UTC),
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(first, again(first), first)
        [received] = await notifications.wait_for_delivery()
        await notifications.publish_all(retried, again(retried))
        await notifications.wait_for_delivery(2)
    assert len(notifications.smtp.received) == 2

    message = received.message
    assert received.rcpt_tos == [BUYER]
    assert message["Subject"] == (
        "Action needed: your payment of €50.00 for Monthly Membership did not go through"
    )
    expected_id = email_id(invoice_key(first.invoice_id, 1), "subscription_payment_failed", BUYER)
    assert message["Message-ID"] == f"<{expected_id}@clientele>"
    text, html, shown = bodies(message)
    link = f"{PUBLIC_BASE_URL}{first.update_card_path}"
    assert link in text_links(text) and link in html_links(html)
    assert_links_only_from_public_base(all_links(message))
    for body in (text, shown):
        assert "could not charge €50.00 for Monthly Membership from Casey Coaching" in body
        assert 'Declined <script>alert("x")</script>' in body
        assert "We will try the charge again on April 4, 2026" in body
    assert "<script>" not in html and "&lt;script&gt;" in html

    text, _html, _shown = bodies(notifications.smtp.received[1].message)
    assert link in text_links(text)
    assert "said:" not in text and "try the charge again" not in text
    assert "your subscription will end" in text


@pytest.mark.parametrize(
    "path", ["//evil.test/card", "https://evil.test/card", "/\\evil.test", "/%2F%2Fevil.test"]
)
async def test_a_failed_payment_never_links_off_the_site(
    notifications: Notifications, path: str
) -> None:
    await notifications.publish_all(payment_failed(update_card_path=path))
    [received] = await notifications.wait_for_delivery()
    links = all_links(received.message)
    assert f"{PUBLIC_BASE_URL}/home" in links
    assert not any("evil" in link for link in links)
    assert_links_only_from_public_base(links)


# -- the end of a subscription ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "buyer_says", "coach_says"),
    [
        (
            "canceled",
            "ended on June 1, 2026, as you asked",
            "ended on June 1, 2026: it was canceled",
        ),
        (
            "payment_failed",
            "ended on June 1, 2026 because the payment could not be collected; access has ended",
            "ended on June 1, 2026 because the payment could not be collected",
        ),
    ],
)
async def test_an_ended_subscription_tells_the_buyer_and_the_coach_once(
    notifications: Notifications, reason: str, buyer_says: str, coach_says: str
) -> None:
    business_id = await known_business(notifications)
    event = ended(business_id=business_id, business_name=None, reason=reason)
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(event, again(event), event)
        received = await notifications.wait_for_delivery(2)
    assert len(received) == 2
    by_rcpt = {r.rcpt_tos[0]: r.message for r in received}
    assert set(by_rcpt) == {BUYER, COACH}

    buyer = by_rcpt[BUYER]
    assert (
        buyer["Subject"] == "Your subscription to Monthly Membership from Casey Coaching has ended"
    )
    expected_id = email_id(event.subscription_id, "subscription_ended", BUYER)
    assert buyer["Message-ID"] == f"<{expected_id}@clientele>"
    text, _html, shown = bodies(buyer)
    for body in (text, shown):
        assert "Hi Jamie Buyer" in body
        assert buyer_says in body
        assert "Nothing more will be charged" in body
        assert "you keep" not in body
    assert_links_only_from_public_base(all_links(buyer))

    coach = by_rcpt[COACH]
    assert coach["Subject"] == "Jamie Buyer's subscription to Monthly Membership has ended"
    expected_id = email_id(event.subscription_id, "subscription_ended_coach", COACH)
    assert coach["Message-ID"] == f"<{expected_id}@clientele>"
    text, html, shown = bodies(coach)
    for body in (text, shown):
        assert "Jamie Buyer (jamie.buyer@example.com)" in body
        assert coach_says in body
        assert "their access has ended" in body
    activity = f"{PUBLIC_BASE_URL}/businesses/{business_id}/activity"
    assert activity in text_links(text) and activity in html_links(html)
    assert_links_only_from_public_base(all_links(coach))

    rows = await notifications.emails()
    assert sorted((r.template, r.recipient) for r in rows) == [
        ("subscription_ended", BUYER),
        ("subscription_ended_coach", COACH),
    ]
    assert {r.business_id for r in rows} == {business_id}


async def test_the_coach_email_waits_for_the_business_to_be_known(
    notifications: Notifications,
) -> None:
    business = events.business_created(owner_email="owner@example.com")
    event = ended(
        business_id=business.business_id,
        reason="payment_failed",
        buyer_name='Jamie <img src="x">',
    )
    await notifications.publish(event)
    await asyncio.sleep(0.5)  # handled and refused at least once: nothing is queued yet
    assert notifications.smtp.received == [] and await notifications.emails() == []

    await notifications.publish(business)
    received = await notifications.wait_for_delivery(2)
    await notifications.wait_handled(event, business)
    assert sorted(r.rcpt_tos[0] for r in received) == [BUYER, "owner@example.com"]
    coach = next(r.message for r in received if r.rcpt_tos == ["owner@example.com"])
    _text, html, shown = bodies(coach)
    assert 'Jamie <img src="x">' in shown
    assert "<img" not in html and not any(link.endswith("x") for link in html_links(html))


async def test_a_completed_plan_tells_the_buyer_they_keep_access_and_spares_the_coach(
    notifications: Notifications,
) -> None:
    # The business is not known here: a completed plan does not need the coach's address.
    event = ended(
        billing=PLAN,
        offering_name="Spring Plan",
        reason="completed",
        revoke_access=False,
        installments_paid=3,
    )
    async with no_more_deliveries(notifications.smtp, settle=1.0):
        await notifications.publish_all(event, again(event))
        [received] = await notifications.wait_for_delivery()
    assert received.rcpt_tos == [BUYER]
    message = received.message
    assert message["Subject"] == "Your payment plan for Spring Plan is complete"
    text, _html, shown = bodies(message)
    for body in (text, shown):
        assert "your payment plan for Spring Plan from Casey Coaching is complete".lower() in (
            body.lower()
        )
        assert "(3 in all)" in body
        assert "you keep your access to Spring Plan" in body
        assert "has ended" not in body
    assert [r.template for r in await notifications.emails()] == ["subscription_ended"]
