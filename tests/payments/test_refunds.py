"""Refunds end to end: a coach refunds through our API (localstripe makes the Stripe
Refund), or Stripe's dashboard does and its charge.refunded webhook tells us."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.payments.conftest import API, Payments, Shop, sign, stripe_event

REFUNDED = "payments.order_refunded.v1"


async def paid_order(payments: Payments, shop: Shop, **kwargs: Any) -> dict[str, Any]:
    created = await payments.created_order(shop.paid["id"], **kwargs)
    payment_method = await payments.stripe.confirm_card_setup(created["stripe"]["client_secret"])
    answer = await payments.pay(created, payment_method)
    assert answer.json()["status"] == "paid", answer.text
    return dict(answer.json())


async def refund(
    payments: Payments,
    shop: Shop,
    order_id: str,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    return await payments.http.post(
        f"{API}/businesses/{shop.business.id}/orders/{order_id}/refunds",
        json=body,
        headers={
            "Idempotency-Key": key or f"refund-{uuid.uuid4().hex}",
            **(shop.business.coach if headers is None else headers),
        },
    )


async def stripe_refunds_of(payments: Payments, order: dict[str, Any]) -> list[dict[str, Any]]:
    [intent] = await payments.payment_intents_of(order["id"])
    return await payments.stripe.list_all("refunds", payment_intent=intent["id"])


async def test_a_full_refund_refunds_the_order_in_stripe_and_publishes_once(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    answer = await refund(
        payments, shop, order["id"], revoke_access=True, reason="Could not attend"
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["amount_minor"], body["currency"], body["origin"]) == (12000, "USD", "coach")
    assert (body["order_status"], body["refunded_total_minor"]) == ("refunded", 12000)
    assert (body["reason"], body["revoke_access"]) == ("Could not attend", True)

    [stripe_refund] = await stripe_refunds_of(payments, order)
    assert stripe_refund["amount"] == 12000
    assert stripe_refund["metadata"]["refund_id"] == body["id"]
    row = await payments.order_row(order["id"])
    assert (row.status, row.refunded_minor) == ("refunded", 12000)

    [event] = await payments.outbox_events(REFUNDED)
    assert event["order_id"] == order["id"]
    assert event["refund_id"] == body["id"]
    assert event["business_id"] == str(shop.business.id)
    assert (event["amount_minor"], event["currency"]) == (12000, "USD")
    assert (event["refunded_total_minor"], event["full"], event["revoke_access"]) == (
        12000,
        True,
        True,
    )
    assert event["buyer_email"] == order["buyer_email"]
    assert event["buyer_account_id"] is None
    assert event["offering_name"] == "Reformer course"

    # Nothing is left: a second refund is refused and changes nothing.
    again = await refund(payments, shop, order["id"])
    assert again.status_code == 422, again.text
    assert again.json()["reason"] == "already_refunded"
    assert len(await payments.outbox_events(REFUNDED)) == 1
    assert len(await stripe_refunds_of(payments, order)) == 1


async def test_partial_refunds_keep_the_order_paid_until_nothing_is_left(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    first = await refund(payments, shop, order["id"], amount_minor=2000)
    assert first.status_code == 201, first.text
    assert (first.json()["order_status"], first.json()["refunded_total_minor"]) == ("paid", 2000)
    row = await payments.order_row(order["id"])
    assert (row.status, row.refunded_minor) == ("paid", 2000)

    # More than is left: 422 on the field, and nothing anywhere changes.
    counts = await payments.counts()
    too_much = await refund(payments, shop, order["id"], amount_minor=10001)
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["reason"] == "refund_exceeds_paid"
    assert [e["field"] for e in too_much.json()["errors"]] == ["amount_minor"]
    assert await payments.counts() == counts
    assert (await payments.order_row(order["id"])).refunded_minor == 2000
    assert len(await stripe_refunds_of(payments, order)) == 1

    # Without an amount: the rest.
    rest = await refund(payments, shop, order["id"], revoke_access=True)
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount_minor"], rest.json()["order_status"]) == (10000, "refunded")
    events = await payments.outbox_events(REFUNDED)
    assert [(e["amount_minor"], e["refunded_total_minor"], e["full"]) for e in events] == [
        (2000, 2000, False),
        (10000, 12000, True),
    ]
    assert sorted(r["amount"] for r in await stripe_refunds_of(payments, order)) == [2000, 10000]


async def test_the_same_idempotency_key_refunds_once_even_at_once(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    key = f"refund-{uuid.uuid4().hex}"
    answers = await asyncio.gather(
        *(refund(payments, shop, order["id"], key=key, amount_minor=3000) for _ in range(3))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(await payments.outbox_events(REFUNDED)) == 1
    assert len(await stripe_refunds_of(payments, order)) == 1
    assert (await payments.order_row(order["id"])).refunded_minor == 3000

    # The key of one order is not a key for another.
    other = await paid_order(payments, shop)
    reused = await refund(payments, shop, other["id"], key=key)
    assert reused.status_code == 409, reused.text


async def test_concurrent_refunds_never_give_back_more_than_was_paid(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    answers = await asyncio.gather(
        *(refund(payments, shop, order["id"], amount_minor=5000) for _ in range(3))
    )
    assert sorted(a.status_code for a in answers) == [201, 201, 422]
    assert (await payments.order_row(order["id"])).refunded_minor == 10000
    assert sum(r["amount"] for r in await stripe_refunds_of(payments, order)) == 10000


async def test_only_the_business_coach_refunds_and_only_paid_card_orders(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    other = await payments.catalog.business("Other Studio")
    someone = payments.catalog.person()
    for headers in (other.coach, someone.headers, {}):
        answer = await refund(payments, shop, order["id"], headers=headers)
        assert answer.status_code in (401, 404), answer.text
    # Another business's coach naming this order under their own business: 404.
    elsewhere = await payments.http.post(
        f"{API}/businesses/{other.id}/orders/{order['id']}/refunds",
        json={},
        headers={"Idempotency-Key": "k" * 16, **other.coach},
    )
    assert elsewhere.status_code == 404, elsewhere.text
    assert await payments.outbox_events(REFUNDED) == []

    free = await payments.created_order(shop.free["id"])
    refused = await refund(payments, shop, free["order"]["id"])
    assert refused.status_code == 422
    assert refused.json()["reason"] == "not_refundable"
    pending = await payments.created_order(shop.paid["id"])
    refused = await refund(payments, shop, pending["order"]["id"])
    assert refused.status_code == 422
    # Unknown fields and non-positive amounts are input errors.
    for body in ({"amount_minor": 0}, {"amount_minor": -5}, {"price": 1}):
        bad = await refund(payments, shop, order["id"], **body)
        assert bad.status_code == 422, bad.text
    assert await payments.outbox_events(REFUNDED) == []


async def test_a_refund_made_in_stripes_dashboard_is_recorded_once_from_the_webhook(
    payments: Payments, shop: Shop
) -> None:
    order = await paid_order(payments, shop)
    [intent] = await payments.payment_intents_of(order["id"])
    # The dashboard: a Refund made straight in Stripe.
    async with httpx.AsyncClient(base_url=payments.stripe.base_url, timeout=10) as http:
        made = await http.post(
            "/v1/refunds",
            data={"payment_intent": intent["id"], "amount": "4000"},
            auth=(payments.settings.stripe_api_key, ""),
        )
    assert made.status_code == 200, made.text
    charge_id = intent["latest_charge"]
    if isinstance(charge_id, dict):
        charge_id = charge_id["id"]
    charge = await payments.stripe.retrieve("charges", charge_id)
    assert (charge["amount_refunded"], charge["payment_intent"]) == (4000, intent["id"])

    payload = stripe_event("charge.refunded", charge)
    redelivered = stripe_event("charge.refunded", charge)  # another event, the same state
    for body in (payload, payload, redelivered):
        assert (await payments.webhook(body, sign(body))).status_code == 200
    assert await payments.process_events() == 2
    row = await payments.order_row(order["id"])
    assert (row.status, row.refunded_minor) == ("paid", 4000)
    [event] = await payments.outbox_events(REFUNDED)
    assert (event["amount_minor"], event["full"], event["revoke_access"]) == (4000, False, False)
    assert event["origin"] == "stripe"

    # A refund we make ourselves, and then Stripe's charge.refunded for it: still once.
    ours = await refund(payments, shop, order["id"])
    assert ours.status_code == 201, ours.text
    assert ours.json()["amount_minor"] == 8000
    charge = await payments.stripe.retrieve("charges", charge_id)
    assert charge["amount_refunded"] == 12000
    echo = stripe_event("charge.refunded", charge)
    assert (await payments.webhook(echo, sign(echo))).status_code == 200
    assert await payments.process_events() == 1
    assert len(await payments.outbox_events(REFUNDED)) == 2
    assert (await payments.order_row(order["id"])).status == "refunded"
