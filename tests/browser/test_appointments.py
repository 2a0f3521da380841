"""Appointments in a real browser, against the whole system and its SMTP sink: a coach sets
availability with a coupon site through the pages; a visitor in another time zone books a
free appointment with a coupon number; the coach confirms it in the calendar; the
confirmation email carries the coupon and an .ics; the requester is one client."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_catalog import api_signup, log_in, wait_until
from tests.browser.test_checkout import clients_with, publish
from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def test_a_visitor_books_with_a_coupon_and_the_coach_confirms_it(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    coach_email = f"coach-appt-{run}@example.com"
    business = f"Harbour Physio {run}"
    coach = api_signup(system, "Cora Coach", coach_email, business)
    business_id = coach["business"]["id"]
    slug = coach["business"]["slug"]
    offering_id = publish(
        system,
        coach,
        "Free consultation",
        0,
        kind="appointment",
        details={"duration_minutes": 45},
        billing={"type": "free"},
    )

    # -- the coach sets availability through the pages ------------------------------------
    coach_page = browser.new_context(timezone_id="Europe/Paris").new_page()
    errors: list[str] = []
    coach_page.on("pageerror", lambda error: errors.append(str(error)))
    coach_page.goto(f"{base}/login")
    log_in(coach_page, system, coach_email)
    expect(coach_page).to_have_url(f"{base}/account")
    coach_page.goto(f"{base}/businesses/{business_id}/clients")
    coach_page.get_by_role("link", name="Availability", exact=True).click()
    expect(coach_page.get_by_role("heading", name="Availability", exact=True)).to_be_visible()
    coach_page.get_by_label("Time zone").fill("Europe/Paris")
    for day in DAYS:
        coach_page.get_by_label(day).fill("08:00-12:00, 13:00-20:00")
    coach_page.get_by_label("Client notice (hours)").fill("24")
    coach_page.get_by_label("Reminder (hours before)").fill("0")
    coach_page.get_by_label("Coupon sites").fill("Groupon\nLivingSocial")
    coach_page.get_by_role("button", name="Save availability").click()
    expect(coach_page.get_by_text("Your availability was saved.")).to_be_visible()
    expect(coach_page.get_by_label("Monday")).to_have_value("08:00-12:00, 13:00-20:00")

    # -- a visitor in New York books a slot from the offering page --------------------------
    visitor_email = f"visitor-{run}@example.com"
    visitor = browser.new_context(timezone_id="America/New_York").new_page()
    visitor.on("pageerror", lambda error: errors.append(str(error)))
    visitor.goto(f"{base}/b/{slug}/offerings/{offering_id}")
    visitor.get_by_role("link", name="Book Free consultation").click()
    # The page's script asks again with the browser's zone: slots in New York time.
    expect(visitor).to_have_url(
        f"{base}/b/{slug}/offerings/{offering_id}/book?tz=America%2FNew_York"
    )
    expect(visitor.get_by_test_id("time-zone")).to_have_text("America/New_York")
    slot_day = visitor.get_by_test_id("slots").locator("section.slot-day").nth(1)
    day_label = slot_day.locator("h3").inner_text()
    slot = slot_day.locator("a.slot").first
    slot_time = slot.inner_text().split()[0]
    slot.click()
    expect(visitor.get_by_test_id("chosen-slot")).to_contain_text(f"{day_label}, {slot_time}")
    starts_at = visitor.locator('input[name="slot"]').get_attribute("value")
    visitor.get_by_label("Your name").fill("Vera Visitor")
    visitor.get_by_label("Email").fill(visitor_email)
    visitor.get_by_label("Coupon site").select_option("LivingSocial")
    visitor.get_by_label("Coupon number").fill("LS-20931")
    expect(visitor.get_by_label("Free", exact=True)).to_be_checked()
    visitor.get_by_role("button", name="Send request").click()
    expect(
        visitor.get_by_role("heading", name="Request sent — the coach will confirm")
    ).to_be_visible()
    expect(visitor.get_by_test_id("requested-time")).to_have_text(
        f"{day_label}, {slot_time} (America/New_York)"
    )
    mail.wait_for(visitor_email, "request", timeout=60)

    # -- the coach sees the request in the calendar and confirms it -------------------------
    coach_page.get_by_role("link", name="Calendar", exact=True).first.click()
    waiting = coach_page.get_by_test_id("waiting")
    expect(waiting).to_contain_text("Vera Visitor")
    expect(waiting).to_contain_text("LivingSocial · No. LS-20931")
    waiting.get_by_role("link", name="Show in calendar").first.click()
    card = coach_page.get_by_test_id("week").locator("article.appt").filter(has_text="Vera Visitor")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Requested")
    expect(card.get_by_test_id("coupon")).to_have_text("Coupon: LivingSocial · No. LS-20931")
    card.get_by_role("button", name="Confirm", exact=False).click()
    expect(coach_page.get_by_text("The appointment is confirmed.")).to_be_visible()
    card = coach_page.get_by_test_id("week").locator("article.appt").filter(has_text="Vera Visitor")
    expect(card).to_contain_text("Confirmed")
    expect(card.get_by_role("button", name="Confirm", exact=False)).to_have_count(0)

    # -- the confirmation email carries the coupon and a calendar file ----------------------
    [confirmed] = mail.wait_for(visitor_email, "Confirmed:", timeout=60)
    body = confirmed["text"] or ""
    assert "LivingSocial" in body and "LS-20931" in body, body
    assert any(
        (a.get("filename") or "").endswith(".ics") or a.get("content_type") == "text/calendar"
        for a in confirmed["attachments"]
    ), confirmed["attachments"]

    # -- the requester is a client of the business, once ------------------------------------
    wait_until(lambda: clients_with(system, coach, visitor_email))
    [client] = clients_with(system, coach, visitor_email)
    assert client["name"] == "Vera Visitor"
    coach_page.goto(f"{base}/businesses/{business_id}/clients")
    expect(coach_page.get_by_role("row").filter(has_text=visitor_email)).to_have_count(1)
    assert starts_at and not errors, errors
