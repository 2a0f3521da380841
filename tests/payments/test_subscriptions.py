"""Subscriptions and payment plans: localstripe charges the first invoice; renewals,
failures and endings come as signed Stripe-shaped webhooks (localstripe cannot move
time forward), some built from the real objects localstripe holds."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from payments import models
from payments.subscriptions.settlement import subscription_token
from tests.payments.conftest import API, Payments, person_headers, sign, stripe_event
from tests.support.localstripe import DECLINED_CARD, TEST_CARD, THREE_D_SECURE_CARD

MONTH = 30 * 24 * 3600


@dataclass
class Plans:
    business: Any
    monthly: dict[str, Any]
    plan: dict[str, Any]


@pytest.fixture
async def plans(payments: Payments) -> Plans:
    catalog = payments.catalog
    business = await catalog.business("Harbour Pilates")
    monthly = await catalog.published_offering(
        business,
        name="Monthly membership",
        price_minor=5000,
        billing={"type": "recurring", "interval": "month"},
    )
    plan = await catalog.published_offering(
        business,
        name="Coaching in three payments",
        price_minor=10000,
        billing={"type": "payment_plan", "installments": 3, "interval": "month"},
    )
    return Plans(business, monthly, plan)


@dataclass
class Bought:
    created: dict[str, Any]
    order: dict[str, Any]  # the answer to /pay
    headers: dict[str, str]
    subscription_id: str
    stripe_subscription: dict[str, Any]


async def subscribe(
    payments: Payments, offering: dict[str, Any], card: str = TEST_CARD, email: str | None = None
) -> Bought:
    person = payments.catalog.person()
    headers = person_headers(
        payments.catalog, person, email or f"sub-{uuid.uuid4().hex[:8]}@example.com"
    )
    created = await payments.created_order(offering["id"], headers=headers)
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], card
    )
    answer = await payments.pay(created, payment_method, headers=headers)
    assert answer.status_code == 200, answer.text
    order = answer.json()
    row = await subscription_row(payments, order["id"])
    stripe_sub = await payments.stripe.retrieve("subscriptions", str(row.stripe_subscription_id))
    return Bought(created, order, headers, str(row.id), stripe_sub)


async def subscription_row(payments: Payments, order_id: str) -> models.Subscription:
    async with payments.sessionmaker() as session:
        found = (
            await session.execute(
                select(models.Subscription).where(
                    models.Subscription.order_id == uuid.UUID(order_id)
                )
            )
        ).scalar_one()
    return found


async def deliver(
    payments: Payments, type_: str, obj: dict[str, Any], created: int | None = None
) -> None:
    payload = json.loads(stripe_event(type_, obj))
    if created is not None:
        payload["created"] = created
    body = json.dumps(payload).encode()
    answer = await payments.webhook(body, sign(body))
    assert answer.status_code == 200, answer.text
    await payments.process_events()


def invoice(
    stripe_sub: dict[str, Any],
    *,
    created: int,
    amount: int,
    status: str = "paid",
    attempt: int = 1,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    """A renewal invoice of ``stripe_sub`` as Stripe would send it."""
    return {
        "id": invoice_id or f"in_{uuid.uuid4().hex[:24]}",
        "object": "invoice",
        "subscription": stripe_sub["id"],
        "customer": stripe_sub["customer"],
        "status": status,
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "currency": "usd",
        "created": created,
        "attempt_count": attempt,
        "billing_reason": "subscription_cycle",
        "lines": {"data": [{"period": {"start": created, "end": created + MONTH}}]},
    }


async def billing(payments: Payments, headers: dict[str, str]) -> dict[str, Any]:
    answer = await payments.http.get(f"{API}/me/billing", headers=headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def count(payments: Payments, table: Any, *where: Any) -> int:
    async with payments.engine.connect() as conn:
        query = select(func.count()).select_from(table)
        for condition in where:
            query = query.where(condition)
        return int((await conn.execute(query)).scalar_one())


async def test_a_monthly_subscription_starts_paid_by_its_first_invoice(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    assert bought.order["status"] == "paid", bought.order
    assert bought.order["subscription_id"] == bought.subscription_id
    stripe_sub = bought.stripe_subscription
    assert stripe_sub["status"] == "active"
    assert stripe_sub["metadata"]["order_id"] == bought.order["id"]
    assert stripe_sub["plan"]["amount"] == 5000
    assert (stripe_sub["plan"]["interval"], stripe_sub["plan"]["interval_count"]) == ("month", 1)

    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["subscription_id"] == bought.subscription_id
    assert paid["billing"]["type"] == "recurring"
    assert paid["installments_total"] is None
    assert paid["next_charge_at"] is not None

    mine = await billing(payments, bought.headers)
    [subscription] = mine["subscriptions"]
    assert subscription["status"] == "active"
    assert subscription["price_label"] == "$50.00 / month"
    assert subscription["installments_paid"] == 1
    assert subscription["can_cancel"] is True
    assert subscription["next_charge_at"] is not None
    assert subscription["card"]["last4"] == "4242"
    [card] = mine["cards"]
    assert (card["last4"], card["business_name"]) == ("4242", "Harbour Pilates")

    # A second pay, and the first invoice's own webhook, change nothing.
    again = await payments.pay(bought.created, "pm_whatever", headers=bought.headers)
    assert again.json()["status"] == "paid"
    first_invoice = await payments.stripe.retrieve("invoices", stripe_sub["latest_invoice"])
    await deliver(payments, "invoice.payment_succeeded", first_invoice)
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1
    assert await payments.outbox_events("payments.subscription_renewed.v1") == []
    assert len(await payments.stripe.list_all("subscriptions")) == 1

    # A second subscription to the same offering shares its Stripe plan.
    await subscribe(payments, plans.monthly)
    assert await count(payments, models.StripePlan.__table__) == 1


async def test_renewals_extend_once_per_invoice_even_delivered_twice(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    before = await subscription_row(payments, bought.order["id"])
    now = int(time.time())
    renewal = invoice(bought.stripe_subscription, created=now + MONTH, amount=5000)
    await asyncio.gather(
        *(deliver(payments, "invoice.payment_succeeded", renewal) for _ in range(2))
    )
    await deliver(payments, "invoice.paid", renewal)
    [renewed] = await payments.outbox_events("payments.subscription_renewed.v1")
    assert renewed["invoice_id"] == renewal["id"]
    assert (renewed["installment"], renewed["amount_minor"]) == (2, 5000)
    assert renewed["completed"] is False
    after = await subscription_row(payments, bought.order["id"])
    assert after.installments_paid == 2
    assert after.current_period_end is not None and before.current_period_end is not None
    assert after.current_period_end > before.current_period_end
    assert (
        await count(payments, models.Payment.__table__, models.Payment.subscription_id == after.id)
        == 2
    )


async def test_a_failed_renewal_makes_it_past_due_and_a_new_card_pays_it(
    payments: Payments, plans: Plans
) -> None:
    """A real failed invoice in localstripe: the customer's card is swapped for one that
    declines, an invoice is made and charged; its webhook makes the subscription past
    due and asks for a card; the buyer's new card (through the emailed link's token)
    pays the open invoice at once."""
    bought = await subscribe(payments, plans.monthly)
    stripe = payments.stripe
    customer = bought.stripe_subscription["customer"]
    declining = await stripe.create_card(DECLINED_CARD)
    attached = await stripe._post(f"/v1/payment_methods/{declining}/attach", {"customer": customer})
    assert attached["_status"] == 200, attached
    updated = await stripe._post(
        f"/v1/customers/{customer}", {"invoice_settings[default_payment_method]": declining}
    )
    assert updated["_status"] == 200, updated
    made = await stripe._post(
        "/v1/invoices", {"customer": customer, "subscription": bought.stripe_subscription["id"]}
    )
    assert made["_status"] == 200, made
    charged = await stripe._post(f"/v1/invoices/{made['id']}/pay", {})
    assert charged["_status"] in (200, 402), charged
    failed_invoice = await stripe.retrieve("invoices", made["id"])
    assert failed_invoice["status"] == "open"

    await deliver(payments, "invoice.payment_failed", failed_invoice)
    await deliver(payments, "invoice.payment_failed", failed_invoice)  # again: once
    [failure] = await payments.outbox_events("payments.subscription_payment_failed.v1")
    assert failure["invoice_id"] == made["id"]
    assert failure["amount_minor"] == 5000
    path = failure["update_card_path"]
    assert path.startswith(f"/billing/subscriptions/{bought.subscription_id}/card?token=")
    token = path.split("token=", 1)[1]
    row = await subscription_row(payments, bought.order["id"])
    assert row.status == "past_due"

    # Anyone with the emailed token (no login) updates the card; a wrong token is a 404.
    base = f"{API}/subscriptions/{bought.subscription_id}"
    assert (await payments.http.get(base, params={"token": "nope"})).status_code == 404
    seen = await payments.http.get(base, params={"token": token})
    assert seen.json()["status"] == "past_due", seen.text
    setup = await payments.http.post(f"{base}/card-setup", params={"token": token})
    assert setup.status_code == 200, setup.text
    new_card = await stripe.confirm_card_setup(setup.json()["client_secret"], "5555555555554444")
    answer = await payments.http.post(
        f"{base}/card", params={"token": token}, json={"payment_method_id": new_card}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active"
    assert answer.json()["card"]["last4"] == "4444"
    assert (await stripe.retrieve("invoices", made["id"]))["status"] == "paid"
    [renewed] = await payments.outbox_events("payments.subscription_renewed.v1")
    assert renewed["invoice_id"] == made["id"]
    # The paid invoice's webhook, and a late copy of its failure, change nothing more.
    await deliver(
        payments, "invoice.payment_succeeded", await stripe.retrieve("invoices", made["id"])
    )
    await deliver(payments, "invoice.payment_failed", failed_invoice)
    assert len(await payments.outbox_events("payments.subscription_renewed.v1")) == 1
    assert len(await payments.outbox_events("payments.subscription_payment_failed.v1")) == 1
    assert (await subscription_row(payments, bought.order["id"])).status == "active"


async def test_news_of_an_older_invoice_never_overrides_a_newer_one(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    now = int(time.time())
    older = invoice(bought.stripe_subscription, created=now + MONTH, amount=5000, status="open")
    newer = invoice(bought.stripe_subscription, created=now + 2 * MONTH, amount=5000)
    await deliver(payments, "invoice.payment_succeeded", newer)
    await deliver(payments, "invoice.payment_failed", older)  # late, stale
    assert (await subscription_row(payments, bought.order["id"])).status == "active"
    assert await payments.outbox_events("payments.subscription_payment_failed.v1") == []
    # And a stale "not canceling" update after a newer "canceling" one is ignored.
    canceling = {**bought.stripe_subscription, "cancel_at_period_end": True}
    await deliver(payments, "customer.subscription.updated", canceling, created=now + 20)
    await deliver(
        payments, "customer.subscription.updated", bought.stripe_subscription, created=now + 10
    )
    assert (await subscription_row(payments, bought.order["id"])).cancel_at_period_end is True


async def test_a_payment_plan_ends_after_its_last_installment_and_keeps_access(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.plan)
    assert bought.order["status"] == "paid"
    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["installments_total"] == 3
    # The client cannot cancel a plan.
    cancel = await payments.http.post(
        f"{API}/subscriptions/{bought.subscription_id}/cancel", headers=bought.headers
    )
    assert cancel.status_code == 409, cancel.text
    assert "plan" in cancel.json()["detail"].lower()

    now = int(time.time())
    for n in (1, 2):
        second = invoice(bought.stripe_subscription, created=now + n * MONTH, amount=10000)
        await deliver(payments, "invoice.payment_succeeded", second)
    renewed = await payments.outbox_events("payments.subscription_renewed.v1")
    assert [(r["installment"], r["completed"]) for r in renewed] == [(2, False), (3, True)]
    assert renewed[-1]["next_charge_at"] is None
    [ended] = await payments.outbox_events("payments.subscription_ended.v1")
    assert (ended["reason"], ended["revoke_access"], ended["installments_paid"]) == (
        "completed",
        False,
        3,
    )
    row = await subscription_row(payments, bought.order["id"])
    assert row.status == "completed"
    stripe_sub = await payments.stripe.retrieve("subscriptions", str(row.stripe_subscription_id))
    assert stripe_sub["status"] == "canceled"  # nothing more will be charged
    # Stripe's deleted webhook for it ends nothing a second time.
    await deliver(payments, "customer.subscription.deleted", stripe_sub)
    assert len(await payments.outbox_events("payments.subscription_ended.v1")) == 1
    [shown] = (await billing(payments, bought.headers))["subscriptions"]
    assert (shown["status"], shown["installments_paid"], shown["can_cancel"]) == (
        "completed",
        3,
        False,
    )
    assert shown["next_charge_at"] is None


async def test_the_client_cancels_at_period_end_and_access_ends_then(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    url = f"{API}/subscriptions/{bought.subscription_id}/cancel"
    someone = person_headers(payments.catalog, payments.catalog.person(), "else@example.com")
    assert (await payments.http.post(url, headers=someone)).status_code == 404
    assert (await payments.http.post(url)).status_code == 401
    answers = await asyncio.gather(
        *(payments.http.post(url, headers=bought.headers) for _ in range(2))
    )
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["cancel_at_period_end"] is True
        assert answer.json()["next_charge_at"] is None
        assert answer.json()["can_cancel"] is False
    stripe_sub = await payments.stripe.retrieve("subscriptions", bought.stripe_subscription["id"])
    assert stripe_sub["cancel_at_period_end"] is True
    assert await payments.outbox_events("payments.subscription_ended.v1") == []

    # At the period's end Stripe deletes it (twice, as webhooks may come).
    ended_sub = {**stripe_sub, "status": "canceled", "ended_at": int(time.time())}
    await deliver(payments, "customer.subscription.deleted", ended_sub)
    await deliver(payments, "customer.subscription.deleted", ended_sub)
    [ended] = await payments.outbox_events("payments.subscription_ended.v1")
    assert (ended["reason"], ended["revoke_access"]) == ("canceled", True)
    assert (await subscription_row(payments, bought.order["id"])).status == "canceled"


async def test_when_stripe_gives_up_access_ends_as_payment_failed(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    ended_sub = {**bought.stripe_subscription, "status": "canceled"}
    await deliver(payments, "customer.subscription.deleted", ended_sub)
    [ended] = await payments.outbox_events("payments.subscription_ended.v1")
    assert (ended["reason"], ended["revoke_access"]) == ("payment_failed", True)
    # A renewal that somehow comes after the end records the money, never revives it.
    late = invoice(bought.stripe_subscription, created=int(time.time()) + MONTH, amount=5000)
    await deliver(payments, "invoice.payment_succeeded", late)
    assert (await subscription_row(payments, bought.order["id"])).status == "canceled"


async def test_three_d_secure_on_the_first_invoice_then_refresh(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly, card=THREE_D_SECURE_CARD)
    assert bought.order["status"] == "requires_action", bought.order
    assert bought.order["client_secret"]
    assert await payments.outbox_events("payments.order_paid.v1") == []
    await payments.stripe.authenticate(bought.order["client_secret"])
    refreshed = await payments.http.post(
        f"{API}/orders/{bought.order['id']}/refresh", headers=bought.headers
    )
    assert refreshed.json()["status"] == "paid", refreshed.text
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1


async def test_a_declined_first_payment_fails_the_order_and_ends_the_stripe_subscription(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly, card=DECLINED_CARD)
    assert bought.order["status"] == "failed", bought.order
    assert bought.order["failure_reason"]
    assert await payments.outbox_events("payments.order_paid.v1") == []
    stripe_sub = await payments.stripe.retrieve("subscriptions", bought.stripe_subscription["id"])
    assert stripe_sub["status"] == "canceled"
    assert (await billing(payments, bought.headers))["subscriptions"][0]["status"] == "canceled"
    await deliver(payments, "customer.subscription.deleted", stripe_sub)
    assert await payments.outbox_events("payments.subscription_ended.v1") == []


async def test_reconciliation_starts_a_subscription_whose_answer_was_lost(
    payments: Payments, plans: Plans
) -> None:
    """3-D Secure completed in the browser but the page never called refresh, and no
    webhook came: reconciliation reads the subscription and pays the order."""
    bought = await subscribe(payments, plans.monthly, card=THREE_D_SECURE_CARD)
    await payments.stripe.authenticate(bought.order["client_secret"])
    outcomes = await payments.reconcile()
    assert outcomes.get("paid") == 1, outcomes
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1


async def test_a_full_refund_that_revokes_also_stops_the_subscription(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    business = plans.business
    refund = await payments.http.post(
        business.url(f"/orders/{bought.order['id']}/refunds").replace("/catalog/", "/payments/"),
        json={"revoke_access": True},
        headers={**business.coach, "Idempotency-Key": f"refund-{uuid.uuid4().hex}"},
    )
    assert refund.status_code == 201, refund.text
    [refunded] = await payments.outbox_events("payments.order_refunded.v1")
    assert (refunded["full"], refunded["revoke_access"]) == (True, True)
    row = await subscription_row(payments, bought.order["id"])
    assert (row.status, row.end_reason) == ("canceled", "refunded")
    stripe_sub = await payments.stripe.retrieve("subscriptions", str(row.stripe_subscription_id))
    assert stripe_sub["status"] == "canceled"
    [stripe_refund] = await payments.stripe.list_all("refunds")
    assert stripe_refund["amount"] == 5000


async def test_a_buyer_sees_only_their_own_billing(payments: Payments, plans: Plans) -> None:
    mine = await subscribe(payments, plans.monthly)
    theirs = await subscribe(payments, plans.monthly)
    shown = await billing(payments, mine.headers)
    assert [s["id"] for s in shown["subscriptions"]] == [mine.subscription_id]
    assert len(shown["cards"]) == 1
    other = f"{API}/subscriptions/{theirs.subscription_id}"
    assert (await payments.http.get(other, headers=mine.headers)).status_code == 404
    assert (
        await payments.http.post(f"{other}/card-setup", headers=mine.headers)
    ).status_code == 404
    assert (await payments.http.get(f"{API}/me/billing")).status_code == 401

    # The emailed update-card token: only for its own subscription, and only until it
    # expires (30 days).
    secret = payments.settings.secret_key
    mine_url = f"{API}/subscriptions/{mine.subscription_id}"
    good = subscription_token(secret, uuid.UUID(mine.subscription_id))
    assert (await payments.http.get(mine_url, params={"token": good})).status_code == 200
    theirs_token = subscription_token(secret, uuid.UUID(theirs.subscription_id))
    assert (await payments.http.get(mine_url, params={"token": theirs_token})).status_code == 404
    stale = subscription_token(
        secret, uuid.UUID(mine.subscription_id), datetime.now(UTC) - timedelta(minutes=1)
    )
    assert (await payments.http.get(mine_url, params={"token": stale})).status_code == 404
    forged_expiry = good.replace(good.split(".")[0], str(int(good.split(".")[0]) + 86400))
    assert (await payments.http.get(mine_url, params={"token": forged_expiry})).status_code == 404


async def test_the_same_card_given_twice_is_one_saved_card(
    payments: Payments, plans: Plans
) -> None:
    email = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    first = await subscribe(payments, plans.monthly, email=email)
    second = await subscribe(payments, plans.plan, email=email)
    async with payments.sessionmaker() as session:
        cards = (await session.execute(select(models.Card))).scalars().all()
    assert len(cards) == 1, [(c.stripe_payment_method_id, c.fingerprint) for c in cards]
    assert cards[0].fingerprint
    assert first.order["status"] == second.order["status"] == "paid"


async def test_the_coach_sees_renewals_failures_and_ends_in_activity(
    payments: Payments, plans: Plans
) -> None:
    bought = await subscribe(payments, plans.monthly)
    now = int(time.time())
    paid = invoice(bought.stripe_subscription, created=now + MONTH, amount=5000)
    failed = invoice(
        bought.stripe_subscription, created=now + 2 * MONTH, amount=5000, status="open"
    )
    await deliver(payments, "invoice.payment_succeeded", paid)
    await deliver(payments, "invoice.payment_failed", failed)
    await deliver(
        payments,
        "customer.subscription.deleted",
        {**bought.stripe_subscription, "status": "canceled"},
    )
    business = plans.business
    url = business.url("/activity").replace("/catalog/", "/payments/")
    feed = await payments.http.get(url, headers=business.coach)
    assert feed.status_code == 200, feed.text
    kinds = [item["kind"] for item in feed.json()["items"]]
    assert sorted(kinds) == ["payment_failed", "purchase", "renewal", "subscription_ended"]
    [ended] = [i for i in feed.json()["items"] if i["kind"] == "subscription_ended"]
    assert (ended["end_reason"], ended["subscription_id"]) == (
        "payment_failed",
        bought.subscription_id,
    )
    [usd] = feed.json()["summary"]
    assert usd["gross_minor"] == 10000  # the purchase and one renewal
    only = await payments.http.get(url, params={"kind": "renewal"}, headers=business.coach)
    assert [i["amount_minor"] for i in only.json()["items"]] == [5000]
    # Another business sees none of it.
    other = await payments.catalog.business("Other Studio")
    theirs = await payments.http.get(
        other.url("/activity").replace("/catalog/", "/payments/"), headers=other.coach
    )
    assert theirs.json()["items"] == []
