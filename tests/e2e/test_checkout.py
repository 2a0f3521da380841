"""Checkout and payments through the gateway, against every real process and localstripe."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from devtools import stripe_driver
from tests.e2e.test_catalog import CLIENTS, Coach, eventually, new_coach, offering
from tests.e2e.test_gateway import csrf_from, unique_email
from tests.support import infra
from tests.support.stack import MailSink, SystemStack

PAYMENTS = "/api/v1/payments"


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name!r}"
    return match.group(1)


def checkout_form(http: httpx.Client, coach: Coach, offering_id: str) -> tuple[str, dict[str, str]]:
    path = f"/b/{coach.slug}/offerings/{offering_id}/checkout"
    page = eventually(
        lambda: (r := http.get(path)).status_code == 200 and r,
        what="the storefront knows the offering",
    )
    return path, {
        "csrf_token": csrf_from(page.text),
        "idempotency_key": hidden(page.text, "idempotency_key"),
    }


def signed(payload: bytes, secret: str, at: int | None = None) -> str:
    return stripe_driver.sign(payload, secret, at)


async def _stored_event(system: SystemStack, event_id: str) -> int:
    url = infra._asyncpg_dsn(system.env["PAYMENTS_DATABASE_URL"])
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM stripe_events WHERE stripe_event_id = $1", event_id
        )
        return count
    finally:
        await conn.close()


def clients_named(http: httpx.Client, coach: Coach, email: str) -> list[dict[str, Any]]:
    found = http.get(
        f"{CLIENTS}/businesses/{coach.business_id}/clients",
        params={"q": email, "status": "all"},
        headers=coach.headers,
    )
    assert found.status_code == 200, found.text
    return [c for c in found.json()["items"] if c["email"] == email]


# -- a free offering ------------------------------------------------------------------------


def test_free_offering_checkout_makes_one_order_client_and_receipt(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    coach = new_coach(http, f"Free Flow {uuid.uuid4().hex[:4]}")
    item = offering(http, coach, "Discovery call", billing={"type": "free"}, price_minor=0)
    path, fields = checkout_form(http, coach, item["id"])
    page = http.get(path)
    assert "Get it free" in page.text and 'name="email"' in page.text
    buyer = unique_email("free-buyer")
    form = {**fields, "name": "Fran Free", "email": buyer}

    done = http.post(path, data=form)
    assert done.status_code == 303, done.text
    order_path = done.headers["location"]
    assert re.fullmatch(r"/orders/[0-9a-f-]{36}", order_path)
    cookie = done.headers["set-cookie"]
    assert f"Path={order_path}" in cookie and "HttpOnly" in cookie
    # A double submit (same Idempotency-Key) finds the same order.
    again = http.post(path, data=form)
    assert again.status_code == 303 and again.headers["location"] == order_path

    confirmation = http.get(order_path)
    assert confirmation.status_code == 200
    assert "Thank you, Fran Free!" in confirmation.text and "Discovery call" in confirmation.text
    # Nobody else can read it: a fresh visitor without the order's cookie.
    with httpx.Client(base_url=system.gateway_url, timeout=20) as stranger:
        assert stranger.get(order_path).status_code == 404

    [receipt] = mail.wait_for(buyer, "receipt")
    assert coach.name in receipt["subject"] and "Discovery call" in receipt["subject"]
    mail.wait_for(buyer, "password")  # claim your account
    found = eventually(lambda: clients_named(http, coach, buyer), what="the buyer became a client")
    assert len(found) == 1 and found[0]["source"] == "purchased"


def test_refusals_of_the_catalog_are_shown_and_create_nothing(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Refusing {uuid.uuid4().hex[:4]}")
    item = offering(http, coach, "Paid session")
    path, fields = checkout_form(http, coach, item["id"])
    refused = http.post(
        path,
        data={**fields, "name": "Rita", "email": unique_email("r"), "discount_code": "NOPE"},
    )
    assert refused.status_code == 422
    assert "There is no such discount code." in refused.text
    assert 'name="idempotency_key"' in refused.text
    invalid = http.post(path, data={**fields, "name": "Rita", "email": "not-an-email"})
    assert invalid.status_code == 422 and 'aria-invalid="true"' in invalid.text
    orders = http.get(f"{PAYMENTS}/businesses/{coach.business_id}/orders", headers=coach.headers)
    assert orders.status_code == 200 and orders.json()["items"] == []


# -- the API refuses prices from the browser --------------------------------------------------


def test_price_fields_in_an_order_are_refused(system: SystemStack, http: httpx.Client) -> None:
    coach = new_coach(http, f"No Price Games {uuid.uuid4().hex[:4]}")
    item = offering(http, coach, "Coaching hour")
    eventually(
        lambda: http.get(f"/b/{coach.slug}/offerings/{item['id']}").status_code == 200,
        what="the storefront knows the offering",
    )
    base = {"offering_id": item["id"], "name": "Pat", "email": unique_email("p")}
    for extra in ({"price_minor": 1}, {"amount": 1}, {"amount_minor": 1}, {"currency": "JPY"}):
        answer = http.post(
            f"{PAYMENTS}/orders",
            json={**base, **extra},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert answer.status_code == 422, (extra, answer.text)
        [field] = extra
        assert any(field in str(e.get("field")) for e in answer.json()["errors"]), answer.text
    orders = http.get(f"{PAYMENTS}/businesses/{coach.business_id}/orders", headers=coach.headers)
    assert orders.json()["items"] == []

    # The real price, from the catalog, for the same body without the extra field.
    created = http.post(
        f"{PAYMENTS}/orders", json=base, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert created.status_code in (200, 201), created.text
    assert created.json()["order"]["amount_minor"] == 12000
    assert created.json()["stripe"]["js_url"] == system.env["PAYMENTS_STRIPE_JS_URL"]


# -- Stripe's webhooks, through the gateway ----------------------------------------------------


def test_stripe_webhook_through_the_gateway_reaches_payments(
    system: SystemStack, http: httpx.Client
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    # Bytes exactly as Stripe signs them (indented, key order its own): re-encoding breaks them.
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "customer.created",
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2020-08-27",
            "data": {"object": {"id": "cus_x", "object": "customer"}},
        },
        indent=2,
    ).encode()
    secret = system.webhook_secret

    forged = http.post(
        "/webhooks/stripe",
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signed(payload, "whsec_someone_else"),
        },
    )
    assert forged.status_code == 400, forged.text
    stale = http.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": signed(payload, secret, at=int(time.time()) - 3600)},
    )
    assert stale.status_code == 400
    unsigned = http.post("/webhooks/stripe", content=payload)
    assert unsigned.status_code == 400
    assert infra.run(_stored_event(system, event_id)) == 0

    # A session cookie and no CSRF token change nothing: the signature is the authority.
    good = http.post(
        "/webhooks/stripe",
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signed(payload, secret),
            "Cookie": "clientele_session=whatever",
        },
    )
    assert good.status_code == 200, good.text
    assert infra.run(_stored_event(system, event_id)) == 1
    twice = http.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": signed(payload, secret)}
    )
    assert twice.status_code == 200
    assert infra.run(_stored_event(system, event_id)) == 1

    assert http.get("/webhooks/stripe").status_code == 405
    too_big = http.post(
        "/webhooks/stripe",
        content=b"{" + b" " * 300_000 + b"}",
        headers={"Stripe-Signature": signed(b"{}", secret)},
    )
    assert too_big.status_code == 413


# -- the checkout page's security headers ------------------------------------------------------


def test_only_checkout_pages_may_load_stripe_js(system: SystemStack, http: httpx.Client) -> None:
    coach = new_coach(http, f"Csp Studio {uuid.uuid4().hex[:4]}")
    item = offering(http, coach, "Csp session")
    path, _ = checkout_form(http, coach, item["id"])
    stripe_origin = system.stripe_url
    csp = http.get(path).headers["content-security-policy"]
    assert f"script-src 'self' {stripe_origin}" in csp
    assert f"connect-src 'self' {stripe_origin}" in csp and f"frame-src {stripe_origin}" in csp
    assert "frame-ancestors 'none'" in csp
    assert "x-clientele-stripe" not in http.get(path).headers
    for other in (f"/b/{coach.slug}", f"/b/{coach.slug}/offerings/{item['id']}", "/login", "/"):
        policy = http.get(other).headers["content-security-policy"]
        assert stripe_origin not in policy, other


@pytest.fixture(autouse=True)
def _payments_running(system: SystemStack) -> None:
    assert "payments-api" in system.procs and "localstripe" in system.procs
