"""A coach signs up, logs out, logs back in with an emailed link, and sees the account page."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser


def test_signup_logout_magic_link_login_account_page(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    address = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    page = browser.new_page()
    page.goto(system.gateway_url)
    page.get_by_role("link", name="Sign up").first.click()

    page.get_by_label("Your name").fill("Avery Browser")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password", exact=True).fill("a sturdy passphrase for avery")
    page.get_by_label("Business name").fill("Avery Wellness")
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url(f"{system.gateway_url}/account")
    expect(page.get_by_text("Avery Wellness", exact=True).first).to_be_visible()
    expect(page.get_by_text(address).first).to_be_visible()

    page.get_by_role("button", name="Log out").first.click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()

    page.goto(f"{system.gateway_url}/login")
    page.get_by_role("link", name="Email me a login link").click()
    page.get_by_label("Email").fill(address)
    page.get_by_role("button", name="Email me a login link").click()
    expect(page.get_by_text("Check your inbox")).to_be_visible()

    [message] = mail.wait_for(address, "log in")
    link = mail.link(message, "/login/magic/confirm?token=")
    page.goto(link)
    page.get_by_role("button", name="Log in to Clientele").click()

    expect(page).to_have_url(f"{system.gateway_url}/account")
    expect(page.get_by_text("Avery Wellness", exact=True).first).to_be_visible()
    expect(page.get_by_text("Owner").first).to_be_visible()

    # The coach sees what the business sent: the welcome email, delivered.
    page.get_by_role("link", name="Emails sent").first.click()
    expect(page.get_by_role("heading", name="Emails sent by Avery Wellness")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Welcome to Clientele")
    expect(row).to_contain_text(address)
    expect(row).to_contain_text("Sent")

    # The captured-mail page (dev mode) lists the welcome and the login emails.
    page.goto(f"{system.gateway_url}/dev/mail")
    expect(page.get_by_text(address).first).to_be_visible()
    page.close()
