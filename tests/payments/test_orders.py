"""Orders end to end: the real catalog prices them, localstripe charges them."""

from __future__ import annotations

import asyncio
import uuid

from tests.payments.conftest import API, Payments, Shop, person_headers
from tests.support.localstripe import DECLINED_CARD, THREE_D_SECURE_CARD


async def test_a_free_offering_is_paid_at_once_without_stripe(
    payments: Payments, shop: Shop
) -> None:
    customers_before = await payments.stripe.count("customers")
    created = await payments.created_order(shop.free["id"], name="Robin", email="Robin@Example.com")
    order = created["order"]
    assert order["status"] == "paid"
    assert (order["amount_minor"], order["buyer_email"]) == (0, "robin@example.com")
    assert created["stripe"] is None
    assert await payments.stripe.count("customers") == customers_before
    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["order_id"] == order["id"]
    assert paid["business_id"] == str(shop.business.id)
    assert paid["offering_name"] == "Intro call"
    assert paid["business_name"] == "Harbour Pilates"
    assert (paid["amount_minor"], paid["billing"]) == (0, {"type": "free"})


async def test_a_paid_one_time_order_with_a_card(payments: Payments, shop: Shop) -> None:
    created = await payments.created_order(shop.paid["id"])
    order = created["order"]
    assert order["status"] == "pending"
    assert (order["amount_minor"], order["currency"]) == (12000, "USD")
    assert created["stripe"]["publishable_key"] == "pk_test_local"
    assert created["stripe"]["js_url"] == payments.stripe.js_url
    assert created["cards"] == []
    assert await payments.outbox_events("payments.order_paid.v1") == []

    payment_method = await payments.stripe.confirm_card_setup(created["stripe"]["client_secret"])
    paid = await payments.pay(created, payment_method)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["paid_at"] is not None

    [event] = await payments.outbox_events("payments.order_paid.v1")
    assert event["order_id"] == order["id"]
    assert (event["amount_minor"], event["currency"], event["kind"]) == (12000, "USD", "course")
    assert event["offering_version_id"] == shop.paid["version_id"]
    assert event["buyer_email"] == order["buyer_email"]
    [intent] = await payments.payment_intents_of(order["id"])
    assert (intent["status"], intent["amount"]) == ("succeeded", 12000)

    # Paying again, or Stripe's webhook coming later, grants nothing more.
    again = await payments.pay(created, payment_method)
    assert again.json()["status"] == "paid"
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1
    assert len(await payments.payment_intents_of(order["id"])) == 1
    assert (await payments.get(created))["status"] == "paid"


async def test_a_declined_card_fails_the_order_with_a_reason(
    payments: Payments, shop: Shop
) -> None:
    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], DECLINED_CARD
    )
    answer = await payments.pay(created, payment_method)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "failed"
    assert "declined" in answer.json()["failure_reason"].lower()
    assert await payments.outbox_events("payments.order_paid.v1") == []
    assert (await payments.counts())["payments"] == 0


async def test_the_same_idempotency_key_gives_one_order_and_one_payment_intent(
    payments: Payments, shop: Shop
) -> None:
    body = {"name": "Robin", "email": "robin-same@example.com"}
    first = await payments.created_order(shop.paid["id"], key="same-key-123", **body)
    again = await payments.created_order(shop.paid["id"], key="same-key-123", **body)
    assert again["order"]["id"] == first["order"]["id"]
    assert again["access_token"] == first["access_token"]
    assert again["stripe"]["client_secret"] == first["stripe"]["client_secret"]

    # Concurrently, with a fresh key: still one order and one SetupIntent.
    answers = await asyncio.gather(
        *(payments.order(shop.paid["id"], key="concurrent-key-1", **body) for _ in range(5))
    )
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["order"]["id"] for a in answers}) == 1
    assert len({a.json()["stripe"]["client_secret"] for a in answers}) == 1
    assert (await payments.counts())["orders"] == 2
    assert (await payments.counts())["customers"] == 1  # one Stripe Customer per business+email
    order_ids = {first["order"]["id"], answers[0].json()["order"]["id"]}
    setups = [
        s
        for s in await payments.stripe.list_all("setup_intents")
        if s["metadata"].get("order_id") in order_ids
    ]
    assert len(setups) == 2

    # A double (here: fivefold) submit of /pay charges once.
    created = answers[0].json()
    payment_method = await payments.stripe.confirm_card_setup(created["stripe"]["client_secret"])
    paid = await asyncio.gather(*(payments.pay(created, payment_method) for _ in range(5)))
    assert [p.json()["status"] for p in paid] == ["paid"] * 5, [p.text for p in paid]
    assert len(await payments.payment_intents_of(created["order"]["id"])) == 1
    events = await payments.outbox_events("payments.order_paid.v1")
    assert [e["order_id"] for e in events] == [created["order"]["id"]]

    # The key belongs to that order: another offering or buyer with it is refused.
    reused = await payments.order(shop.free["id"], key="concurrent-key-1", **body)
    assert reused.status_code == 409, reused.text
    assert reused.json()["reason"] == "idempotency_key_reused"


