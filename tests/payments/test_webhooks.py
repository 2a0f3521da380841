"""Stripe webhooks (signed as Stripe signs them), their processing, and reconciliation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from payments.main import build_app
from tests.payments.conftest import (
    API,
    WEBHOOK_SECRET,
    Payments,
    Shop,
    sign,
    stripe_event,
)
from tests.support.localstripe import THREE_D_SECURE_CARD


async def authenticated_but_unsettled(payments: Payments, shop: Shop) -> tuple[dict[str, Any], str]:
    """An order whose PaymentIntent succeeded in Stripe after 3-D Secure, while the
    buyer never came back to /refresh: only a webhook or reconciliation can settle it."""
    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], THREE_D_SECURE_CARD
    )
    answer = await payments.pay(created, payment_method)
    assert answer.json()["status"] == "requires_action", answer.text
    await payments.stripe.authenticate(answer.json()["client_secret"])
    [intent] = await payments.payment_intents_of(created["order"]["id"])
    assert intent["status"] == "succeeded"
    assert (await payments.get(created))["status"] == "requires_action"
    return created, intent["id"]


async def test_signatures_that_do_not_verify_are_refused_and_store_nothing(
    payments: Payments, shop: Shop
) -> None:
    payload = stripe_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    tampered = bytearray(payload)
    tampered[payload.index(b"pi_x") + 3] = ord("y")
    now = int(time.time())
    refused = {
        "unsigned": (payload, None),
        "garbage header": (payload, "not a signature"),
        "wrong secret": (payload, sign(payload, "whsec_someone_else")),
        "one modified byte": (bytes(tampered), sign(payload)),
        "stale timestamp": (payload, sign(payload, timestamp=now - 301)),
        "v0 scheme only": (payload, sign(payload).replace("v1=", "v0=")),
    }
    for what, (body, signature) in refused.items():
        response = await payments.webhook(body, signature)
        assert response.status_code == 400, (what, response.text)
        assert response.json()["type"] == "/problems/invalid-webhook", what
    assert (await payments.counts())["stripe_events"] == 0

    # A service without a configured secret refuses everything, even correctly signed.
    unconfigured = build_app(payments.settings.model_copy(update={"stripe_webhook_secret": ""}))
    async with unconfigured.router.lifespan_context(unconfigured):
        transport = httpx.ASGITransport(app=unconfigured)
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as http:
            for signature in (sign(payload), sign(payload, "")):
                response = await http.post(
                    f"{API}/webhooks/stripe",
                    content=payload,
                    headers={"Stripe-Signature": signature},
                )
                assert response.status_code == 400, response.text
    assert (await payments.counts())["stripe_events"] == 0

    # The same event, properly signed, is accepted (and stored once).
    accepted = await payments.webhook(payload, sign(payload))
    assert accepted.status_code == 200, accepted.text
    assert (await payments.counts())["stripe_events"] == 1


async def test_a_succeeded_event_delivered_three_times_at_once_grants_once(
    payments: Payments, shop: Shop
) -> None:
    created, intent_id = await authenticated_but_unsettled(payments, shop)
    intent = await payments.stripe.retrieve("payment_intents", intent_id)
    payload = stripe_event("payment_intent.succeeded", intent)
    answers = await asyncio.gather(*(payments.webhook(payload, sign(payload)) for _ in range(3)))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert (await payments.counts())["stripe_events"] == 1
    # The api only stored it; the worker's processing settles it (twice here: still once).
    assert (await payments.get(created))["status"] == "requires_action"
    results = await asyncio.gather(payments.process_events(), payments.process_events())
    assert sum(results) == 1
    assert (await payments.get(created))["status"] == "paid"
    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["order_id"] == created["order"]["id"]
    assert (await payments.counts())["payments"] == 1

    # A different event for the same PaymentIntent (Stripe's own, say) grants nothing more.
    other = stripe_event("payment_intent.succeeded", intent)
    assert (await payments.webhook(other, sign(other))).status_code == 200
    assert await payments.process_events() == 1
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1

    # A stale failure arriving after the success never un-pays.
    failure = {
        **intent,
        "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
    }
    stale = stripe_event("payment_intent.payment_failed", failure)
    assert (await payments.webhook(stale, sign(stale))).status_code == 200
    assert await payments.process_events() == 1
    order = await payments.get(created)
    assert (order["status"], order["failure_reason"]) == ("paid", None)


async def test_a_failed_payment_event_fails_an_open_order(payments: Payments, shop: Shop) -> None:
    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], THREE_D_SECURE_CARD
    )
    answer = await payments.pay(created, payment_method)
    await payments.stripe.authenticate(answer.json()["client_secret"], success=False)
    [intent] = await payments.payment_intents_of(created["order"]["id"])
    assert intent["status"] == "requires_payment_method"
    payload = stripe_event("payment_intent.payment_failed", intent)
    assert (await payments.webhook(payload, sign(payload))).status_code == 200
    await payments.process_events()
    order = await payments.get(created)
    assert order["status"] == "failed"
    assert "authentication" in order["failure_reason"].lower()
    assert await payments.outbox_events("payments.order_paid.v1") == []


async def test_events_we_do_not_handle_or_do_not_know_are_kept_and_closed(
    payments: Payments, shop: Shop
) -> None:
    for payload in (
        stripe_event("customer.created", {"id": "cus_1", "object": "customer"}),
        stripe_event(
            "payment_intent.succeeded",
            {"id": "pi_unknown", "object": "payment_intent", "status": "succeeded", "amount": 5},
        ),
    ):
        assert (await payments.webhook(payload, sign(payload))).status_code == 200
    assert await payments.process_events() == 2
    assert await payments.process_events() == 0
    assert await payments.outbox_events("payments.order_paid.v1") == []


async def test_reconciliation_settles_a_payment_whose_webhook_never_came(
    payments: Payments, shop: Shop
) -> None:
    created, _intent_id = await authenticated_but_unsettled(payments, shop)
    pending = await payments.created_order(shop.paid["id"])  # no PaymentIntent: not touched

    outcomes = await payments.reconcile()
    assert outcomes == {"paid": 1}
    assert (await payments.get(created))["status"] == "paid"
    assert (await payments.get(pending))["status"] == "pending"
    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["order_id"] == created["order"]["id"]
    # Nothing left to do, and a late webhook changes nothing.
    assert await payments.reconcile() == {}
    intent = await payments.stripe.retrieve("payment_intents", _intent_id)
    late = stripe_event("payment_intent.succeeded", intent)
    await payments.webhook(late, sign(late))
    await payments.process_events()
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1


async def test_the_webhook_secret_is_the_configured_one(payments: Payments) -> None:
    assert payments.settings.stripe_webhook_secret == WEBHOOK_SECRET
    body = json.dumps({"id": "evt_1", "type": "ping"}).encode()
    assert (await payments.webhook(body, sign(body))).status_code == 200
