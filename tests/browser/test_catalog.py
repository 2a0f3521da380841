"""A coach builds offerings and a collection for established clients, shares the link and
embeds it on another site; a client follows the link, logs in, and finds it in the menu."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.stack import MailSink, SystemStack

pytestmark = pytest.mark.browser
PASSWORD = "a sturdy passphrase for tests"


def api_signup(system: SystemStack, name: str, email: str, business: str) -> dict[str, Any]:
    created = httpx.post(
        f"{system.gateway_url}/api/v1/clients/signup",
        json={"name": name, "email": email, "password": PASSWORD, "business_name": business},
        headers={"X-Forwarded-For": f"10.9.{uuid.uuid4().int % 250}.1"},
    )
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def wait_until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


def log_in(page: Page, system: SystemStack, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def create_offering(page: Page, name: str, price: str) -> str:
    page.get_by_role("link", name="New offering").first.click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description").fill(f"{name}, one to one.")
    page.get_by_label("Kind").select_option("appointment")
    # The fields of other kinds are hidden by the page's script.
    expect(page.get_by_label("Sessions included")).to_be_hidden()
    page.get_by_label("Length in minutes").fill("45")
    page.get_by_label("One-time payment").check()
    page.get_by_label("Price (per installment for plans)").fill(price)
    page.locator('input[name="visibility"][value="public"]').check()
    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_text("Draft", exact=True).first).to_be_visible()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("The offering is published.")).to_be_visible()
    return page.url.rsplit("/", 1)[1]


def dialog_text(page: Page, dialog_id: str, snippet: str) -> str:
    page.get_by_role("link", name="Embed / Link").click()
    dialog = page.locator(f"dialog#{dialog_id}")
    expect(dialog).to_be_visible()
    text = dialog.locator(f"#{dialog_id}-{snippet}").inner_text().strip()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    return text


@contextmanager
def static_site(html: str) -> Iterator[str]:
    """A plain HTML page on a port of its own: another site that embeds ours."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_collection_link_login_menu_and_embed(
    system: SystemStack, mail: MailSink, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    base = system.gateway_url
    coach_email = f"coach-{run}@example.com"
    business = f"Tide Yoga {run}"
    coach_result = api_signup(system, "Robin Coach", coach_email, business)
    business_id = coach_result["business"]["id"]
    coach_token = {"Authorization": f"Bearer {coach_result['access_token']}"}
    client_email = f"client-{run}@example.com"
    api_signup(system, "Cleo Client", client_email, f"Cleo's own {run}")
    catalog = f"{base}/api/v1/catalog/businesses/{business_id}"
    # The catalog learns of the new business by event.
    wait_until(lambda: httpx.get(f"{catalog}/offerings", headers=coach_token).status_code == 200)

    # -- the coach: two offerings and a collection with both flags ---------------------------
    coach_context = browser.new_context()
    coach_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    coach = coach_context.new_page()
    coach.goto(f"{base}/login")
    log_in(coach, system, coach_email)
    expect(coach).to_have_url(f"{base}/account")
    coach.goto(f"{base}/businesses/{business_id}/clients")
    coach.get_by_role("link", name="Offerings", exact=True).click()
    expect(coach.get_by_role("heading", name="No offerings yet")).to_be_visible()
    first_id = create_offering(coach, "Private flow", "80")
    coach.get_by_role("link", name="Offerings", exact=True).first.click()
    create_offering(coach, "Breathwork", "45.50")
    coach.get_by_role("link", name="Offerings", exact=True).first.click()
    expect(coach.get_by_role("row").filter(has_text="Private flow")).to_contain_text("Published")
    expect(coach.get_by_role("row").filter(has_text="Breathwork")).to_contain_text("$45.50")

    coach.get_by_role("link", name="Collections", exact=True).click()
    coach.get_by_role("link", name="New collection").first.click()
    coach.get_by_label("Name", exact=True).fill("Members area")
    coach.get_by_role("checkbox", name="Private flow").check()
    coach.get_by_role("checkbox", name="Breathwork").check()
    coach.get_by_label("Position of Private flow").fill("2")
    coach.get_by_label("Position of Breathwork").fill("1")
    coach.get_by_label("List this for in-app access by established clients").check()
    coach.get_by_label("Available only to established clients").check()
    coach.get_by_role("button", name="Create collection").click()
    expect(coach.get_by_text("The collection was saved.")).to_be_visible()

    link = dialog_text(coach, "embed-collection", "link")
    assert link.startswith(f"{base}/b/") and "/collections/" in link
    # The Copy button puts the same link on the clipboard.
    coach.get_by_role("link", name="Embed / Link").click()
    coach.locator("dialog#embed-collection").get_by_role("button", name="Copy").first.click()
    assert coach.evaluate("navigator.clipboard.readText()") == link
    coach.keyboard.press("Escape")

    # -- the person becomes a client (an existing account is added at once) -----------------
    added = httpx.post(
        f"{base}/api/v1/clients/businesses/{business_id}/invitations",
        json={"addresses": client_email},
        headers=coach_token,
    )
    assert added.json()["results"][0]["outcome"] == "added"

    # -- an anonymous visitor opens the link: login first, then back on the collection -------
    visitor = browser.new_context().new_page()
    visitor.goto(link)
    expect(visitor).to_have_url(f"{base}/login?next={link[len(base) :]}")
    expect(visitor.get_by_text("Please log in to continue.")).to_be_visible()
    log_in(visitor, system, client_email)
    expect(visitor).to_have_url(link)
    heading = visitor.get_by_role("heading", name="Members area", exact=True)
    if not heading.is_visible():  # the catalog may not have heard of the new client yet
        wait_until(lambda: visitor.reload() and heading.is_visible())
    cards = visitor.locator(".offer__name")
    expect(cards).to_have_text(["Breathwork", "Private flow"])

    # -- the menu: one collection is a link, two are an "Offerings" submenu ------------------
    visitor.goto(f"{base}/home")
    nav = visitor.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Members area")).to_be_visible()
    nav.get_by_role("link", name="Members area").click()
    expect(visitor).to_have_url(link)

    second = httpx.post(
        f"{catalog}/collections",
        json={"name": "Workshops", "offering_ids": [first_id], "in_app": True},
        headers=coach_token,
    )
    assert second.status_code == 201, second.text

    def submenu_shown() -> bool:
        visitor.goto(f"{base}/home")
        return visitor.get_by_role("navigation", name="Main").get_by_text("Offerings").is_visible()

    wait_until(submenu_shown, timeout=20)  # the menu is cached for a few seconds
    nav = visitor.get_by_role("navigation", name="Main")
    nav.get_by_text("Offerings").click()
    expect(nav.get_by_role("link", name="Members area")).to_be_visible()
    expect(nav.get_by_role("link", name="Workshops")).to_be_visible()
    nav.get_by_role("link", name="Workshops").click()
    expect(visitor.get_by_role("heading", name="Workshops", exact=True)).to_be_visible()

    # -- the embed snippet on another site --------------------------------------------------
    coach.goto(f"{base}/businesses/{business_id}/offerings/{first_id}")
    frame_snippet = dialog_text(coach, "embed-offering", "iframe")
    button_snippet = dialog_text(coach, "embed-offering", "button")
    assert "data-clientele-embed" in frame_snippet and "/embed.js" in frame_snippet
    page_html = (
        "<!doctype html><html><head><title>My yoga site</title></head><body>"
        f"<h1>Book with me</h1>{frame_snippet}<p>{button_snippet}</p></body></html>"
    )
    with static_site(page_html) as site:
        assert not site.startswith(base)
        guest = browser.new_context().new_page()
        guest.goto(site)
        frame = guest.frame_locator("iframe[data-clientele-embed]")
        expect(frame.get_by_role("heading", name="Private flow")).to_be_visible()
        expect(frame.get_by_text("$80.00")).to_be_visible()
        # No site chrome inside the frame, and the frame was sized to its content.
        expect(frame.locator(".site-header")).to_have_count(0)
        wait_until(
            lambda: guest.locator("iframe[data-clientele-embed]").evaluate(
                "f => f.style.height && f.style.height !== '480px'"
            ),
            timeout=10,
        )
        # The button opens the offering in an overlay on the same page.
        guest.get_by_role("link", name="Private flow").click()
        overlay = guest.get_by_role("dialog", name="Private flow")
        expect(overlay).to_be_visible()
        expect(
            overlay.frame_locator("iframe").get_by_role("heading", name="Private flow")
        ).to_be_visible()
        assert guest.url == site
        overlay.get_by_role("button", name="Close").click()
        expect(overlay).to_be_hidden()
