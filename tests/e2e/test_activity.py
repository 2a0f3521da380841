"""The coach's Activity page through the gateway, against every real process and
localstripe: a paid order appears, the Refund dialog refunds it (once, with errors
shown next to the fields), the buyer gets the refund email, and their /home shows
the access revoked."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.test_catalog import browser_for, eventually, new_coach, offering
from tests.e2e.test_checkout import PAYMENTS, checkout_form
from tests.e2e.test_gateway import PASSWORD, csrf_from, unique_email
from tests.support.stack import MailSink, SystemStack

CARD = "4242424242424242"


def paid_order(system: SystemStack, http: httpx.Client, offering_id: str, email: str) -> str:
    """An order paid by card, as the checkout page and Stripe.js do it (localstripe)."""
    created = http.post(
        f"{PAYMENTS}/orders",
        json={"offering_id": offering_id, "name": "Ada Buyer", "email": email},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["stripe"]["client_secret"]
    setup_intent = secret.split("_secret_", 1)[0]
    confirmed = httpx.post(
        f"{system.stripe_url}/v1/setup_intents/{setup_intent}/confirm",
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
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", (
        confirmed.text
    )
    order_id = str(body["order"]["id"])
    paid = http.post(
        f"{PAYMENTS}/orders/{order_id}/pay",
        params={"access_token": body["access_token"]},
        json={"payment_method_id": confirmed.json()["payment_method"]},
    )
    assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
    return order_id


def refund_form(page: str, order_id: str) -> dict[str, str]:
    """The hidden fields of one order's Refund dialog."""
    match = re.search(
        rf'<form class="form" method="post" action="[^"]*/orders/{order_id}/refund".*?</form>',
        page,
        re.S,
    )
    assert match, "the paid order has a Refund form"
    form = match.group(0)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    return {k: html.unescape(v) for k, v in fields.items()}


def feed(http: httpx.Client, business_id: str, headers: dict[str, str]) -> dict[str, Any]:
    answer = http.get(f"{PAYMENTS}/businesses/{business_id}/activity", headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_coach_refunds_a_paid_order_from_the_activity_page(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    coach = new_coach(http, f"Refund Studio {uuid.uuid4().hex[:4]}")
    item = offering(http, coach, "Private session")
    checkout_form(http, coach, item["id"])  # the storefront knows the offering
    buyer = unique_email("refund-buyer")
    order_id = paid_order(system, http, item["id"], buyer)
    mail.wait_for(buyer, "receipt")

    with browser_for(system, coach.email) as browser:
        base = f"/businesses/{coach.business_id}"
        page = browser.get(f"{base}/activity")
        assert page.status_code == 200, page.text
        assert 'aria-current="page"' in page.text and ">Activity</a>" in page.text
        assert "Private session" in page.text and buyer in page.text
        assert "$120.00" in page.text
        fields = refund_form(page.text, order_id)
        assert fields["csrf_token"] == csrf_from(page.text)
        action = f"{base}/orders/{order_id}/refund"

        # Errors are shown next to the field, in the open dialog; nothing is refunded.
        bad = browser.post(action, data={**fields, "amount": "twelve"})
        assert bad.status_code == 422, bad.text
        assert f'id="refund-{order_id}-amount-error"' in bad.text
        assert "Enter an amount such as 20" in bad.text
        assert re.search(rf'<dialog[^>]*id="refund-{order_id}"[^>]*open', bad.text)
        too_much = browser.post(action, data={**fields, "amount": "500"})
        assert too_much.status_code == 422, too_much.text
        assert f'id="refund-{order_id}-amount-error"' in too_much.text
        assert "$120.00" in html.unescape(too_much.text)
        forged = browser.post(action, data={**fields, "csrf_token": "nope"})
        assert forged.status_code == 403
        kinds = [e["kind"] for e in feed(http, coach.business_id, coach.headers)["items"]]
        assert kinds == ["purchase"]

        # The refund, in full, revoking access; the same form twice refunds once.
        form = {**fields, "amount": "120.00", "revoke_access": "on", "reason": "Cancelled"}
        done = browser.post(action, data=form)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{base}/activity"
        again = browser.post(action, data=form)
        assert again.status_code == 303, again.text

        after = browser.get(f"{base}/activity")
        assert "The refund was issued." in after.text
        assert "Cancelled" in after.text and "access revoked" in after.text
        assert f"/orders/{order_id}/refund" not in after.text  # nothing left to refund
        filtered = browser.get(f"{base}/activity", params={"kind": "refund", "period": "day"})
        assert filtered.status_code == 200
        assert 'data-kind="purchase"' not in filtered.text
        assert 'data-kind="refund"' in filtered.text
        assert 'data-testid="totals"' in filtered.text

    items = feed(http, coach.business_id, coach.headers)["items"]
    assert [(e["kind"], e["amount_minor"]) for e in items] == [
        ("refund", 12000),
        ("purchase", 12000),
    ]
    assert items[1]["status"] == "refunded"
    [refund_email] = mail.wait_for(buyer, "Your refund from")
    assert refund_email["subject"] == f"Your refund from {coach.name}: $120.00"

    # The buyer claims the account the purchase made and sees the access revoked.
    [claim] = mail.wait_for(buyer, "password")
    link = mail.link(claim, "/claim?token=")
    token = link.split("token=", 1)[1]
    with httpx.Client(base_url=system.gateway_url, timeout=20) as buyer_browser:
        page = buyer_browser.get(f"/claim?token={token}")
        claimed = buyer_browser.post(
            "/claim",
            data={"csrf_token": csrf_from(page.text), "token": token, "password": PASSWORD},
        )
        assert claimed.status_code == 303, claimed.text

        def revoked_on_home() -> bool:
            home = buyer_browser.get("/home").text
            return "Private session" in home and "Revoked" in home

        eventually(revoked_on_home, what="the client's home shows the access revoked")
    # One refund email, however many times the form was posted.
    assert len(mail.wait_for(buyer, "Your refund from")) == 1


def test_another_coach_gets_404_for_the_activity_page_and_the_refund(
    system: SystemStack, http: httpx.Client
) -> None:
    owner = new_coach(http, f"Owner {uuid.uuid4().hex[:4]}")
    other = new_coach(http, f"Other {uuid.uuid4().hex[:4]}")
    with browser_for(system, other.email) as browser:
        page = browser.get(f"/businesses/{owner.business_id}/activity")
        assert page.status_code == 404
    api = http.get(f"{PAYMENTS}/businesses/{owner.business_id}/activity", headers=other.headers)
    assert api.status_code == 404


@pytest.fixture(autouse=True)
def _payments_running(system: SystemStack) -> None:
    assert "payments-api" in system.procs and "localstripe" in system.procs
