"""The Billing pages through the gateway, against every real process and localstripe:
/billing needs a login, a subscription's new-card page and its actions are only for
its buyer (or the holder of the email's token), and only that page may load Stripe.js."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.test_catalog import browser_for, eventually, new_coach, offering
from tests.e2e.test_checkout import PAYMENTS
from tests.e2e.test_gateway import csrf_from, signup, unique_email
from tests.support.stack import SystemStack

CARD = "4242424242424242"
MONTHLY = {"type": "recurring", "interval": "month", "interval_count": 1}


def update_card_token(system: SystemStack, subscription_id: str) -> str:
    """The token of the failed-payment email's link (payments derives it from the secret)."""
    from payments.subscriptions.settlement import subscription_token

    return subscription_token(system.env["SECRET_KEY"], uuid.UUID(subscription_id))


def subscribed(system: SystemStack, http: httpx.Client, offering_id: str, email: str) -> str:
    """A paid subscription, as the checkout page and Stripe.js make it; its id."""
    created = eventually(
        lambda: (
            (
                r := http.post(
                    f"{PAYMENTS}/orders",
                    json={"offering_id": offering_id, "name": "Sam Sub", "email": email},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
            ).status_code
            != 404
            and r
        ),
        what="payments can quote the offering",
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["stripe"]["client_secret"]
    confirmed = httpx.post(
        f"{system.stripe_url}/v1/setup_intents/{secret.split('_secret_', 1)[0]}/confirm",
        data={
            "key": body["stripe"]["publishable_key"],
            "client_secret": secret,
            "use_stripe_sdk": "true",
            "payment_method_data[type]": "card",
            "payment_method_data[card][number]": CARD,
            "payment_method_data[card][exp_month]": "12",
            "payment_method_data[card][exp_year]": "2034",
            "payment_method_data[card][cvc]": "123",
        },
        timeout=20,
    )
    assert confirmed.status_code == 200, confirmed.text
    order_id = str(body["order"]["id"])
    paid = http.post(
        f"{PAYMENTS}/orders/{order_id}/pay",
        params={"access_token": body["access_token"]},
        json={"payment_method_id": confirmed.json()["payment_method"]},
    )
    assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
    order: dict[str, Any] = paid.json()
    order = order.get("order", order)
    assert order["subscription_id"], order
    return str(order["subscription_id"])


def test_billing_requires_login(system: SystemStack, http: httpx.Client) -> None:
    answer = http.get("/billing")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/billing"
    assert http.get(f"{PAYMENTS}/me/billing").status_code == 401

    email = unique_email("billing-empty")
    signup(http, email, business_name=f"Empty Billing {uuid.uuid4().hex[:4]}")
    with browser_for(system, email) as client:
        page = client.get("/billing")
        assert page.status_code == 200
        assert "Nothing here yet" in page.text
        # The strict policy: the Billing page loads no Stripe.js.
        assert system.stripe_url not in page.headers["content-security-policy"]
        assert 'href="/billing"' in client.get("/home").text


def test_another_clients_subscription_is_404_without_the_right_token(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Sub Guard {uuid.uuid4().hex[:4]}")
    item = offering(
        http, coach, "Monthly check-in", billing=MONTHLY, price_minor=5000, currency="eur"
    )
    buyer = unique_email("sub-buyer")
    subscription_id = subscribed(system, http, item["id"], buyer)
    path = f"/billing/subscriptions/{subscription_id}/card"
    token = update_card_token(system, subscription_id)

    # Without a login or a token: log in first, and come back here.
    anonymous = http.get(path)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/login?next={path}"

    other = unique_email("sub-other")
    signup(http, other, business_name=f"Other Client {uuid.uuid4().hex[:4]}")
    with browser_for(system, other) as client:
        assert client.get(path).status_code == 404
        assert client.get(path, params={"token": "not-the-token"}).status_code == 404
        assert client.get(path, params={"token": token[:-2] + "xx"}).status_code == 404
        assert client.get(path, params={"token": "x" * 1000}).status_code == 404
        assert client.get(f"/billing/subscriptions/{uuid.uuid4()}/card").status_code == 404
        page = client.get("/billing")
        assert page.status_code == 200 and "Monthly check-in" not in page.text
        # Nor can they act on it through the pages.
        csrf = csrf_from(page.text)
        refused = client.post(
            f"/billing/subscriptions/{subscription_id}/cancel", data={"csrf_token": csrf}
        )
        assert refused.status_code == 404
        for action in ("/card/setup", "/card"):
            refused = client.post(
                f"/billing/subscriptions/{subscription_id}{action}",
                data={"csrf_token": csrf, "payment_method_id": "pm_x"},
                headers={"Accept": "application/json"},
            )
            assert refused.status_code == 404, (action, refused.text)
        # Without the CSRF token nothing is even asked.
        no_csrf = client.post(
            f"{path}/setup", data={"token": token}, headers={"Accept": "application/json"}
        )
        assert no_csrf.status_code == 403

    # The right token opens it for anyone, with Stripe.js allowed on this page only.
    with httpx.Client(base_url=system.gateway_url, timeout=20) as holder:
        page = holder.get(path, params={"token": token})
        assert page.status_code == 200, page.text
        assert "Monthly check-in" in page.text and "€50.00" in page.text
        csp = page.headers["content-security-policy"]
        assert f"script-src 'self' {system.stripe_url}" in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "x-clientele-stripe" not in page.headers
        setup = holder.post(
            f"{path}/setup",
            data={"csrf_token": csrf_from(page.text), "token": token},
            headers={"Accept": "application/json"},
        )
        assert setup.status_code == 200, setup.text
        assert setup.json()["client_secret"] and setup.json()["publishable_key"]
        # A token is never enough to cancel: that takes the buyer's login.
        cancel = holder.post(
            f"/billing/subscriptions/{subscription_id}/cancel",
            data={"csrf_token": csrf_from(page.text), "token": token},
        )
        assert cancel.status_code == 303 and cancel.headers["location"].startswith("/login")

    answer = http.get(f"{PAYMENTS}/subscriptions/{subscription_id}", params={"token": token})
    assert answer.status_code == 200 and answer.json()["cancel_at_period_end"] is False


@pytest.fixture(autouse=True)
def _payments_running(system: SystemStack) -> None:
    assert "payments-api" in system.procs and "localstripe" in system.procs
