"""Agreements and worksheets in a real browser: the coach writes a worksheet's questions in
the offering form; a client gets a free agreement and the worksheet, signs the agreement
(the text they got, even after the coach changed it) and fills in the worksheet from their
home, sees their purchase history; the coach sees both on the client's profile."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_catalog import PASSWORD, api_signup, log_in, wait_until
from tests.browser.test_checkout import clients_with, publish
from tests.support.stack import SystemStack

pytestmark = pytest.mark.browser
TEXT = "I will come to every session on time.\nI can move a session up to 24 hours ahead."
NEW_TEXT = "I will come to every session on time. Sessions cannot be moved."
QUESTIONS = ["What do you want to change?", "What stopped you so far?"]


def get_free(page: Page, system: SystemStack, slug: str, name: str) -> None:
    page.goto(f"{system.gateway_url}/b/{slug}")
    get = page.get_by_role("link", name=f"Get it free {name}")
    if not get.is_visible():  # the catalog hears of the business and offering by event
        wait_until(lambda: page.reload() and get.is_visible())
    get.click()
    page.get_by_role("button", name="Get it free").click()
    expect(page.get_by_role("heading", name="Thank you", exact=False)).to_be_visible(timeout=20000)


def edit_offering(
    system: SystemStack, coach: dict[str, Any], offering_id: str, **changes: Any
) -> None:
    answer = httpx.patch(
        f"{system.gateway_url}/api/v1/catalog/businesses/{coach['business']['id']}"
        f"/offerings/{offering_id}",
        json=changes,
        headers={"Authorization": f"Bearer {coach['access_token']}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2


def test_a_client_signs_an_agreement_and_fills_in_a_worksheet_and_the_coach_sees_both(
    system: SystemStack, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    coach_email = f"coach-{run}@example.com"
    coach = api_signup(system, "Pat Pine", coach_email, f"Pine Coaching {run}")
    slug = coach["business"]["slug"]
    agreement_id = publish(
        system,
        coach,
        "Coaching agreement",
        0,
        kind="agreement",
        details={"agreement_text": TEXT},
        billing={"type": "free"},
    )

    # -- the coach writes the worksheet's questions in the offering form ------------------------
    coach_page = browser.new_context().new_page()
    coach_page.goto(f"{base}/login")
    log_in(coach_page, system, coach_email)
    coach_page.goto(f"{base}/businesses/{coach['business']['id']}/offerings/new")
    coach_page.get_by_label("Name", exact=True).fill("Intake worksheet")
    coach_page.get_by_label("Kind").select_option("worksheet")
    questions = coach_page.get_by_label("Questions")
    expect(questions).to_be_visible()
    questions.fill("\n".join(QUESTIONS) + "\n\n")
    coach_page.get_by_label("Free").check()
    coach_page.locator('input[name="visibility"][value="public"]').check()
    coach_page.get_by_role("button", name="Create draft").click()
    expect(coach_page.get_by_text("The offering was saved.")).to_be_visible()
    expect(coach_page.get_by_label("Questions")).to_have_value("\n".join(QUESTIONS))
    coach_page.get_by_role("button", name="Publish").click()
    expect(coach_page.get_by_text("The offering is published.")).to_be_visible()

    # -- a client (with an account) gets both, free -------------------------------------------
    client_email = f"robin-{run}@example.com"
    api_signup(system, "Robin Client", client_email, f"Robin's Studio {run}")
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/login")
    log_in(page, system, client_email)
    get_free(page, system, slug, "Coaching agreement")
    get_free(page, system, slug, "Intake worksheet")
    # The coach changes the agreement afterwards: the client signs what they got.
    edit_offering(system, coach, agreement_id, details={"agreement_text": NEW_TEXT})

    # -- home: Sign and Fill in, and the purchase history ---------------------------------------
    page.goto(f"{base}/home")
    sign = page.get_by_test_id("sign-agreement")
    fill = page.get_by_test_id("fill-worksheet")
    wait_until(lambda: page.reload() or (sign.is_visible() and fill.is_visible()))
    history = page.get_by_test_id("purchase-history")
    expect(history).to_contain_text("Coaching agreement")
    expect(history).to_contain_text("Intake worksheet")
    expect(history).to_contain_text(f"Pine Coaching {run}")
    expect(history.locator("tbody tr")).to_have_count(2)
    expect(history).to_contain_text("Free")

    sign.click()
    expect(page.get_by_role("heading", name="Coaching agreement")).to_be_visible()
    text = page.get_by_test_id("agreement-text")
    expect(text).to_have_text(TEXT)
    agree = page.get_by_role("button", name="I agree")
    agree.click()  # without a name: the browser asks for it, nothing is signed
    expect(page.get_by_test_id("signature")).to_have_count(0)
    page.get_by_label("Your full name").fill("Robin Q. Client")
    agree.click()
    expect(page.get_by_text("You signed the agreement.")).to_be_visible()
    expect(page.get_by_test_id("signed-name")).to_have_text("Robin Q. Client")
    expect(page.get_by_test_id("signed-at")).to_contain_text("UTC")
    expect(page.get_by_test_id("agreement-text")).to_have_text(TEXT)
    expect(page.get_by_role("button", name="I agree")).to_have_count(0)

    page.goto(f"{base}/home")
    expect(page.get_by_test_id("agreement-signed")).to_contain_text("Signed on")
    page.get_by_test_id("fill-worksheet").click()
    expect(page.get_by_role("heading", name="Intake worksheet")).to_be_visible()
    page.get_by_label(QUESTIONS[0]).fill("Sleep better.\nMove more.")
    page.get_by_label(QUESTIONS[1]).fill("Time.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your answers are saved.")).to_be_visible()
    expect(page.get_by_label(QUESTIONS[0])).to_have_value("Sleep better.\nMove more.")
    # Saving again changes the answers.
    page.get_by_label(QUESTIONS[1]).fill("Time, mostly.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your answers are saved.")).to_be_visible()
    expect(page.get_by_label(QUESTIONS[1])).to_have_value("Time, mostly.")
    page.goto(f"{base}/home")
    expect(page.get_by_test_id("worksheet-submitted")).to_contain_text("Submitted")
    assert not errors, errors

    # -- the coach sees the signature and the answers on the client's profile ------------------
    [client] = clients_with(system, coach, client_email)
    coach_page.goto(f"{base}/businesses/{coach['business']['id']}/clients/{client['id']}")
    expect(coach_page.get_by_text("Signed agreement Coaching agreement")).to_have_count(1)
    expect(coach_page.get_by_text("Submitted worksheet Intake worksheet")).to_have_count(1)
    forms = coach_page.get_by_test_id("client-forms")
    expect(forms.get_by_test_id("client-agreement")).to_contain_text("Robin Q. Client")
    worksheet = forms.get_by_test_id("client-worksheet")
    expect(worksheet).to_contain_text(QUESTIONS[0])
    expect(worksheet).to_contain_text("Time, mostly.")
    forms.get_by_text("The text they signed").click()
    expect(forms.get_by_text("Sessions cannot be moved.")).to_have_count(0)
    expect(
        forms.get_by_text("I can move a session up to 24 hours ahead.", exact=False)
    ).to_be_visible()

    # Nobody else opens the client's agreement page.
    agreement_path = page.url  # on /home now; take the link from there
    link = page.get_by_role("link", name="View Coaching agreement").get_attribute("href")
    assert link and link.startswith("/agreements/"), agreement_path
    coach_page.goto(f"{base}{link}")
    expect(coach_page.get_by_role("heading", name="Not found")).to_be_visible()
    assert PASSWORD  # the shared test password logs both in
