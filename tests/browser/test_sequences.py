"""A coach builds a sequence of two steps in the builder (adding and reordering steps with
plain form buttons), links it to a free offering and sees it listed; a visitor gets the
offering; the run status page shows the client's steps and the first step's email arrives."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_catalog import api_signup, log_in, wait_until
from tests.browser.test_checkout import publish
from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser


def test_the_coach_builds_a_sequence_and_sees_a_buyer_go_through_it(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    coach_email = f"coach-seq-{run}@example.com"
    coach = api_signup(system, "Sam Coach", coach_email, f"Sequence Studio {run}")
    business_id = coach["business"]["id"]
    slug = coach["business"]["slug"]
    offering_id = publish(
        system,
        coach,
        "Starter kit",
        0,
        billing={"type": "free"},
    )

    page = browser.new_context().new_page()
    page.goto(f"{base}/login")
    log_in(page, system, coach_email)
    expect(page).to_have_url(f"{base}/account")
    page.goto(f"{base}/businesses/{business_id}/clients")
    page.get_by_role("link", name="Sequences", exact=True).click()
    expect(page.get_by_role("heading", name="No sequences yet")).to_be_visible()
    page.get_by_role("link", name="New sequence").first.click()

    page.get_by_label("Name", exact=True).fill("Starter onboarding")
    page.get_by_label("Linked offering").select_option(offering_id)
    page.locator('input[name="step-0-email_subject"]').fill("Later, {client_name}")
    page.locator('textarea[name="step-0-email_body_markdown"]').fill("See you **tomorrow**.")
    page.locator('input[name="step-0-delay"]').fill("1")
    page.locator('select[name="step-0-delay_unit"]').select_option("days")
    # A second step, then moved first: the form comes back with what was typed.
    page.get_by_role("button", name="Add a step").click()
    expect(page.locator('input[name="step-1-email_subject"]')).to_be_visible()
    expect(page.locator('input[name="step-0-email_subject"]')).to_have_value("Later, {client_name}")
    page.locator('input[name="step-1-email_subject"]').fill("Welcome {client_name}")
    page.locator('textarea[name="step-1-email_body_markdown"]').fill(
        "Thanks for getting **{offering_name}**. <script>alert(1)</script>"
    )
    page.get_by_role("button", name="Move up step 2").click()
    expect(page.locator('input[name="step-0-email_subject"]')).to_have_value(
        "Welcome {client_name}"
    )
    # The other action's fields are hidden by the page's script.
    expect(page.locator('select[name="step-0-group_id"]')).to_be_hidden()
    page.get_by_role("button", name="Save sequence").click()

    expect(page.get_by_text("The sequence was saved.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Starter onboarding")
    expect(row).to_contain_text("2 steps")
    expect(row).to_contain_text("0 running")

    # A visitor gets the free offering: the sequence starts for them.
    buyer = f"buyer-seq-{run}@example.com"
    visitor = browser.new_context().new_page()
    visitor.goto(f"{base}/b/{slug}/offerings/{offering_id}/checkout")
    visitor.get_by_label("Your name").fill("Bea Buyer")
    visitor.get_by_label("Email").fill(buyer)
    visitor.get_by_role("button", name="Get it free").click()

    [welcome] = mail.wait_for(buyer, "Welcome Bea Buyer", timeout=60)
    assert "<script>" not in welcome.get("html", "")

    row.get_by_role("link", name="Run status").click()

    def steps_shown() -> bool:
        page.reload()
        return page.get_by_role("row").filter(has_text=buyer).count() == 1

    wait_until(steps_shown, timeout=30)
    client_row = page.get_by_role("row").filter(has_text=buyer)
    expect(client_row).to_contain_text("Email: Welcome {client_name}")
    expect(client_row).to_contain_text("Done")
    expect(client_row).to_contain_text("Pending")
    expect(client_row).to_contain_text("Active")

    api = f"{base}/api/v1/notifications/businesses/{business_id}/sequences"
    listed = httpx.get(api, headers={"Authorization": f"Bearer {coach['access_token']}"})
    [sequence] = listed.json()["items"]
    assert [s["delay_minutes"] for s in sequence["steps"]] == [0, 1440]
    assert sequence["runs"]["active"] == 1
