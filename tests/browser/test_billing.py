"""Subscriptions and payment plans in a real browser: buying a monthly subscription with
Stripe.js (localstripe's), the client's home and Billing page (cards, subscriptions,
next billing date, installments), canceling at period end, a payment plan that cannot
be canceled, and a new card given on the page the failed-payment email links to."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_catalog import PASSWORD, api_signup
from tests.browser.test_checkout import enter_card, open_offering_from_packages, publish
from tests.e2e.test_billing import subscribed
from tests.e2e.test_checkout import signed
from tests.support import infra
from tests.support.localstripe import API_KEY, DECLINED_CARD
from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser
OK_CARD = "4242424242424242"
NEW_CARD = "5555555555554444"
MONTHLY = {"type": "recurring", "interval": "month", "interval_count": 1}
PLAN = {"type": "payment_plan", "installments": 3, "interval": "month", "interval_count": 1}
DAY = re.compile(r"\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) 20\d\d")


def update_card_token(system: SystemStack, subscription_id: str) -> str:
    """The token of the failed-payment email's link (payments derives it from the secret)."""
    from payments.subscriptions.settlement import subscription_token

    return subscription_token(system.env["SECRET_KEY"], uuid.UUID(subscription_id))


def my_billing(system: SystemStack, email: str) -> dict[str, Any]:
    session = httpx.post(
        f"{system.gateway_url}/api/v1/clients/sessions",
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": f"10.8.{uuid.uuid4().int % 250}.1"},
    )
    assert session.status_code in (200, 201), session.text
    token = session.json()["access_token"]
    answer = httpx.get(
        f"{system.gateway_url}/api/v1/payments/me/billing",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _stripe_ids(system: SystemStack, subscription_id: str) -> tuple[str, str]:
    conn = await asyncpg.connect(infra._asyncpg_dsn(system.env["PAYMENTS_DATABASE_URL"]))
    try:
        row = await conn.fetchrow(
            "SELECT s.stripe_subscription_id, o.stripe_customer_id FROM subscriptions s "
            "JOIN orders o ON o.id = s.order_id WHERE s.id = $1",
            uuid.UUID(subscription_id),
        )
    finally:
        await conn.close()
    assert row is not None
    return str(row[0]), str(row[1])


def fail_a_renewal(system: SystemStack, subscription_id: str) -> None:
    """A renewal Stripe cannot charge: the customer's card now declines, an invoice is
    made and charged, and Stripe's ``invoice.payment_failed`` reaches the gateway's webhook."""
    stripe_subscription, customer = infra.run(_stripe_ids(system, subscription_id))
    with httpx.Client(base_url=system.stripe_url, auth=(API_KEY, ""), timeout=20) as stripe:
        card = stripe.post(
            "/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": DECLINED_CARD,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        assert card.status_code == 200, card.text
        declining = card.json()["id"]
        attached = stripe.post(
            f"/v1/payment_methods/{declining}/attach", data={"customer": customer}
        )
        assert attached.status_code == 200, attached.text
        updated = stripe.post(
            f"/v1/customers/{customer}",
            data={"invoice_settings[default_payment_method]": declining},
        )
        assert updated.status_code == 200, updated.text
        made = stripe.post(
            "/v1/invoices", data={"customer": customer, "subscription": stripe_subscription}
        )
        assert made.status_code == 200, made.text
        charged = stripe.post(f"/v1/invoices/{made.json()['id']}/pay")
        assert charged.status_code in (200, 402), charged.text
        invoice = stripe.get(f"/v1/invoices/{made.json()['id']}").json()
    assert invoice["status"] == "open", invoice
    # localstripe sends no webhook for a failed /pay: Stripe's event, signed as Stripe does.
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:20]}",
            "object": "event",
            "type": "invoice.payment_failed",
            "created": int(time.time()),
            "livemode": False,
            "api_version": "2020-08-27",
            "data": {"object": invoice},
        }
    ).encode()
    delivered = httpx.post(
        f"{system.gateway_url}/webhooks/stripe",
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signed(payload, system.webhook_secret),
        },
    )
    assert delivered.status_code == 200, delivered.text


def subscription_item(page: Page, name: str) -> Any:
    return page.get_by_test_id("subscription").filter(
        has=page.get_by_role("heading", name=name, exact=True)
    )


