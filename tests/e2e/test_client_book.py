"""The client book through the gateway, against every real process and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import re
import time
import urllib.request
from typing import Any

import httpx

from tests.e2e.conftest import unique_ip
from tests.e2e.test_gateway import PASSWORD, csrf_from, signup, unique_email
from tests.support.stack import MailSink, SystemStack

API = "/api/v1/clients"
NOTIFY = "/api/v1/notifications"


def coach_of(http: httpx.Client, business: str) -> tuple[str, dict[str, str], str]:
    address = unique_email("coach")
    result = signup(http, address, business_name=business)
    return result["business"]["id"], {"Authorization": f"Bearer {result['access_token']}"}, address


def raw(mail: MailSink, message_id: str) -> email.message.EmailMessage:
    with urllib.request.urlopen(f"{mail.base_url}/messages/{message_id}/raw") as response:
        return email.message_from_bytes(response.read(), policy=email.policy.default)


def accept_through_page(system: SystemStack, link: str, name: str) -> httpx.Client:
    """What a browser does: open the link (GET), then post the form it shows."""
    browser = httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20)
    page = browser.get(link)
    assert page.status_code == 200
    token = re.search(r"token=([^&]+)", link).group(1)
    accepted = browser.post(
        "/invitations/accept",
        data={
            "token": token,
            "name": name,
            "password": PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
    )
    assert accepted.status_code == 303, accepted.text
    assert accepted.headers["location"] == "/home"
    return browser


def test_invite_two_addresses_accept_from_email_and_see_both_clients(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    business_id, coach, _ = coach_of(http, "Harbour Pilates")
    existing = unique_email("existing")
    signup(http, existing, business_name="Their Own Studio")
    newcomer = unique_email("newcomer")

    # A hostile Host header must not leak into the links in the emails.
    invited = http.post(
        f"{API}/businesses/{business_id}/invitations",
        json={"addresses": f"{existing.upper()}, {newcomer};not-an-address"},
        headers={**coach, "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert invited.status_code == 200, invited.text
    outcomes = {r["email"]: r["outcome"] for r in invited.json()["results"]}
    assert outcomes == {existing: "added", newcomer: "invited", None: "invalid"}

    [added_email] = mail.wait_for(existing, "added you")
    assert all(link.startswith(system.gateway_url) for link in added_email["links"])
    [invitation] = mail.wait_for(newcomer, "invited you")
    link = mail.link(invitation, "/invitations/accept?token=")
    assert link.startswith(f"{system.gateway_url}/invitations/accept?token=")
    assert "evil.example" not in str(invitation)
    assert raw(mail, invitation["id"]).get("List-Unsubscribe") is None, "transactional"

    # A mail scanner following the link uses nothing up.
    for _ in range(2):
        assert httpx.get(link).status_code == 200
    browser = accept_through_page(system, link, "Nia Newcomer")
    home = browser.get("/home")
    assert home.status_code == 200 and "Harbour Pilates" in home.text
    browser.close()

    clients = http.get(f"{API}/businesses/{business_id}/clients?sort=email", headers=coach).json()
    assert sorted(c["email"] for c in clients["items"]) == sorted([existing, newcomer])
    assert {c["email"]: c["source"] for c in clients["items"]} == {
        existing: "added",
        newcomer: "invited",
    }
    # The used link is dead now, with a clear page.
    page = httpx.get(link)
    assert "already accepted" in page.text


def test_a_coach_of_another_business_gets_404_through_the_gateway(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    a_id, a, _ = coach_of(http, "Alpha")
    b_id, b, _ = coach_of(http, "Beta")
    person = unique_email("beta-client")
    http.post(f"{API}/businesses/{b_id}/invitations", json={"addresses": person}, headers=b)
    [invitation_email] = mail.wait_for(person, "invited you")
    browser = accept_through_page(
        system, mail.link(invitation_email, "/invitations/accept?token="), "Bea"
    )
    browser.close()
    [b_client] = http.get(f"{API}/businesses/{b_id}/clients", headers=b).json()["items"]
    b_group = http.post(f"{API}/businesses/{b_id}/groups", json={"name": "Beta"}, headers=b).json()
    for path in (
        f"/businesses/{a_id}/clients/{b_client['id']}",
        f"/businesses/{a_id}/groups/{b_group['id']}",
        f"/businesses/{b_id}/clients",
        f"/businesses/{b_id}/clients/{b_client['id']}",
        f"/businesses/{b_id}/groups",
        f"/businesses/{b_id}/invitations",
    ):
        response = http.get(f"{API}{path}", headers=a)
        assert response.status_code == 404, path
    assert http.get(f"{NOTIFY}/businesses/{b_id}/campaigns", headers=a).status_code == 404


def test_promotion_reaches_subscribed_clients_only_with_one_click_unsubscribe(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    business_id, coach, _ = coach_of(http, "Promo Studio")
    stays, leaves = unique_email("stays"), unique_email("leaves")
    http.post(
        f"{API}/businesses/{business_id}/invitations",
        json={"addresses": f"{stays} {leaves}"},
        headers=coach,
    )
    for address, name in ((stays, "Sam Stays"), (leaves, "Lee Leaves")):
        [invitation] = mail.wait_for(address, "invited you")
        accept_through_page(
            system, mail.link(invitation, "/invitations/accept?token="), name
        ).close()

    def campaign(subject: str) -> dict[str, Any]:
        created = http.post(
            f"{NOTIFY}/businesses/{business_id}/campaigns",
            json={
                "subject": subject,
                "body_markdown": "Spring classes are **open**.",
                "discount_code": "SPRING10",
                "audience": {"kind": "all"},
            },
            headers=coach,
        )
        assert created.status_code == 201, created.text
        return created.json()

    # The audience read model is fed by events: wait until both clients are in it.
    first = campaign("Spring is here")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        preview = http.get(
            f"{NOTIFY}/businesses/{business_id}/campaigns/{first['id']}/preview", headers=coach
        ).json()
        if preview["recipient_count"] == 2:
            break
        time.sleep(0.2)
    assert preview["recipient_count"] == 2
    sent = http.post(
        f"{NOTIFY}/businesses/{business_id}/campaigns/{first['id']}/send", headers=coach
    )
    assert sent.status_code == 200, sent.text
    [to_leaver] = mail.wait_for(leaves, "Spring is here")
    message = raw(mail, to_leaver["id"])
    unsubscribe_url = message["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith(f"{system.gateway_url}/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "SPRING10" in (to_leaver["text"] or "")

    # The mail client's one-click unsubscribe (RFC 8058): a POST to that URL.
    one_click = httpx.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200

    second = campaign("Summer too")
    assert (
        http.post(
            f"{NOTIFY}/businesses/{business_id}/campaigns/{second['id']}/send", headers=coach
        ).status_code
        == 200
    )
    mail.wait_for(stays, "Summer too")
    time.sleep(2)
    assert [m for m in mail.messages(leaves) if "Summer" in m["subject"]] == []
    detail = http.get(
        f"{NOTIFY}/businesses/{business_id}/campaigns/{second['id']}", headers=coach
    ).json()
    assert detail["counts"]["unsubscribed"] == 1
    assert detail["counts"]["recipients"] == 1
