"""Subscriptions and payment plans on the clients service: the first invoice is the
order's order_paid; renewals, failed payments and the end are applied once per
invoice, attempt or subscription, whatever the event ids, and only to the order's
own business."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from clients import models
from kit.contracts.payments import (
    OrderPaidV1,
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from tests.clients.conftest import Coach, make_coach
from tests.clients.test_purchases import (
    API,
    PAID_AT,
    Purchases,
    count,
    order_paid,
    purchases,
    rows,
)
from tests.clients.test_refunds import order_refunded, timeline

__all__ = ["purchases"]  # the fixture, imported for these tests

MONTHLY = {"type": "recurring", "interval": "month", "interval_count": 1}
PLAN = {"type": "payment_plan", "installments": 3, "interval": "month", "interval_count": 1}
BUYER = "buyer@example.com"


def subscribed(coach: Coach, billing: dict[str, Any] = MONTHLY, **overrides: Any) -> OrderPaidV1:
    """The order_paid of a subscription's first invoice, bought by BUYER (an account)."""
    values: dict[str, Any] = {
        "billing": billing,
        "subscription_id": uuid.uuid4(),
        "next_charge_at": PAID_AT + timedelta(days=30),
        "installments_total": billing.get("installments"),
        "amount_minor": 5000,
        "currency": "EUR",
        "buyer_email": BUYER,
        **overrides,
    }
    return order_paid(coach, **values)


def renewed(paid: OrderPaidV1, installment: int = 2, **overrides: Any) -> SubscriptionRenewedV1:
    assert paid.subscription_id is not None
    values: dict[str, Any] = {
        "business_id": paid.business_id,
        "subscription_id": paid.subscription_id,
        "order_id": paid.order_id,
        "invoice_id": f"in_{uuid.uuid4().hex[:14]}",
        "offering_id": paid.offering_id,
        "offering_version_id": paid.offering_version_id,
        "offering_name": paid.offering_name,
        "kind": paid.kind,
        "details": paid.details,
        "billing": paid.billing,
        "buyer_account_id": paid.buyer_account_id,
        "buyer_email": paid.buyer_email,
        "buyer_name": paid.buyer_name,
        "amount_minor": paid.amount_minor,
        "currency": paid.currency,
        "installment": installment,
        "installments_total": paid.installments_total,
        "paid_at": PAID_AT + timedelta(days=30 * (installment - 1)),
        "business_name": paid.business_name,
        **overrides,
    }
    return SubscriptionRenewedV1(**values)


def payment_failed(paid: OrderPaidV1, **overrides: Any) -> SubscriptionPaymentFailedV1:
    assert paid.subscription_id is not None
    values: dict[str, Any] = {
        "business_id": paid.business_id,
        "subscription_id": paid.subscription_id,
        "order_id": paid.order_id,
        "invoice_id": f"in_{uuid.uuid4().hex[:14]}",
        "offering_name": paid.offering_name,
        "kind": paid.kind,
        "buyer_account_id": paid.buyer_account_id,
        "buyer_email": paid.buyer_email,
        "buyer_name": paid.buyer_name,
        "amount_minor": paid.amount_minor,
        "currency": paid.currency,
        "failure_message": "Your card was declined.",
        "update_card_path": f"/billing/subscriptions/{paid.subscription_id}/card?token=x",
        "failed_at": PAID_AT + timedelta(days=30),
        "business_name": paid.business_name,
        **overrides,
    }
    return SubscriptionPaymentFailedV1(**values)


def ended(paid: OrderPaidV1, **overrides: Any) -> SubscriptionEndedV1:
    assert paid.subscription_id is not None
    values: dict[str, Any] = {
        "business_id": paid.business_id,
        "subscription_id": paid.subscription_id,
        "order_id": paid.order_id,
        "offering_id": paid.offering_id,
        "offering_name": paid.offering_name,
        "kind": paid.kind,
        "details": paid.details,
        "billing": paid.billing,
        "buyer_account_id": paid.buyer_account_id,
        "buyer_email": paid.buyer_email,
        "buyer_name": paid.buyer_name,
        "reason": "canceled",
        "revoke_access": True,
        "installments_paid": 1,
        "ended_at": PAID_AT + timedelta(days=30),
        "business_name": paid.business_name,
        **overrides,
    }
    return SubscriptionEndedV1(**values)


def again(event: Any) -> Any:
    """The same logical event under another event id (payments published it twice)."""
    return event.model_copy(update={"id": uuid.uuid4()})


async def entitlement_statuses(purchases: Purchases, buyer: Coach) -> dict[str, tuple[str, str]]:
    """offering name -> (status, billing_type), as the buyer sees them in /me/purchases."""
    mine = await purchases.api.http.get(f"{API}/me/purchases", headers=buyer.headers)
    assert mine.status_code == 200, mine.text
    return {
        e["offering_name"]: (e["status"], e["billing_type"])
        for business in mine.json()["items"]
        for e in business["entitlements"]
    }


