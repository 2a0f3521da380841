"""A coach invites two people, one accepts from the email, both are clients, then grouped."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser
PASSWORD = "a sturdy passphrase for tests"


def test_invite_accept_list_and_group(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    existing = f"existing-{run}@example.com"
    newcomer = f"newcomer-{run}@example.com"
    coach_email = f"coach-{run}@example.com"
    # Someone who already has an account (they run their own business).
    created = httpx.post(
        f"{system.gateway_url}/api/v1/clients/signup",
        json={
            "name": "Erin Existing",
            "email": existing,
            "password": PASSWORD,
            "business_name": "Erin's Studio",
        },
    )
    assert created.status_code == 201

    coach = browser.new_context().new_page()
    coach.goto(f"{system.gateway_url}/signup")
    coach.get_by_label("Your name").fill("Robin Coach")
    coach.get_by_label("Email").fill(coach_email)
    coach.get_by_label("Password", exact=True).fill(PASSWORD)
    coach.get_by_label("Business name").fill(f"Tide Yoga {run}")
    coach.get_by_role("button", name="Create account").click()
    expect(coach).to_have_url(f"{system.gateway_url}/account")

    coach.get_by_role("link", name="Manage").first.click()
    expect(coach.get_by_role("heading", name="No clients yet")).to_be_visible()
    coach.get_by_role("link", name="Invite clients").first.click()
    coach.get_by_label("Email addresses").fill(f"{existing.upper()}, {newcomer}")
    coach.get_by_role("button", name="Send invitations").click()
    results = coach.get_by_role("table")
    expect(results.get_by_role("row").filter(has_text=existing)).to_contain_text("Added")
    expect(results.get_by_role("row").filter(has_text=newcomer)).to_contain_text("Invited")

    # The newcomer opens the invitation email in their own browser.
    [invitation] = mail.wait_for(newcomer, "invited you")
    invitee = browser.new_context().new_page()
    invitee.goto(mail.link(invitation, "/invitations/accept?token="))
    invitee.get_by_label("Your name").fill("Nico Newcomer")
    invitee.get_by_label("Password", exact=True).fill(PASSWORD)
    invitee.get_by_role("button", name="Create account and join").click()
    expect(invitee).to_have_url(f"{system.gateway_url}/home")
    expect(invitee.get_by_text(f"Tide Yoga {run}").first).to_be_visible()

    # Both are in the coach's list now.
    coach.get_by_role("link", name="Clients", exact=True).first.click()
    expect(coach.get_by_role("link", name="Erin Existing")).to_be_visible()
    expect(coach.get_by_role("link", name="Nico Newcomer")).to_be_visible()

    # A group with both of them.
    coach.get_by_role("link", name="Groups", exact=True).first.click()
    coach.get_by_label("Group name").fill("Morning flow")
    coach.get_by_role("button", name="Create group").click()
    expect(coach.get_by_role("heading", name="Morning flow")).to_be_visible()
    add_form = coach.locator("form").filter(has=coach.get_by_role("button", name="Add to group"))
    for checkbox in add_form.get_by_role("checkbox").all():
        if checkbox.is_visible() and not checkbox.is_checked():
            checkbox.check()
    add_form.get_by_role("button", name="Add to group").click()
    members = coach.get_by_role("table")
    expect(members).to_contain_text("Erin Existing")
    expect(members).to_contain_text("Nico Newcomer")
    coach.get_by_role("link", name="Clients", exact=True).first.click()
    expect(coach.get_by_role("row").filter(has_text="Nico Newcomer")).to_contain_text(
        "Morning flow"
    )