def test_subscribe_see_billing_cancel_and_give_a_new_card(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    business = f"Orbit Coaching {run}"
    coach = api_signup(system, "Olga Orbit", f"coach-sub-{run}@example.com", business)
    slug = coach["business"]["slug"]
    publish(system, coach, "Monthly coaching", 5000, currency="EUR", billing=MONTHLY)
    publish(system, coach, "Course in three", 10000, currency="EUR", billing=PLAN)

    # -- an anonymous visitor subscribes with a good card ---------------------------------------
    buyer = f"sue-{run}@example.com"
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_offering_from_packages(page, system, slug, "Monthly coaching")
    expect(page.get_by_test_id("charge")).to_have_text("€50.00 every month")
    page.get_by_label("Your name").fill("Sue Scriber")
    page.get_by_label("Email").fill(buyer)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Payment")).to_be_visible()
    expect(page.get_by_test_id("total")).to_have_text("€50.00 every month")
    expect(page.get_by_test_id("terms")).to_contain_text("until you cancel")
    enter_card(page, OK_CARD)
    page.get_by_role("button", name="Pay €50.00").click()
    expect(page.get_by_role("heading", name="Thank you, Sue Scriber!")).to_be_visible(timeout=20000)
    expect(page.get_by_test_id("subscription")).to_contain_text("Subscription active")
    expect(page.get_by_test_id("billing")).to_contain_text("€50.00")
    assert not errors, errors

    # -- the buyer claims the account and finds the subscription on the home page --------------
    [claim] = mail.wait_for(buyer, "password")
    page.goto(mail.link(claim, "/claim?token="))
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password and log in").click()
    expect(page).to_have_url(f"{base}/home")
    on_home = page.get_by_test_id("subscriptions")
    expect(on_home).to_contain_text("Monthly coaching")
    expect(on_home).to_contain_text("Active")
    expect(on_home).to_contain_text("next billing date")

    # -- the Billing page: the card, the subscription, its next billing date --------------------
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    expect(page).to_have_url(f"{base}/billing")
    expect(page.get_by_role("heading", name=business)).to_be_visible()
    expect(page.get_by_test_id("saved-card")).to_contain_text("•••• 4242")
    expect(page.get_by_test_id("saved-card")).to_contain_text("expires 12/34")
    monthly = subscription_item(page, "Monthly coaching")
    expect(monthly.get_by_test_id("subscription-status")).to_have_text("Active")
    expect(monthly.get_by_test_id("next-charge")).to_have_text(DAY)
    expect(monthly.get_by_test_id("subscription-card")).to_contain_text("•••• 4242")
    [subscription] = my_billing(system, buyer)["subscriptions"]
    assert subscription["status"] == "active" and subscription["next_charge_at"]

    # -- logged in, the payment plan with the saved card in one click ---------------------------
    open_offering_from_packages(page, system, slug, "Course in three")
    expect(page.get_by_test_id("charge")).to_have_text(
        "€100.00 today, then 2 more monthly installments"
    )
    page.get_by_role("button", name="Continue to payment").click()
    page.get_by_role("button", name="Pay €100.00 with Visa •••• 4242").click()
    expect(page.get_by_role("heading", name="Thank you, Sue Scriber!")).to_be_visible(timeout=20000)
    confirmation = page.get_by_test_id("subscription")
    expect(confirmation).to_contain_text("Payment plan active — next installment on")
    expect(confirmation).to_contain_text(DAY)

    page.goto(f"{base}/billing")
    plan = subscription_item(page, "Course in three")
    expect(plan.get_by_test_id("installments")).to_have_text("1 of 3 paid")
    expect(plan.get_by_test_id("next-charge")).to_have_text(DAY)
    expect(plan.get_by_role("button", name=re.compile("Cancel at period end"))).to_have_count(0)
    expect(plan.get_by_role("link", name=re.compile("Update card"))).to_be_visible()

    # -- the link of the failed-payment email: a new card without logging in --------------------
    subscription_id = subscription["id"]
    token = update_card_token(system, subscription_id)
    stranger = browser.new_context().new_page()
    stranger.on("pageerror", lambda error: errors.append(str(error)))
    stranger.goto(f"{base}/billing/subscriptions/{subscription_id}/card?token={token}")
    expect(stranger.get_by_role("heading", name="Update card")).to_be_visible()
    expect(stranger.get_by_test_id("price")).to_contain_text("€50.00")
    expect(stranger.get_by_test_id("current-card")).to_contain_text("•••• 4242")
    enter_card(stranger, NEW_CARD)
    save = stranger.get_by_role("button", name="Save card")
    expect(save).to_be_enabled()
    save.click()
    expect(stranger.get_by_role("status").filter(has_text="Card updated")).to_be_visible(
        timeout=20000
    )
    expect(stranger.get_by_test_id("current-card")).to_contain_text("•••• 4444")
    expect(stranger.get_by_test_id("subscription-status")).to_have_text("Active")
    assert not errors, errors

    page.goto(f"{base}/billing")
    monthly = subscription_item(page, "Monthly coaching")
    expect(monthly.get_by_test_id("subscription-card")).to_contain_text("•••• 4444")
    expect(page.get_by_test_id("saved-card").filter(has_text="•••• 4444")).to_have_count(1)

    # -- cancel at period end: the page says when it ends ---------------------------------------
    page.once("dialog", lambda dialog: dialog.accept())
    monthly.get_by_role("button", name=re.compile("Cancel at period end")).click()
    expect(page).to_have_url(f"{base}/billing")
    expect(page.get_by_role("status")).to_contain_text("Your subscription is canceled")
    monthly = subscription_item(page, "Monthly coaching")
    expect(monthly.get_by_test_id("subscription-status")).to_have_text(
        re.compile(rf"^Ends on {DAY.pattern}$")
    )
    expect(monthly.get_by_role("button", name=re.compile("Cancel at period end"))).to_have_count(0)
    expect(monthly.get_by_test_id("next-charge")).to_have_count(0)
    mine = {s["offering_name"]: s for s in my_billing(system, buyer)["subscriptions"]}
    assert mine["Monthly coaching"]["cancel_at_period_end"] is True
    assert mine["Course in three"]["cancel_at_period_end"] is False

    # -- the home page shows it too ---------------------------------------------------------------
    page.goto(f"{base}/home")
    expect(page.get_by_test_id("subscriptions")).to_contain_text("Ends on")
    context.close()


def test_billing_needs_a_login_and_comes_back_after_it(
    system: SystemStack, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    email = f"nobill-{run}@example.com"
    api_signup(system, "Nora Nobill", email, f"Nobill {run}")
    page = browser.new_context().new_page()
    page.goto(f"{system.gateway_url}/billing")
    expect(page).to_have_url(re.compile(r"/login\?next=/billing$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{system.gateway_url}/billing")
    expect(page.get_by_role("heading", name="Nothing here yet")).to_be_visible()


def test_a_past_due_subscription_is_paid_with_a_new_card_from_the_email(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    coach = api_signup(system, "Dana Due", f"coach-due-{run}@example.com", f"Due Studio {run}")
    offering_id = publish(system, coach, "Weekly call", 2500, currency="EUR", billing=MONTHLY)
    buyer = f"late-{run}@example.com"
    with httpx.Client(base_url=system.gateway_url, timeout=20) as http:
        subscription_id = subscribed(system, http, offering_id, buyer)

    fail_a_renewal(system, subscription_id)
    [email] = mail.wait_for(buyer, "did not go through", timeout=60)
    link = mail.link(email, f"/billing/subscriptions/{subscription_id}/card?token=")

    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(link)
    expect(page.get_by_test_id("subscription-status")).to_have_text("Past due")
    expect(page.get_by_text("did not go through. Give a card that works")).to_be_visible()
    enter_card(page, NEW_CARD)
    pay = page.get_by_role("button", name="Save card and pay €25.00")
    expect(pay).to_be_enabled()
    pay.click()
    done = page.get_by_role("status").filter(has_text="Card updated")
    expect(done).to_contain_text("Your payment went through", timeout=20000)
    expect(page.get_by_test_id("subscription-status")).to_have_text("Active")
    expect(page.get_by_test_id("current-card")).to_contain_text("•••• 4444")
    assert not errors, errors
