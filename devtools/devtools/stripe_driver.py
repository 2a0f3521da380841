"""Stripe as the benchmarks, the replicas test and the reliability suite play it.

Webhooks are signed the way Stripe signs them (``t=…,v1=HMAC_SHA256(secret,
"{t}.{body}")``). Purchases in bulk are pending orders as ``/pay`` leaves them,
each with a copy of one PaymentIntent that really succeeded in localstripe (it
pickles its whole store on every write, so thousands of real ones would take
minutes); the webhook processor reads only the event's ``data.object``, so this
is what the system sees from Stripe either way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import aiohttp

from devtools.processes import LOCAL_STRIPE_API_KEY
from kit.db import create_engine, create_sessionmaker, utcnow
from payments import models as payments_models

TEST_CARD = "4242424242424242"
AMOUNT_MINOR = 12000


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    """A Stripe-shaped event around ``obj``."""
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()


def buyer_email(order_id: uuid.UUID) -> str:
    return f"buyer-{order_id.hex[:12]}@example.com"


async def succeeded_intent(stripe_url: str, card: str = TEST_CARD) -> dict[str, Any]:
    """One PaymentIntent of AMOUNT_MINOR that succeeded in localstripe."""
    auth = {"Authorization": aiohttp.encode_basic_auth(LOCAL_STRIPE_API_KEY, "")}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(
            f"{stripe_url}/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": card,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        ) as response:
            payment_method = (await response.json())["id"]
        async with http.post(
            f"{stripe_url}/v1/payment_intents",
            data={
                "amount": str(AMOUNT_MINOR),
                "currency": "usd",
                "payment_method": payment_method,
                "confirm": "true",
            },
        ) as response:
            intent: dict[str, Any] = await response.json()
    if intent.get("status") != "succeeded":
        raise RuntimeError(f"localstripe: {intent}")
    return intent


def intent_copies(template: dict[str, Any], n: int) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """n (order id, PaymentIntent) pairs: the template with its own ids and metadata."""
    made = []
    for _ in range(n):
        order_id, intent_id = uuid.uuid4(), f"pi_{uuid.uuid4().hex[:14]}"
        made.append(
            (
                order_id,
                {
                    **template,
                    "id": intent_id,
                    "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:16]}",
                    "metadata": {"order_id": str(order_id)},
                },
            )
        )
    return made


async def insert_pending_orders(
    payments_database_url: str,
    business: dict[str, Any],
    orders: list[tuple[uuid.UUID, str]],
    *,
    label: str,
) -> None:
    """Pending one-time orders as ``/pay`` leaves them: (order id, its PaymentIntent id),
    bought by ``buyer_email(order id)``; ``label`` names the offering and the keys."""
    engine = create_engine(payments_database_url, pool_size=1)
    now = utcnow()
    offering_id, version_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add_all(
                payments_models.Order(
                    id=order_id,
                    business_id=uuid.UUID(business["id"]),
                    business_name=business["name"],
                    offering_id=offering_id,
                    offering_version_id=version_id,
                    offering_name=f"{label.capitalize()} course",
                    kind="course",
                    details={},
                    billing={"type": "one_time"},
                    buyer_email=buyer_email(order_id),
                    buyer_name=f"{label.capitalize()} Buyer",
                    amount_minor=AMOUNT_MINOR,
                    currency="USD",
                    discount_minor=0,
                    status=payments_models.PENDING,
                    stripe_payment_intent_id=intent_id,
                    idempotency_key=f"{label}-{order_id}",
                    created_at=now,
                    updated_at=now,
                    payment_started_at=now,
                )
                for order_id, intent_id in orders
            )
    finally:
        await engine.dispose()