async def test_prices_never_come_from_the_buyer(payments: Payments, shop: Shop) -> None:
    for extra in ({"price_minor": 1}, {"amount": 1}, {"amount_minor": 1}, {"currency": "JPY"}):
        response = await payments.order(shop.paid["id"], **extra)
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["field"] == next(iter(extra))
    missing_key = await payments.http.post(
        f"{API}/orders",
        json={"offering_id": shop.paid["id"], "name": "R", "email": "r@example.com"},
    )
    assert missing_key.status_code == 422
    assert missing_key.json()["errors"][0]["field"] == "Idempotency-Key"
    short_key = await payments.order(shop.paid["id"], key="short")
    assert short_key.status_code == 422
    anonymous = await payments.http.post(
        f"{API}/orders",
        json={"offering_id": shop.paid["id"]},
        headers={"Idempotency-Key": "anonymous-no-email"},
    )
    assert anonymous.status_code == 422
    assert {e["field"] for e in anonymous.json()["errors"]} == {"name", "email"}
    assert (await payments.counts())["orders"] == 0


async def test_an_ineligible_buyer_is_refused_and_nothing_is_created(
    payments: Payments, shop: Shop
) -> None:
    catalog = payments.catalog
    members_only = await catalog.published_offering(
        shop.business, name="Members' course", visibility="established_only"
    )
    before = await payments.counts()
    customers_before = await payments.stripe.count("customers")

    anonymous = await payments.order(members_only["id"])
    assert anonymous.status_code == 403, anonymous.text
    assert anonymous.json()["reason"] == "login_required"
    stranger = catalog.person()
    as_stranger = await payments.order(
        members_only["id"], headers=person_headers(catalog, stranger, "stranger@example.com")
    )
    assert (as_stranger.status_code, as_stranger.json()["reason"]) == (403, "not_a_client")
    unknown = await payments.order(str(uuid.uuid4()))
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "not_found")
    bad_code = await payments.order(shop.paid["id"], discount_code="NOPE")
    assert bad_code.status_code == 422, bad_code.text
    assert bad_code.json()["errors"][0]["field"] == "discount_code"

    assert await payments.counts() == before
    assert await payments.stripe.count("customers") == customers_before

    # Once a client, the same person may buy it.
    client = await catalog.add_client(shop.business, stranger)
    allowed = await payments.order(
        members_only["id"], headers=person_headers(catalog, client, "stranger@example.com")
    )
    assert allowed.status_code == 201, allowed.text