async def handled(purchases: Purchases, event: Any) -> bool:
    async with purchases.api.engine.connect() as conn:
        query = select(models.inbox.c.event_id).where(models.inbox.c.event_id == event.id)
        return (await conn.execute(query)).first() is not None


# -- the first invoice ---------------------------------------------------------------------


async def test_a_subscription_or_plan_order_says_its_billing_and_gives_access(
    purchases: Purchases,
) -> None:
    coach = await make_coach(purchases.api)
    buyer = await make_coach(purchases.api, email=BUYER, business="Buyer Studio")
    monthly = subscribed(coach, offering_name="Monthly coaching")
    weekly = subscribed(
        coach,
        {"type": "recurring", "interval": "week", "interval_count": 2},
        offering_name="Check-ins",
    )
    plan = subscribed(coach, PLAN, offering_name="Big program", amount_minor=10000)
    one_time = order_paid(coach, buyer_email=BUYER, offering_name="Worksheet", kind="worksheet")
    await purchases.deliver(monthly, weekly, plan, one_time)

    purchased = sorted(s for k, s in await timeline(purchases, coach, BUYER) if k == "purchased")
    assert purchased == [
        "Became a client with a purchase",
        "Bought Worksheet for $120.00",
        "Started payment plan Big program: installment 1 of 3, €100.00",
        "Subscribed to Check-ins for €50.00 every 2 weeks",
        "Subscribed to Monthly coaching for €50.00 every month",
    ]
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly coaching": ("active", "recurring"),
        "Check-ins": ("active", "recurring"),
        "Big program": ("active", "payment_plan"),
        "Worksheet": ("active", "one_time"),
    }


# -- renewals ------------------------------------------------------------------------------


async def test_a_renewal_adds_credits_once_per_invoice_even_with_two_event_ids(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    paid = subscribed(
        coach,
        kind="engagement",
        offering_name="Monthly sessions",
        details={"credits": 4, "credit_expiry_days": 30},
    )
    await purchases.deliver(paid)
    second = renewed(paid, 2)
    third = renewed(paid, 3)
    await purchases.deliver(second, second, again(second), third, again(third))

    credits = await rows(api, models.Credit.__table__, models.Credit.order_id == paid.order_id)
    by_invoice = {c.invoice_id: c for c in credits}
    assert set(by_invoice) == {None, second.invoice_id, third.invoice_id}
    for invoice, event in ((second.invoice_id, second), (third.invoice_id, third)):
        credit = by_invoice[invoice]
        assert (credit.total, credit.remaining) == (4, 4)
        # Counted from the renewal's payment, not from the first one.
        assert credit.expires_at == event.paid_at + timedelta(days=30)
    assert by_invoice[None].expires_at == PAID_AT + timedelta(days=30)
    assert await count(api, models.SubscriptionEventApplied) == 2

    renewals = [s for k, s in await timeline(purchases, coach, BUYER) if k == "renewed"]
    assert renewals == ["Renewed Monthly sessions for €50.00"] * 2


async def test_a_renewal_before_its_order_paid_is_retried_then_applied(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    paid = subscribed(coach, kind="engagement", details={"credits": 2})
    early = renewed(paid, 2)
    await purchases.publish(early)
    await asyncio.sleep(0.6)  # delivered and failed at least once by now
    assert not await handled(purchases, early)
    assert await count(api, models.Credit) == 0

    await purchases.deliver(paid)
    await purchases.wait_handled(early)
    credits = await rows(api, models.Credit.__table__)
    assert sorted(str(c.invoice_id) for c in credits) == sorted(["None", early.invoice_id])


async def test_plan_installments_are_on_the_timeline_and_a_completed_plan_keeps_access(
    purchases: Purchases,
) -> None:
    coach = await make_coach(purchases.api)
    buyer = await make_coach(purchases.api, email=BUYER, business="Buyer Studio")
    plan = subscribed(coach, PLAN, offering_name="Big program", amount_minor=10000)
    await purchases.deliver(plan)
    last = renewed(plan, 3, completed=True)
    done = ended(plan, reason="completed", revoke_access=False, installments_paid=3)
    await purchases.deliver(renewed(plan, 2), last, done, again(done))

    assert await entitlement_statuses(purchases, buyer) == {
        "Big program": ("active", "payment_plan")
    }
    entries = await timeline(purchases, coach, BUYER)
    assert sorted(s for k, s in entries if k == "renewed") == [
        "Paid installment 2 of 3 of Big program (€100.00)",
        "Paid installment 3 of 3 of Big program (€100.00): payment plan completed",
    ]
    assert [s for k, s in entries if k == "subscription_ended"] == [
        "Payment plan Big program completed; access kept"
    ]


# -- failed payments -----------------------------------------------------------------------


async def test_a_failed_payment_makes_access_past_due_until_the_renewal(
    purchases: Purchases,
) -> None:
    coach = await make_coach(purchases.api)
    buyer = await make_coach(purchases.api, email=BUYER, business="Buyer Studio")
    paid = subscribed(coach, offering_name="Monthly course")
    await purchases.deliver(paid)

    failed = payment_failed(paid)
    retried = payment_failed(paid, invoice_id=failed.invoice_id, attempt=2)
    await purchases.deliver(failed, again(failed), retried)
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("past_due", "recurring")
    }
    entries = await timeline(purchases, coach, BUYER)
    assert sorted(s for k, s in entries if k == "payment_failed") == [
        "Payment for Monthly course failed (€50.00)",
        "Payment for Monthly course failed (€50.00, attempt 2)",
    ]

    # The new card paid the same invoice.
    await purchases.deliver(renewed(paid, 2, invoice_id=failed.invoice_id))
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("active", "recurring")
    }
    # A failure of that invoice arriving late does not put it back to past due.
    await purchases.deliver(payment_failed(paid, invoice_id=failed.invoice_id, attempt=3))
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("active", "recurring")
    }


