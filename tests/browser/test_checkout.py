"""Buying from the storefront in a real browser: Stripe.js (localstripe's), the payment
step, processing and confirmation, the receipt, the account a purchase makes, saved
cards for a logged-in client, and a declined card."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_catalog import api_signup, wait_until
from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser
PASSWORD = "a sturdy passphrase for tests"
OK_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"
THREE_D_SECURE_CARD = "4000002500003155"


def publish(
    system: SystemStack, coach: dict[str, Any], name: str, price_minor: int, **fields: Any
) -> str:
    headers = {"Authorization": f"Bearer {coach['access_token']}"}
    base = f"{system.gateway_url}/api/v1/catalog/businesses/{coach['business']['id']}/offerings"
    body = {
        "name": name,
        "description": f"{name}, to buy online.",
        "kind": "package",
        "details": {"includes": ["Everything"]},
        "billing": {"type": "one_time"},
        "price_minor": price_minor,
        "currency": "USD",
        "visibility": "public",
        **fields,
    }
    created = wait_until(
        lambda: (r := httpx.post(base, json=body, headers=headers)).status_code == 201 and r
    )
    offering_id = str(created.json()["id"])
    published = httpx.post(f"{base}/{offering_id}/publish", headers=headers)
    assert published.status_code == 200, published.text
    return offering_id


def clients_with(system: SystemStack, coach: dict[str, Any], email: str) -> list[dict[str, Any]]:
    found = httpx.get(
        f"{system.gateway_url}/api/v1/clients/businesses/{coach['business']['id']}/clients",
        params={"q": email, "status": "all"},
        headers={"Authorization": f"Bearer {coach['access_token']}"},
    )
    assert found.status_code == 200, found.text
    return [c for c in found.json()["items"] if c["email"] == email]


def orders_of(system: SystemStack, coach: dict[str, Any]) -> list[dict[str, Any]]:
    found = httpx.get(
        f"{system.gateway_url}/api/v1/payments/businesses/{coach['business']['id']}/orders",
        headers={"Authorization": f"Bearer {coach['access_token']}"},
    )
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


def open_offering_from_packages(page: Page, system: SystemStack, slug: str, name: str) -> None:
    page.goto(f"{system.gateway_url}/b/{slug}")
    buy = page.get_by_role("link", name=f"Buy {name}")
    if not buy.is_visible():  # the catalog hears of the business and offering by event
        wait_until(lambda: page.reload() and buy.is_visible())
    buy.click()
    expect(page.get_by_role("heading", name="Checkout")).to_be_visible()


def enter_card(page: Page, number: str) -> None:
    # localstripe's Stripe.js double renders plain inputs (real Stripe.js: an iframe).
    card = page.get_by_test_id("card-element")
    expect(card.locator("input")).to_have_count(5)
    card.locator('input[placeholder="number"]').fill(number)
    card.locator('input[placeholder="exp_month"]').fill("12")
    card.locator('input[placeholder="exp_year"]').fill("34")
    card.locator('input[placeholder="cvc"]').fill("123")
    card.locator('input[placeholder="postal_code"]').fill("12345")


def buy_anonymously(page: Page, name: str, email: str, card: str) -> None:
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Payment")).to_be_visible()
    enter_card(page, card)
    page.get_by_role("button", name="Pay $", exact=False).last.click()


def test_buying_with_a_card_saved_cards_and_a_declined_card(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    business = f"Pine Coaching {run}"
    coach = api_signup(system, "Pat Pine", f"coach-{run}@example.com", business)
    slug = coach["business"]["slug"]
    publish(system, coach, "Starter package", 4500)
    publish(
        system,
        coach,
        "Five sessions",
        20000,
        kind="engagement",
        details={"credits": 5, "credit_expiry_days": 90},
    )

    # -- an anonymous visitor buys the package with a good card ---------------------------------
    buyer = f"ada-{run}@example.com"
    context = browser.new_context()
    page = context.new_page()
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_offering_from_packages(page, system, slug, "Starter package")
    expect(page.get_by_text("One-time payment")).to_be_visible()
    buy_anonymously(page, "Ada Buyer", buyer, OK_CARD)
    expect(page.get_by_role("heading", name="Thank you, Ada Buyer!")).to_be_visible(timeout=20000)
    assert page.url.startswith(f"{base}/orders/")
    assert any("/processing" in url for url in visited), "the page waited for payments"
    expect(page.get_by_test_id("confirmation")).to_contain_text("Starter package")
    expect(page.get_by_text("$45.00")).to_be_visible()
    assert not errors, errors

    [receipt] = mail.wait_for(buyer, f"Your receipt from {business}")
    assert "Starter package" in receipt["subject"]
    assert "$45.00" in receipt["text"]
    wait_until(lambda: clients_with(system, coach, buyer))
    [client] = clients_with(system, coach, buyer)
    assert client["name"] == "Ada Buyer" and client["source"] == "purchased"

    # -- the same email buys again, logged out: the same account --------------------------------
    again = browser.new_context().new_page()
    open_offering_from_packages(again, system, slug, "Five sessions")
    buy_anonymously(again, "Ada Buyer", buyer, OK_CARD)
    expect(again.get_by_role("heading", name="Thank you, Ada Buyer!")).to_be_visible(timeout=20000)
    mail.wait_for(buyer, f"Your receipt from {business}", count=2)
    assert len(clients_with(system, coach, buyer)) == 1

    # -- the buyer claims the account from the email and sees what they bought -----------------
    [claim] = mail.wait_for(buyer, "password")
    link = mail.link(claim, "/claim?token=")
    page.goto(link)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password and log in").click()
    expect(page).to_have_url(f"{base}/home")
    purchases = page.get_by_test_id("purchases")
    expect(purchases).to_contain_text(business)
    expect(purchases).to_contain_text("Starter package")

    def credits_shown() -> bool:
        page.reload()
        return "5 of 5 left" in (purchases.text_content() or "")

    wait_until(credits_shown)

    # -- logged in: no name/email step, the saved card in one click -----------------------------
    open_offering_from_packages(page, system, slug, "Starter package")
    expect(page.get_by_test_id("buyer")).to_contain_text("Buying as Ada Buyer")
    expect(page.get_by_label("Email")).to_have_count(0)
    page.get_by_role("button", name="Continue to payment").click()
    saved = page.get_by_role("button", name="Pay $45.00 with Visa •••• 4242")
    expect(saved).to_have_count(1)
    saved.click()
    expect(page.get_by_role("heading", name="Thank you, Ada Buyer!")).to_be_visible(timeout=20000)
    expect(page.get_by_role("link", name="Go to your home page")).to_be_visible()
    mail.wait_for(buyer, f"Your receipt from {business}", count=3)
    paid = [o for o in orders_of(system, coach) if o["buyer_email"] == buyer]
    assert sorted(o["status"] for o in paid) == ["paid", "paid", "paid"]
    context.close()

    # -- a card that is declined: a clear error, nothing granted, another card works ------------
    unlucky = f"dec-{run}@example.com"
    declined = browser.new_context().new_page()
    open_offering_from_packages(declined, system, slug, "Starter package")
    buy_anonymously(declined, "Dee Clined", unlucky, DECLINED_CARD)
    alert = declined.get_by_role("alert")
    expect(alert).to_contain_text("declined", timeout=20000)
    expect(alert).to_contain_text("Nothing was charged")
    retry = declined.get_by_role("button", name="Try again with another card")
    expect(retry).to_be_visible()
    expect(declined.get_by_role("button", name="Pay $45.00")).to_be_hidden()
    [failed] = [o for o in orders_of(system, coach) if o["buyer_email"] == unlucky]
    assert failed["status"] == "failed"
    time.sleep(2)  # a grant would be on its way by now
    assert clients_with(system, coach, unlucky) == []
    assert mail.messages(unlucky) == []

    retry.click()
    expect(declined.get_by_role("heading", name="Payment")).to_be_visible()
    enter_card(declined, OK_CARD)
    declined.get_by_role("button", name="Pay $45.00").click()
    expect(declined.get_by_role("heading", name="Thank you, Dee Clined!")).to_be_visible(
        timeout=20000
    )
    statuses = sorted(o["status"] for o in orders_of(system, coach) if o["buyer_email"] == unlucky)
    assert statuses == ["failed", "paid"]


def test_a_card_that_needs_3d_secure_is_confirmed_in_the_page(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    business = f"Secure Coaching {run}"
    coach = api_signup(system, "Sam Secure", f"coach3ds-{run}@example.com", business)
    publish(system, coach, "Careful package", 9900)
    buyer = f"tds-{run}@example.com"
    page = browser.new_context().new_page()
    open_offering_from_packages(page, system, coach["business"]["slug"], "Careful package")
    buy_anonymously(page, "Tess Dee", buyer, THREE_D_SECURE_CARD)
    # localstripe's stand-in for the bank's page: once for the card, once for the payment.
    for _ in range(2):
        page.get_by_role("button", name="Complete authentication").click(timeout=20000)
    expect(page.get_by_role("heading", name="Thank you, Tess Dee!")).to_be_visible(timeout=20000)
    mail.wait_for(buyer, f"Your receipt from {business}")
    [order] = [o for o in orders_of(system, coach) if o["buyer_email"] == buyer]
    assert order["status"] == "paid" and order["amount_minor"] == 9900
