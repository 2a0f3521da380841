"""Campaigns through the API: drafts, validation, preview, sending, and the emails received."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notifications.emails.service import email_id
from notifications.unsubscribes.tokens import UnsubscribeTokens
from tests.notifications import events
from tests.notifications.clientbook import CoachApi, apply
from tests.notifications.conftest import PUBLIC_BASE_URL, no_more_deliveries, wait_until
from tests.notifications.mail import html_links, html_text, parts, text_links
from tests.notifications.test_headers import EXPECTED_HEADERS

CAMPAIGN_FIELDS = {
    "id",
    "subject",
    "body_markdown",
    "discount_code",
    "audience",
    "status",
    "created_at",
    "sent_at",
    "counts",
}
ZERO = {"recipients": 0, "queued": 0, "sent": 0, "failed": 0, "unsubscribed": 0}

UNSAFE_MARKDOWN = """# Spring news

Hello <script>alert('x')</script> and <img src=x onerror="alert(1)">.

[Pay here](javascript:alert(document.cookie)) or [call](JAVASCRIPT:alert(1))
or [data](data:text/html;base64,PHNjcmlwdD4=).

[Book a class](https://example.com/book?a=1&b=2) or [write to us](mailto:casey@example.com).
"""


async def clients(api: CoachApi, business: uuid.UUID | None = None, count: int = 2) -> list[Any]:
    business = business or api.business
    added = [
        events.client_added(business, email=f"client{n}@example.com", display_name=f"Client {n}")
        for n in range(count)
    ]
    await apply(api.harness, *added)
    return added


async def test_create_get_and_list_drafts(coach_api: CoachApi) -> None:
    created = await coach_api.create(
        subject="  Spring offer ",
        body_markdown="Hello\r\n\r\n**there**",
        discount_code="SPRING20",
    )
    assert set(created) == CAMPAIGN_FIELDS
    assert created["subject"] == "Spring offer"
    assert created["body_markdown"] == "Hello\n\n**there**"
    assert created["discount_code"] == "SPRING20"
    assert created["audience"] == {"kind": "all", "group_id": None, "group_name": None}
    assert (created["status"], created["sent_at"], created["counts"]) == ("draft", None, ZERO)
    assert await coach_api.get(created["id"]) == created

    second = await coach_api.create(subject="Second", discount_code="  ")
    third = await coach_api.create(subject="Third")
    await coach_api.create(business=coach_api.other_business, subject="Elsewhere")
    page = (await coach_api.call("GET", params={"limit": 2})).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [item["id"] for item in page["items"]] == [third["id"], second["id"]]
    assert second["discount_code"] is None
    rest = (await coach_api.call("GET", params={"limit": 2, "offset": 2})).json()
    assert [item["id"] for item in rest["items"]] == [created["id"]]


LONG = "x" * 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": ""}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"subject": "x" * 201}, "subject"),
        ({"subject": "Hi\nBcc: spy@evil.test"}, "subject"),
        ({"body_markdown": ""}, "body_markdown"),
        ({"body_markdown": " \n "}, "body_markdown"),
        ({"body_markdown": "x" * 20001}, "body_markdown"),
        ({"body_markdown": "nul \x00 byte"}, "body_markdown"),
        ({"discount_code": "C" * 65}, "discount_code"),
        ({"discount_code": "CODE\r\nX"}, "discount_code"),
        ({"status": "sent"}, "status"),
        ({"business_id": str(uuid.uuid4())}, "business_id"),
        ({"audience": {"kind": "everyone"}}, "audience.kind"),
        ({"audience": {"kind": "group"}}, "audience.group_id"),
        ({"audience": {"kind": "group", "group_id": "nope"}}, "audience.group_id"),
        ({"audience": {"kind": "all", "group_id": str(uuid.uuid4())}}, "audience.group_id"),
        ({"audience": {"kind": "group", "group_id": str(uuid.uuid4())}}, "audience.group_id"),
        ({"audience": {"kind": "all", "extra": 1}}, "audience.extra"),
    ],
)
async def test_invalid_campaigns_are_422_naming_the_field(
    coach_api: CoachApi, change: dict[str, Any], field: str
) -> None:
    body = {"subject": "Hello", "body_markdown": "Hi", "audience": {"kind": "all"}, **change}
    response = await coach_api.call("POST", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await coach_api.call("GET")).json()["total"] == 0


async def test_limits_are_inclusive(coach_api: CoachApi) -> None:
    created = await coach_api.create(
        subject="s" * 200, body_markdown="b" * 20000, discount_code="C" * 64
    )
    assert len(created["subject"]) == 200 and len(created["discount_code"]) == 64


async def test_another_business_group_is_unknown_here(coach_api: CoachApi) -> None:
    theirs = events.group_created(coach_api.other_business)
    await apply(coach_api.harness, theirs)
    body = {"kind": "group", "group_id": str(theirs.group_id)}
    response = await coach_api.call(
        "POST", json={"subject": "Hi", "body_markdown": "Hi", "audience": body}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["audience.group_id"]
    mine = await coach_api.create(business=coach_api.other_business, audience=body)
    assert mine["audience"]["group_name"] == "Morning yoga"


async def test_patch_and_delete_drafts(coach_api: CoachApi) -> None:
    group = events.group_created(coach_api.business, group_name="VIPs")
    await apply(coach_api.harness, group)
    draft = await coach_api.create(discount_code="SAVE10")
    patched = await coach_api.call(
        "PATCH",
        f"/{draft['id']}",
        json={
            "subject": "New subject",
            "discount_code": None,
            "audience": {"kind": "group", "group_id": str(group.group_id)},
        },
    )
    assert patched.status_code == 200, patched.text
    changed = patched.json()
    assert (changed["subject"], changed["discount_code"]) == ("New subject", None)
    assert changed["body_markdown"] == draft["body_markdown"]
    assert changed["audience"]["group_name"] == "VIPs"
    for bad in ({"subject": None}, {"audience": None}, {"body_markdown": ""}, {"id": "x"}):
        refused = await coach_api.call("PATCH", f"/{draft['id']}", json=bad)
        assert refused.status_code == 422, bad
    assert await coach_api.get(draft["id"]) == changed

    deleted = await coach_api.call("DELETE", f"/{draft['id']}")
    assert deleted.status_code == 204
    assert (await coach_api.call("GET", f"/{draft['id']}")).status_code == 404
    assert (await coach_api.call("DELETE", f"/{draft['id']}")).status_code == 404


async def test_preview_renders_for_a_sample_client(coach_api: CoachApi) -> None:
    added = await clients(coach_api, count=3)
    await apply(coach_api.harness, events.client_archived(added[2]))
    draft = await coach_api.create(
        subject="Spring <offer>", body_markdown=UNSAFE_MARKDOWN, discount_code="SPRING-20"
    )
    response = await coach_api.call("GET", f"/{draft['id']}/preview")
    assert response.status_code == 200, response.text
    preview = response.json()
    assert set(preview) == {"subject", "html", "text", "recipient_count", "unsubscribed_count"}
    assert preview["subject"] == "Spring <offer>"
    assert (preview["recipient_count"], preview["unsubscribed_count"]) == (2, 0)
    assert preview["html"].startswith("<!DOCTYPE html>")
    assert "<title>Spring &lt;offer&gt;</title>" in preview["html"]
    assert "Hi Jamie Client," in html_text(preview["html"])
    assert preview["text"].startswith("Hi Jamie Client,\n")
    assert_markdown_is_safe(preview["html"], preview["text"])
    assert "SPRING-20" in html_text(preview["html"])


def assert_markdown_is_safe(html: str, text: str) -> None:
    # Raw HTML in the Markdown is shown as text, never interpreted.
    assert "<script" not in html.lower() and "<img src=x" not in html.lower()
    assert "Hello <script>alert('x')</script> and <img src=x onerror=\"alert(1)\">." in (
        html_text(html)
    )
    # Only http(s) and mailto become links; the others stay visible as plain text.
    links = html_links(html)
    assert "https://example.com/book?a=1&b=2" in links
    assert "mailto:casey@example.com" in links
    assert not [link for link in links if not link.startswith(("https://", "mailto:"))], links
    assert "[Pay here](javascript:alert(document.cookie))" in html_text(html)
    assert "[data](data:text/html;base64,PHNjcmlwdD4=)" in html_text(html)
    assert "<h1 " in html and "Spring news" in html_text(html)
    # The text part is the Markdown as written.
    assert "[Book a class](https://example.com/book?a=1&b=2)" in text


async def test_send_queues_one_email_per_active_client_then_delivers(
    coach_api: CoachApi,
) -> None:
    harness = coach_api.harness
    added = await clients(coach_api, count=3)
    await apply(harness, events.client_archived(added[2]))
    await clients(coach_api, coach_api.other_business, count=1)  # another business's client
    draft = await coach_api.create(
        subject="Spring offer", body_markdown=UNSAFE_MARKDOWN, discount_code="SPRING20"
    )

    sent = await coach_api.send(draft["id"])
    assert sent["status"] == "sent" and sent["sent_at"] is not None
    assert sent["counts"] == {**ZERO, "recipients": 2, "queued": 2}
    again = await coach_api.call("POST", f"/{draft['id']}/send")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    for method, path, body in (("PATCH", "", {"subject": "x"}), ("DELETE", "", None)):
        refused = await coach_api.call(method, f"/{draft['id']}{path}", json=body)
        assert refused.status_code == 409, method

    async with no_more_deliveries(harness.smtp):
        received = await harness.wait_for_delivery(2)

    async def all_sent() -> bool:
        return (await coach_api.get(draft["id"]))["counts"]["sent"] == 2

    await wait_until(all_sent, what="campaign counts sent")
    final = await coach_api.get(draft["id"])
    assert final["counts"] == {**ZERO, "recipients": 2, "sent": 2}
    assert final["status"] == "sent" and final["sent_at"] == sent["sent_at"]

    tokens = UnsubscribeTokens(harness.settings.secret_key)
    by_recipient = {r.rcpt_tos[0]: r for r in received}
    assert set(by_recipient) == {"client0@example.com", "client1@example.com"}
    for n, (address, raw) in enumerate(sorted(by_recipient.items())):
        message = raw.message
        assert message["Subject"] == "Spring offer"
        assert message["Message-ID"] == (
            f"<{email_id(uuid.UUID(draft['id']), 'campaign', address)}@clientele>"
        )
        assert {name.lower() for name in message} == EXPECTED_HEADERS | {
            "list-unsubscribe",
            "list-unsubscribe-post",
        }
        unsubscribe_url = f"{PUBLIC_BASE_URL}/unsubscribe?token=" + tokens.issue(
            coach_api.business, address
        )
        assert message["List-Unsubscribe"] == f"<{unsubscribe_url}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # The header is one plain line as sent: not folded, not encoded (RFC 2047).
        head = raw.raw.split(b"\r\n\r\n", 1)[0].decode()
        assert f"\r\nList-Unsubscribe: <{unsubscribe_url}>\r\n" in head
        text, html = parts(message)
        assert f"Hi Client {n}," in text and f"Hi Client {n}," in html_text(html)
        assert unsubscribe_url in text_links(text) and unsubscribe_url in html_links(html)
        assert "you are a client of Casey Coaching on Clientele" in html_text(html)
        assert "Your discount code: SPRING20" in text
        assert "Your discount code SPRING20" in html_text(html)
        assert_markdown_is_safe(html, text)
    rows = await harness.emails()
    assert {(r.template, r.business_id, r.event_id) for r in rows} == {
        ("campaign", coach_api.business, uuid.UUID(draft["id"]))
    }


async def test_a_group_campaign_reaches_the_active_members_only(coach_api: CoachApi) -> None:
    harness = coach_api.harness
    member, archived_member, left, _outsider = await clients(coach_api, count=4)
    group = events.group_created(coach_api.business)
    gid = group.group_id
    await apply(
        harness,
        group,
        events.member_added(gid, member),
        events.member_added(gid, archived_member),
        events.member_added(gid, left),
        events.client_archived(archived_member),
        events.member_removed(gid, left),
    )
    draft = await coach_api.create(audience={"kind": "group", "group_id": str(gid)})
    sent = await coach_api.send(draft["id"])
    assert sent["counts"]["recipients"] == 1
    [received] = await harness.wait_for_delivery(1)
    assert received.rcpt_tos == [member.email]


async def test_another_business_coach_gets_404_on_every_campaign_id(
    coach_api: CoachApi,
) -> None:
    await clients(coach_api, count=1)
    draft = await coach_api.create()
    sent = await coach_api.create(subject="Sent one")
    await coach_api.send(sent["id"])
    other = coach_api.other_business
    for campaign in (draft, sent):
        cid = campaign["id"]
        for method, path, body in (
            ("GET", f"/{cid}", None),
            ("PATCH", f"/{cid}", {"subject": "Mine now"}),
            ("DELETE", f"/{cid}", None),
            ("GET", f"/{cid}/preview", None),
            ("POST", f"/{cid}/send", None),
        ):
            # Through their own business: no such campaign there.
            response = await coach_api.call(method, path, business=other, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            # Through this business's path: they are not its staff.
            response = await coach_api.call(method, path, as_staff_of=other, json=body)
            assert response.status_code == 404, (method, path)
    listing = (await coach_api.call("GET", business=other)).json()
    assert listing["total"] == 0
    assert (await coach_api.get(draft["id"]))["subject"] == "Spring offer"
    assert (await coach_api.get(draft["id"]))["status"] == "draft"


async def test_no_token_is_401(coach_api: CoachApi) -> None:
    url = f"/api/v1/notifications/businesses/{coach_api.business}/campaigns"
    assert (await coach_api.http.get(url)).status_code == 401
    assert (await coach_api.http.post(url, json={})).status_code == 401
