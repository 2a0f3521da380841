"""Pure logic, with plain values (no database, broker or Stripe)."""

from __future__ import annotations

import time
import uuid

import pytest

from kit.auth import Principal
from kit.errors import InvalidInput
from payments.orders.schemas import OrderIn
from payments.orders.service import access_token, buyer_of
from payments.stripe_gateway.gateway import InvalidWebhook, StripeGateway, payment_intent_info
from tests.payments.conftest import sign

SECRET = "whsec_unit"


def test_a_logged_in_buyer_is_who_the_token_says() -> None:
    viewer = Principal(account_id=uuid.uuid4(), email="Kim@Example.com", name="Kim")
    body = OrderIn(offering_id=uuid.uuid4(), email="someone@example.com")
    buyer = buyer_of(body, viewer)
    assert (buyer.account_id, buyer.email, buyer.name) == (
        viewer.account_id,
        "kim@example.com",
        "Kim",
    )


def test_an_anonymous_buyer_names_themselves() -> None:
    with pytest.raises(InvalidInput) as refused:
        buyer_of(OrderIn(offering_id=uuid.uuid4()), None)
    assert {e.field for e in refused.value.errors} == {"name", "email"}
    buyer = buyer_of(OrderIn(offering_id=uuid.uuid4(), name="Robin", email="R@X.org"), None)
    assert (buyer.account_id, buyer.email) == (None, "r@x.org")


def test_access_tokens_are_per_order_and_per_secret() -> None:
    order = uuid.uuid4()
    assert access_token("a" * 32, order) == access_token("a" * 32, order)
    assert access_token("a" * 32, order) != access_token("b" * 32, order)
    assert access_token("a" * 32, order) != access_token("a" * 32, uuid.uuid4())


def test_webhook_verification() -> None:
    payload = b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    verify = StripeGateway.verify_webhook
    assert verify(payload, sign(payload, SECRET), SECRET, 300)["id"] == "evt_1"
    for body, header, secret in (
        (payload, sign(payload, SECRET), ""),
        (payload, None, SECRET),
        (payload, sign(payload, "other"), SECRET),
        (payload + b" ", sign(payload, SECRET), SECRET),
        (payload, sign(payload, SECRET, int(time.time()) - 301), SECRET),
        (b"[]", sign(b"[]", SECRET), SECRET),
    ):
        with pytest.raises(InvalidWebhook):
            verify(body, header, secret, 300)


def test_what_we_keep_of_a_payment_intent() -> None:
    info = payment_intent_info(
        {
            "id": "pi_1",
            "status": "requires_payment_method",
            "amount": 500,
            "currency": "eur",
            "metadata": {"order_id": "o"},
            "last_payment_error": {"message": "Your card was declined."},
        }
    )
    assert (info.id, info.amount, info.metadata) == ("pi_1", 500, {"order_id": "o"})
    assert info.failure_message == "Your card was declined."