async def test_the_saved_card_of_a_logged_in_buyer_pays_in_one_click(
    payments: Payments, shop: Shop
) -> None:
    person = payments.catalog.person()
    headers = person_headers(payments.catalog, person, "kim@example.com")
    first = await payments.created_order(shop.paid["id"], headers=headers)
    assert first["order"]["buyer_account_id"] == str(person.account_id)
    assert first["order"]["buyer_email"] == "kim@example.com"
    assert first["cards"] == []
    payment_method = await payments.stripe.confirm_card_setup(first["stripe"]["client_secret"])
    paid = await payments.pay(first, payment_method, headers=headers)
    assert paid.json()["status"] == "paid", paid.text

    second = await payments.created_order(shop.paid["id"], headers=headers)
    [card] = second["cards"]
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        12,
        2034,
    )
    assert set(card) == {"id", "brand", "last4", "exp_month", "exp_year"}
    # One click, submitted twice at once: one PaymentIntent, one grant.
    order_id = second["order"]["id"]
    clicks = await asyncio.gather(
        *(
            payments.http.post(
                f"{API}/orders/{order_id}/pay",
                json={"payment_method_id": card["id"]},
                headers=headers,
            )
            for _ in range(2)
        )
    )
    assert [c.json()["status"] for c in clicks] == ["paid", "paid"], [c.text for c in clicks]
    assert len(await payments.payment_intents_of(order_id)) == 1
    paid_ids = [e["order_id"] for e in await payments.outbox_events("payments.order_paid.v1")]
    assert sorted(paid_ids) == sorted([first["order"]["id"], order_id])

    # The card is the buyer's only: not offered to an anonymous buyer with the same
    # email, and not usable on someone else's order.
    anonymous = await payments.created_order(
        shop.paid["id"], name="Not Kim", email="kim@example.com"
    )
    assert anonymous["cards"] == []
    stolen = await payments.pay(anonymous, card["id"])
    assert stolen.status_code == 422, stolen.text
    assert (await payments.get(anonymous))["status"] == "pending"


async def test_only_the_buyer_reads_an_order_and_only_its_coach_lists_it(
    payments: Payments, shop: Shop
) -> None:
    created = await payments.created_order(shop.free["id"])
    order_id = created["order"]["id"]
    assert (await payments.get(created))["id"] == order_id
    for params in ({}, {"access_token": "wrong"}):
        response = await payments.http.get(f"{API}/orders/{order_id}", params=params)
        assert response.status_code == 404
    someone = payments.catalog.person()
    as_someone = await payments.http.get(f"{API}/orders/{order_id}", headers=someone.headers)
    assert as_someone.status_code == 404

    listed = await payments.http.get(
        f"{API}/businesses/{shop.business.id}/orders", headers=shop.business.coach
    )
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == [order_id]
    assert listed.json()["total"] == 1

    other = await payments.catalog.business("Other Studio")
    for url, headers in (
        (f"{API}/businesses/{shop.business.id}/orders", other.coach),
        (f"{API}/businesses/{shop.business.id}/orders", someone.headers),
    ):
        response = await payments.http.get(url, headers=headers)
        assert response.status_code == 404, response.text
    mine = await payments.http.get(f"{API}/businesses/{other.id}/orders", headers=other.coach)
    assert mine.json()["items"] == []


async def test_three_d_secure_then_refresh(payments: Payments, shop: Shop) -> None:
    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], THREE_D_SECURE_CARD
    )
    answer = await payments.pay(created, payment_method)
    assert answer.json()["status"] == "requires_action", answer.text
    secret = answer.json()["client_secret"]
    assert secret
    await payments.stripe.authenticate(secret)
    refreshed = await payments.http.post(
        f"{API}/orders/{created['order']['id']}/refresh",
        params={"access_token": created["access_token"]},
    )
    assert refreshed.json()["status"] == "paid", refreshed.text
    assert refreshed.json()["client_secret"] is None
    assert len(await payments.outbox_events("payments.order_paid.v1")) == 1


async def test_an_appointment_order_carries_its_request_and_only_such_an_order_may(
    payments: Payments, shop: Shop
) -> None:
    catalog = payments.catalog
    session = await catalog.published_offering(
        shop.business,
        name="Intro session",
        kind="appointment",
        details={"duration_minutes": 45},
        billing={"type": "free"},
        price_minor=0,
    )
    appointment_id = str(uuid.uuid4())
    created = await payments.created_order(session["id"], appointment_id=appointment_id)
    assert created["order"]["appointment_id"] == appointment_id
    [paid] = await payments.outbox_events("payments.order_paid.v1")
    assert paid["appointment_id"] == appointment_id

    refused = await payments.order(shop.paid["id"], appointment_id=appointment_id)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "appointment_id"
    assert (await payments.counts())["orders"] == 1
