"""Scenario 11: header injection through the real SMTP sink, HTML and script in every user
text field on every page and email that shows it, and open redirects."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tests.e2e.conftest import unique_ip
from tests.e2e.test_catalog import eventually
from tests.e2e.test_gateway import PASSWORD, csrf_from, unique_email
from tests.security.world import (
    CATALOG,
    CLIENTS,
    NOTIFY,
    PAYMENTS,
    Business,
    Person,
    accept,
    free_order,
    invitation_token,
    invite,
    offering,
    signup,
)
from tests.support.stack import MailSink, SystemStack

INJECTED_NAMES = ("Bcc", "Cc", "To", "Reply-To", "X-Injected", "Content-Type", "Subject")
BREAKS = (
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    "\n\n",
    "\r\n ",
    "\r\n\t",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
    "\x00",
    "%0d%0a",
    "%0a",
    "%0D%0A",
    "\\r\\n",
    "=0D=0A",
    "&#13;&#10;",
    "\u560a\u560d",  # "嘊嘍": low bytes 0x0a 0x0d when cut to 8 bits
    "\uff0d\uff0a",
    "=?utf-8?q?=0D=0A",
    "\r\n=?utf-8?b?",
)
# What our messages may carry.
ALLOWED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


def header_vectors() -> list[str]:
    vectors = []
    for i, crlf in enumerate(BREAKS):
        for j, name in enumerate(INJECTED_NAMES):
            value = "spy@evil.test" if name in ("Bcc", "Cc", "To", "Reply-To") else "yes"
            if (i + j) % 3 == 0:
                vectors.append(f"Hi{crlf}{name}: {value}")
            elif (i + j) % 3 == 1:
                vectors.append(f"{crlf}{name}: {value}{crlf}{crlf}body")
            else:
                vectors.append(f"Hi {crlf}{name}:{value}")
            if name in ("Bcc", "X-Injected"):  # the two that matter most, twice
                vectors.append(f"{crlf}{crlf}{name}: {value}{crlf}")
    vectors += [
        "Hi\r\nBcc: a@evil.test,\r\n b@evil.test",
        "Hi\r\n\r\n<html>smuggled body</html>",
        "=?utf-8?q?Hi=0D=0ABcc:_spy@evil.test?=",
        "=?utf-8?b?SGkNCkJjYzogc3B5QGV2aWwudGVzdA==?=",
        "Hi%0D%0ABcc:%20spy@evil.test",
    ]
    return vectors


def raw_message(mail: MailSink, message_id: str) -> bytes:
    with urllib.request.urlopen(f"{mail.base_url}/messages/{message_id}/raw") as response:
        data: bytes = response.read()
        return data


def header_problems(mail: MailSink, summary: dict[str, Any], recipient: str) -> list[str]:
    problems = []
    if [r.lower() for r in summary["rcpt_tos"]] != [recipient.lower()]:
        problems.append(f"RCPT TO {summary['rcpt_tos']}")
    raw = raw_message(mail, summary["id"])
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            continue  # folding of the header above
        name = line.split(":", 1)[0].lower()
        if name not in ALLOWED_HEADERS:
            problems.append(f"header line {line!r}")
    message = BytesParser(policy=default_policy).parsebytes(raw)
    for name in ("bcc", "cc", "reply-to", "x-injected"):
        if message.get_all(name):
            problems.append(f"{name} header")
    if len(message.get_all("to") or []) != 1 or len(message.get_all("subject") or []) != 1:
        problems.append("To/Subject count")
    for part in message.walk():  # a smuggled body never becomes a part of its own
        if part.get_content_type() not in (
            "multipart/alternative",
            "text/plain",
            "text/html",
            "multipart/mixed",
            "text/calendar",
        ):
            problems.append(f"part {part.get_content_type()}")
    return problems


def test_build_message_writes_no_header_from_any_vector() -> None:
    """The sender itself, for every vector (also where the API refuses it first)."""
    from notifications.emails.repository import ClaimedEmail
    from notifications.emails.sender import build_message
    from tests.notifications.conftest import free_port, notifications_settings

    settings = notifications_settings("sqlite+aiosqlite:///:memory:", "amqp://x", "", free_port())
    for vector in header_vectors():
        claimed = ClaimedEmail(
            id=uuid.uuid4(),
            template="campaign",
            recipient="casey@example.com",
            subject=f"Hello {vector}",
            text_body="t",
            html_body="h",
            attempts=1,
            lease=None,  # type: ignore[arg-type]
        )
        message, recipient = build_message(claimed, settings)
        head = message.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        names = {line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] > " "}
        assert names <= ALLOWED_HEADERS, (vector, head)
        assert recipient == "casey@example.com"


def wait_for_markers(
    mail: MailSink, recipient: str, markers: set[str], timeout: float = 60
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for summary in mail.messages(recipient):
            for marker in markers - found.keys():
                if marker in summary["subject"]:
                    found[marker] = summary
        if found.keys() == markers:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{len(markers - found.keys())} of {len(markers)} emails missing")


def test_header_injection_in_campaign_subjects_reaches_no_header(
    system: SystemStack, businesses: tuple[Business, Business], mail: MailSink
) -> None:
    a, _ = businesses
    vectors = header_vectors()
    assert len(vectors) >= 200
    coach, group = a.coach, a.ids["group_id"]
    base = f"{system.gateway_url}{NOTIFY}/businesses/{a.id}/campaigns"
    markers, refused = set(), 0
    with httpx.Client(timeout=30) as http:
        for n, vector in enumerate(vectors):
            marker = f"inj{n:03d}x"
            created = http.post(
                base,
                json={
                    "subject": f"{marker} {vector}",
                    "body_markdown": "Hello",
                    "audience": {"kind": "group", "group_id": group},
                },
                headers=coach.headers,
            )
            if created.status_code == 422:
                refused += 1
                continue
            assert created.status_code == 201, created.text
            if n == 0:
                eventually(
                    lambda c=created: (
                        http.get(f"{base}/{c.json()['id']}/preview", headers=coach.headers).json()[
                            "recipient_count"
                        ]
                        == 1
                    ),
                    what="the group is in the audience",
                )
            sent = http.post(f"{base}/{created.json()['id']}/send", headers=coach.headers)
            assert sent.status_code == 200, sent.text
            markers.add(marker)
    found = wait_for_markers(mail, a.member.email, markers)
    problems = {
        marker: p for marker, s in found.items() if (p := header_problems(mail, s, a.member.email))
    }
    print(f"header injection: {len(vectors)} subjects, {refused} refused, {len(found)} checked")
    assert problems == {}


def test_header_injection_in_names_reaches_no_header(system: SystemStack, mail: MailSink) -> None:
    """Display and business names (welcome, invitation), invitees' display names, offering
    names and buyers' names (receipt): each refused, or sent with no header added."""
    vectors = header_vectors()[::10]  # a spread of every kind of break
    checked, refused = 0, 0
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as http:
        for n, vector in enumerate(vectors):
            marker = f"nm{n:02d}x"
            named = f"{marker} {vector}"
            address = unique_email(f"hdr{n}")
            answer = http.post(
                f"{CLIENTS}/signup",
                json={
                    "name": named,
                    "email": address,
                    "password": PASSWORD,
                    "business_name": named,
                },
            )
            if answer.status_code == 422:
                refused += 1
                coach, result = signup(http, f"hdr{n}", name=marker, business_name=marker)
            else:
                assert answer.status_code == 201, answer.text
                result = answer.json()
                coach = Person(
                    address,
                    result["access_token"],
                    result["account"]["id"],
                    result["session_token"],
                )
            business_id = result["business"]["id"]
            invitee = unique_email(f"hdr{n}-invitee")
            invite(http, business_id, coach, f"{named} <{invitee}>")
            created = eventually(
                lambda named=named, business_id=business_id, coach=coach: (
                    (
                        r := http.post(
                            f"{CATALOG}/businesses/{business_id}/offerings",
                            json={
                                "name": named[:100],
                                "kind": "course",
                                "billing": {"type": "free"},
                                "price_minor": 0,
                                "currency": "usd",
                            },
                            headers=coach.headers,
                        )
                    ).status_code
                    != 404
                    and r
                ),
                what="the catalog knows the business",
            )
            if created.status_code == 422:
                refused += 1
                item = offering(http, business_id, coach, marker, kind="course", details={})
            else:
                assert created.status_code == 201, created.text
                item = http.post(
                    f"{CATALOG}/businesses/{business_id}/offerings/{created.json()['id']}/publish",
                    headers=coach.headers,
                ).json()
            buyer = unique_email(f"hdr{n}-buyer")
            order = http.post(
                f"{PAYMENTS}/orders",
                json={"offering_id": item["id"], "name": named[:200], "email": buyer},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if order.status_code == 422:
                refused += 1
                free_order(http, item["id"], None, name="Plain Buyer", email=buyer)
            for recipient in (coach.email, invitee, buyer):
                wait_for_markers(mail, recipient, {marker})
                for summary in mail.messages(recipient):
                    problems = header_problems(mail, summary, recipient)
                    assert problems == [], (vector, summary["subject"], problems)
                    checked += 1
    print(f"names: {len(vectors)} vectors, {refused} refused, {checked} emails checked")


# -- HTML and script ---------------------------------------------------------------------

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'><svg onload=alert(1)>'
RAW_MARKS = (
    "<script>alert(",
    "<img src=x",
    "<svg onload",
    'href="javascript:',
    "href='javascript:",
    "href=javascript:",
)


def xss(tag: str) -> str:
    return f"{tag}{XSS}"


def unescaped(html: str) -> list[str]:
    return [mark for mark in RAW_MARKS if mark in html]


def cookie_client(system: SystemStack, who: Person | None) -> httpx.Client:
    cookies = {"clientele_session": who.session_token} if who else {}
    return httpx.Client(base_url=system.gateway_url, cookies=cookies, timeout=30)


def test_html_and_script_in_every_text_field_are_escaped_on_pages_and_emails(
    system: SystemStack, mail: MailSink
) -> None:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as http:
        coach, result = signup(http, "xss", name=xss("coachname"), business_name=xss("biz"))
        business_id, slug = result["business"]["id"], result["business"]["slug"]
        book = f"{CLIENTS}/businesses/{business_id}"
        catalog = f"{CATALOG}/businesses/{business_id}"
        client_email = unique_email("xss-client")
        invite(http, business_id, coach, client_email)
        accepted = accept(http, invitation_token(mail, client_email), xss("clientname"))
        assert accepted.status_code in (200, 201), accepted.text
        body = accepted.json()
        client = Person(
            client_email, body["access_token"], body["account"]["id"], body["session_token"]
        )
        group = http.post(f"{book}/groups", json={"name": xss("group")}, headers=coach.headers)
        assert group.status_code == 201, group.text
        [listed] = http.get(f"{book}/clients", headers=coach.headers).json()["items"]
        http.post(
            f"{book}/groups/{group.json()['id']}/members",
            json={"client_ids": [listed["id"]]},
            headers=coach.headers,
        )
        schedule = http.put(
            f"{book}/schedule",
            json={
                "time_zone": "UTC",
                "weekly_hours": {
                    d: [["00:00", "24:00"]]
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                },
                "client_notice_hours": 1,
                "coupon_sites": [xss("site")[:200]],
            },
            headers=coach.headers,
        )
        assert schedule.status_code == 200, schedule.text
        agreement = offering(
            http,
            business_id,
            coach,
            xss("agreement")[:120],
            description=xss("agreementdesc"),
            details={"agreement_text": xss("agreementtext")},
        )
        worksheet = offering(
            http,
            business_id,
            coach,
            xss("worksheet")[:120],
            kind="worksheet",
            details={"questions": [xss("question")[:200]]},
        )
        appointment = offering(
            http,
            business_id,
            coach,
            xss("appt")[:120],
            kind="appointment",
            details={"duration_minutes": 30},
        )
        collection = http.post(
            f"{catalog}/collections",
            json={
                "name": xss("coll")[:120],
                "description": xss("colldesc"),
                "offering_ids": [agreement["id"]],
            },
            headers=coach.headers,
        )
        assert collection.status_code == 201, collection.text
        markdown = (
            f'{xss("md")}\n\n[click](javascript:alert(1)) <a href="javascript:alert(1)">a</a>'
        )
        campaign = http.post(
            f"{NOTIFY}/businesses/{business_id}/campaigns",
            json={
                "subject": xss("subject")[:200],
                "body_markdown": markdown,
                "audience": {"kind": "all"},
            },
            headers=coach.headers,
        )
        assert campaign.status_code == 201, campaign.text
        sequence = http.post(
            f"{NOTIFY}/businesses/{business_id}/sequences",
            json={
                "name": xss("seq")[:120],
                "offering_id": agreement["id"],
                "steps": [
                    {
                        "delay_minutes": 0,
                        "action": "email",
                        "email_subject": xss("stepsubject")[:200],
                        "email_body_markdown": markdown,
                    }
                ],
            },
            headers=coach.headers,
        )
        assert sequence.status_code == 201, sequence.text
        blocked = http.post(
            f"{book}/blocked-times",
            json={
                "starts_at": "2099-01-01T10:00:00Z",
                "ends_at": "2099-01-01T11:00:00Z",
                "reason": xss("reason")[:200],
            },
            headers=coach.headers,
        )
        assert blocked.status_code == 201, blocked.text

        # The client buys, signs, answers and books with the same kind of text.
        free_order(http, agreement["id"], client)
        free_order(http, worksheet["id"], client)
        forms = eventually(
            lambda: (
                (f := http.get(f"{CLIENTS}/me/forms", headers=client.headers).json()["items"])
                and len(f) == 2
                and f
            ),
            what="entitlements",
        )
        kinds = {f["kind"]: f["entitlement_id"] for f in forms}
        signed = http.post(
            f"{CLIENTS}/me/entitlements/{kinds['agreement']}/agreement/signature",
            json={"name": xss("signed")[:200]},
            headers=client.headers,
        )
        assert signed.status_code in (200, 201), signed.text
        answered = http.put(
            f"{CLIENTS}/me/entitlements/{kinds['worksheet']}/worksheet/answers",
            json={"answers": [xss("answer")]},
            headers=client.headers,
        )
        assert answered.status_code == 200, answered.text
        slots = eventually(
            lambda: (
                (
                    r := http.get(
                        f"{CLIENTS}/b/{slug}/appointment-offerings/{appointment['id']}/slots",
                        params={"tz": "UTC"},
                    )
                ).status_code
                == 200
                and r.json()["slots"]
            ),
            what="slots",
        )
        booked = http.post(
            f"{CLIENTS}/b/{slug}/appointments",
            json={
                "offering_id": appointment["id"],
                "starts_at": slots[-1]["starts_at"],
                "time_zone": "UTC",
                "pay_with": "free",
                "coupon_site": xss("site")[:200],
                "coupon_number": xss("num")[:100],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex, **client.headers},
        )
        assert booked.status_code in (200, 201), booked.text
        appointment_id = booked.json()["id"]
        sent = http.post(
            f"{NOTIFY}/businesses/{business_id}/campaigns/{campaign.json()['id']}/send",
            headers=coach.headers,
        )
        assert sent.status_code == 200, sent.text

    base = f"/businesses/{business_id}"
    coach_pages = [
        "/account",
        f"{base}/clients",
        f"{base}/clients/{listed['id']}",
        f"{base}/groups",
        f"{base}/groups/{group.json()['id']}",
        f"{base}/invitations",
        f"{base}/campaigns",
        f"{base}/campaigns/{campaign.json()['id']}",
        f"{base}/sequences",
        f"{base}/sequences/{sequence.json()['id']}",
        f"{base}/sequences/{sequence.json()['id']}/runs",
        f"{base}/offerings",
        f"{base}/offerings/{agreement['id']}",
        f"{base}/offerings/{agreement['id']}/preview",
        f"{base}/offerings/{worksheet['id']}",
        f"{base}/collections",
        f"{base}/collections/{collection.json()['id']}",
        f"{base}/emails",
        f"{base}/calendar",
        f"{base}/availability",
        f"{base}/activity",
    ]
    client_pages = [
        "/home",
        "/account",
        "/purchases",
        "/appointments",
        f"/agreements/{kinds['agreement']}",
        f"/worksheets/{kinds['worksheet']}",
        f"/appointments/{appointment_id}/reschedule",
        f"/b/{slug}",
        f"/b/{slug}/offerings/{agreement['id']}",
        f"/b/{slug}/collections/{collection.json()['id']}",
        f"/b/{slug}/offerings/{appointment['id']}/book",
        f"/b/{slug}/offerings/{agreement['id']}/checkout",
    ]
    anonymous_pages = [
        f"/b/{slug}",
        f"/b/{slug}?embed=1",
        f"/b/{slug}/offerings/{agreement['id']}",
        f"/b/{slug}/collections/{collection.json()['id']}",
        f"/b/{slug}/offerings/{agreement['id']}/checkout",
    ]
    problems, shown = [], 0
    for who, pages in ((coach, coach_pages), (client, client_pages), (None, anonymous_pages)):
        with cookie_client(system, who) as browser:
            for page in pages:
                answer = browser.get(page)
                assert answer.status_code == 200, (page, answer.status_code)
                if found := unescaped(answer.text):
                    problems.append(f"{page}: {found}")
                shown += answer.text.count("&lt;script&gt;")
    # Every email the coach and the client got (welcome, receipt, campaign, sequence, ...).
    mail.wait_for(client_email, xss("subject")[:20])
    mail.wait_for(client_email, "stepsubject")
    emails = 0
    for address in (coach.email, client_email):
        for summary in mail.messages(address):
            message = mail.message(summary["id"])
            emails += 1
            if found := unescaped(message["html"] or ""):
                problems.append(f"email {message['subject']!r}: {found}")
    print(
        f"escaping: {len(coach_pages) + len(client_pages) + len(anonymous_pages)} pages, "
        f"{emails} emails, {shown} escaped occurrences"
    )
    assert shown > 20, "the text was shown (escaped)"
    assert problems == []


# -- open redirects ------------------------------------------------------------------------

OPEN_REDIRECTS = (
    "//evil.example",
    "//evil.example/%2F..",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https:evil.example",
    "https://evil.example",
    "http:/\\evil.example",
    "%2F%2Fevil.example",
    "%2f%2fevil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    "%252F%252Fevil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " //evil.example",
    "\t//evil.example",
    "/\t/evil.example",
    "/\r\n/evil.example",
    "///evil.example",
    "////evil.example",
    "https://x@evil.example",
    "data:text/html,<script>alert(1)</script>",
)


def local(location: str) -> bool:
    parts = urlsplit(location)
    return (
        not parts.scheme
        and not parts.netloc
        and location.startswith("/")
        and not location.startswith(("//", "/\\"))
        and "evil" not in location
    )


def test_open_redirect_vectors_are_refused(
    system: SystemStack, businesses: tuple[Business, Business], mail: MailSink
) -> None:
    a, _ = businesses
    failures = []
    tried = 0
    for vector in OPEN_REDIRECTS:
        with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as web:
            # Pages that carry next into their form: the vector never reaches the page.
            for page in ("/login", "/signup", "/login/magic", "/claim", "/invitations/accept"):
                answer = web.get(f"{page}?next={quote(vector, safe='')}")
                tried += 1
                if "evil.example" in answer.text or "javascript:alert" in answer.text:
                    failures.append(f"GET {page} shows {vector!r}")
            form = web.get("/login")
            done = web.post(
                "/login",
                data={
                    "email": a.coach.email,
                    "password": PASSWORD,
                    "next": vector,
                    "csrf_token": csrf_from(form.text),
                },
            )
            tried += 1
            if done.status_code != 303 or not local(done.headers["location"]):
                failures.append(f"login next={vector!r} -> {done.headers.get('location')}")
        with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as web:
            form = web.get("/signup")
            done = web.post(
                "/signup",
                data={
                    "name": "R",
                    "email": unique_email("redir"),
                    "password": PASSWORD,
                    "business_name": "R",
                    "next": vector,
                    "csrf_token": csrf_from(form.text),
                },
            )
            tried += 1
            if done.status_code != 303 or not local(done.headers["location"]):
                failures.append(f"signup next={vector!r} -> {done.headers.get('location')}")
        # The magic link keeps no foreign next, in the email nor after the login.
        with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as web:
            before = len(mail.messages(a.client.email))
            answer = web.post(
                f"{CLIENTS}/magic-links", json={"email": a.client.email, "next": vector}
            )
            tried += 1
            if answer.status_code not in (202, 422):
                failures.append(f"magic link API next={vector!r} -> {answer.status_code}")
            if answer.status_code == 202:
                summaries = eventually(
                    lambda before=before: (
                        len(mail.messages(a.client.email)) > before
                        and mail.messages(a.client.email)
                    ),
                    what="the magic link email",
                )
                message = mail.message(summaries[0]["id"])
                link = mail.link(message, "/login/magic/confirm?token=")
                if "evil" in link or "javascript" in link.lower():
                    failures.append(f"magic link email carries {vector!r}: {link}")
                token = re.search(r"token=([^&]+)", link)
                assert token
                page = web.get(link)
                done = web.post(
                    "/login/magic/confirm",
                    data={"token": token.group(1), "csrf_token": csrf_from(page.text)},
                )
                if done.status_code != 303 or not local(done.headers["location"]):
                    failures.append(f"magic confirm {vector!r} -> {done.headers.get('location')}")
    print(f"open redirects: {len(OPEN_REDIRECTS)} vectors, {tried} requests")
    assert failures == [], "\n".join(failures)