async def test_a_failed_payment_before_its_order_paid_is_retried(purchases: Purchases) -> None:
    coach = await make_coach(purchases.api)
    buyer = await make_coach(purchases.api, email=BUYER, business="Buyer Studio")
    paid = subscribed(coach, offering_name="Monthly course")
    failed = payment_failed(paid)
    await purchases.publish(failed)
    await asyncio.sleep(0.6)
    assert not await handled(purchases, failed)
    await purchases.deliver(paid)
    await purchases.wait_handled(failed)
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("past_due", "recurring")
    }


# -- the end -------------------------------------------------------------------------------


async def test_an_end_with_revoke_ends_access_and_the_group_place_but_keeps_credits(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    created = await api.http.post(
        coach.url("/groups"), json={"name": "Monthly club"}, headers=coach.headers
    )
    group_id = created.json()["id"]
    course = subscribed(coach, offering_name="Monthly course")
    club = subscribed(coach, kind="group", offering_name="Club", details={"group_id": group_id})
    sessions = subscribed(
        coach, kind="engagement", offering_name="Sessions", details={"credits": 3}
    )
    kept = subscribed(coach, offering_name="Other course")
    await purchases.deliver(course, club, sessions, kept)
    await purchases.wait_published("clients.group_member_added.v1", 1)
    await purchases.deliver(payment_failed(course))

    ends = [
        ended(course, reason="payment_failed"),
        ended(club),
        ended(sessions),
    ]
    await purchases.deliver(*ends, *(again(e) for e in ends))

    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("ended", "recurring"),
        "Other course": ("active", "recurring"),
    }
    [removed] = await purchases.wait_published("clients.group_member_removed.v1", 1)
    assert removed["group_id"] == group_id
    detail = await api.http.get(coach.url(f"/groups/{group_id}"), headers=coach.headers)
    assert detail.json()["members"] == []
    [credit] = await rows(api, models.Credit.__table__)
    assert (credit.total, credit.remaining) == (3, 3)

    entries = await timeline(purchases, coach, BUYER)
    assert sorted(s for k, s in entries if k == "subscription_ended") == [
        "Subscription to Club ended (canceled); access ended",
        "Subscription to Monthly course ended (payment failed); access ended",
        "Subscription to Sessions ended (canceled); access ended",
    ]

    # Late events bring nothing back, and a refund after the end removes no place again.
    await purchases.deliver(renewed(course, 2), order_refunded(club))
    assert (await entitlement_statuses(purchases, buyer))["Monthly course"][0] == "ended"
    assert len(await api.outbox_events("clients.group_member_removed.v1")) == 1


# -- another business's order --------------------------------------------------------------


async def test_events_naming_another_business_or_subscription_change_nothing(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    other = await make_coach(api, business="Other Studio")
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    course = subscribed(coach, offering_name="Monthly course")
    sessions = subscribed(coach, kind="engagement", details={"credits": 2})
    await purchases.deliver(course, sessions)
    before = await timeline(purchases, coach, BUYER)

    elsewhere = uuid.UUID(other.business_id)
    foreign = [
        renewed(sessions, business_id=elsewhere),
        payment_failed(course, business_id=elsewhere),
        ended(course, business_id=elsewhere),
        # The right business, but not this order's subscription.
        renewed(sessions, subscription_id=uuid.uuid4()),
        ended(course, subscription_id=uuid.uuid4()),
    ]
    await purchases.deliver(*foreign)

    assert await count(api, models.Credit) == 1
    assert await count(api, models.SubscriptionEventApplied) == 0
    assert await entitlement_statuses(purchases, buyer) == {
        "Monthly course": ("active", "recurring")
    }
    assert await timeline(purchases, coach, BUYER) == before
    assert await api.outbox_events("clients.group_member_removed.v1") == []
