"""Through the gateway, against every real process: clients, notifications, SMTP sink."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
import urllib.request
import uuid
from typing import Any

import httpx
import jwt

from clients.identity.signing import derive_private_key
from tests.e2e.conftest import unique_ip
from tests.support import tokens
from tests.support.stack import MailSink, SystemStack

API = "/api/v1/clients"
PASSWORD = "correct horse battery staple"


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def signup(http: httpx.Client, email_address: str, **extra: str) -> dict[str, Any]:
    response = http.post(
        f"{API}/signup",
        json={
            "name": "Robin Coach",
            "email": email_address,
            "password": PASSWORD,
            "business_name": "Robin's Coaching",
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


def raw_message(mail: MailSink, message_id: str) -> email.message.EmailMessage:
    with urllib.request.urlopen(f"{mail.base_url}/messages/{message_id}/raw") as response:
        return email.message_from_bytes(response.read(), policy=email.policy.default)


# -- signup and the welcome email ---------------------------------------------------


def test_signup_through_gateway_sends_welcome_email_with_headers_and_links(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    address = unique_email("welcome")
    result = signup(http, address)
    [welcome] = mail.wait_for(address, "welcome")
    raw = raw_message(mail, welcome["id"])

    assert raw["To"] == address
    assert "Clientele" in raw["From"]
    assert raw["Message-ID"].startswith("<") and raw["Message-ID"].endswith("@clientele>")
    assert raw["Date"]
    assert raw.get_content_type() == "multipart/alternative"
    verify_link = mail.link(welcome, "/verify-email?token=")
    assert verify_link.startswith(f"{system.gateway_url}/verify-email?token=")
    assert all(link.startswith(system.gateway_url) for link in welcome["links"])

    # The link works: the page shows a button; its POST verifies the address.
    page = http.get(verify_link)
    assert page.status_code == 200
    assert "Confirm my email address" in page.text
    me = http.get(f"{API}/me", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert me.json()["account"]["email_verified"] is False, "a GET must not verify"
    token = verify_link.split("token=", 1)[1]
    posted = http.post("/verify-email", data={"token": token, "csrf_token": csrf_from(page.text)})
    assert posted.status_code == 200 and "verified" in posted.text.lower()
    me = http.get(f"{API}/me", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert me.json()["account"]["email_verified"] is True


def test_smtp_server_refusing_for_a_while_delays_but_does_not_lose_mail(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    address = unique_email("delayed")
    signup(http, address)
    mail.wait_for(address, "welcome")
    fault = json.dumps({"code": 421, "message": "Try again later", "seconds": 4}).encode()
    request = urllib.request.Request(
        f"{mail.base_url}/_control/faults",
        data=fault,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()
    started = time.monotonic()
    assert http.post(f"{API}/magic-links", json={"email": address}).status_code == 202
    time.sleep(2)
    assert [m for m in mail.messages(address) if "log in" in m["subject"].lower()] == []
    [delivered] = mail.wait_for(address, "log in", timeout=60)
    assert time.monotonic() - started >= 3.5, "it was delivered only after the refusals ended"
    time.sleep(2)
    again = [m for m in mail.messages(address) if "log in" in m["subject"].lower()]
    assert len(again) == 1, "delivered exactly once"
    assert delivered["links"]


# -- magic links ----------------------------------------------------------------------


def test_magic_link_is_single_use_and_not_consumed_by_get(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    address = unique_email("magic")
    signup(http, address)
    http.post(f"{API}/magic-links", json={"email": address, "next": "/account"})
    [message] = mail.wait_for(address, "log in")
    link = mail.link(message, "/login/magic/confirm?token=")
    token = re.search(r"token=([^&]+)", link).group(1)

    with httpx.Client(base_url=system.gateway_url, headers=unique_ip()) as browser:
        for _ in range(3):  # a mail scanner following the link, several times
            page = browser.get(link)
            assert page.status_code == 200
            assert "clientele_session" not in page.cookies
        confirmed = browser.post(
            "/login/magic/confirm", data={"token": token, "csrf_token": csrf_from(page.text)}
        )
        assert confirmed.status_code == 303
        assert confirmed.headers["location"] == "/account"
        cookie = confirmed.headers["set-cookie"]
        assert "clientele_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert browser.get("/account").status_code == 200

    with httpx.Client(base_url=system.gateway_url, headers=unique_ip()) as other:
        page = other.get(link)
        reused = other.post(
            "/login/magic/confirm", data={"token": token, "csrf_token": csrf_from(page.text)}
        )
        assert reused.status_code == 410
        assert "expired or was already used" in reused.text
        assert "clientele_session" not in reused.cookies


# -- tokens -----------------------------------------------------------------------------


def test_bad_tokens_are_refused_by_the_gateway_and_by_the_service(
    system: SystemStack, http: httpx.Client
) -> None:
    signup(http, unique_email("tokens"))
    jwk = http.get(f"{API}/.well-known/jwks.json").json()["keys"][0]
    key = derive_private_key(system.env["SECRET_KEY"])
    variants = tokens.broken_variants(key, jwk["kid"], jwk["x"])
    direct = system.url_of("clients")
    for kind, token in variants.items():
        headers = {"Authorization": f"Bearer {token}"}
        via_gateway = http.get(f"{API}/me", headers=headers)
        assert via_gateway.status_code == 401, kind
        assert via_gateway.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{direct}{API}/me", headers=headers).status_code == 401, kind
    good = jwt.decode(tokens.valid(key, jwk["kid"]), options={"verify_signature": False})
    assert good["aud"] == "clientele", "the control token is well formed"


def test_login_rate_limit_answers_429_with_retry_after(
    system: SystemStack, http: httpx.Client
) -> None:
    address = unique_email("limited")
    signup(http, address)
    statuses = [
        http.post(f"{API}/sessions", json={"email": address, "password": "wrong password x"})
        for _ in range(11)
    ]
    assert [r.status_code for r in statuses[:10]] == [401] * 10
    assert statuses[10].status_code == 429
    assert int(statuses[10].headers["retry-after"]) >= 1
    # The right password does not get through either while limited.
    blocked = http.post(f"{API}/sessions", json={"email": address, "password": PASSWORD})
    assert blocked.status_code == 429


def test_login_page_is_rate_limited_too(system: SystemStack, http: httpx.Client) -> None:
    page = http.get("/login")
    csrf = csrf_from(page.text)
    answers = [
        http.post(
            "/login",
            data={"email": "x@example.com", "password": "nope nope nope", "csrf_token": csrf},
        )
        for _ in range(11)
    ]
    assert answers[-1].status_code == 429
    assert "Too many attempts" in answers[-1].text


def test_duplicate_email_is_409_and_bad_input_is_422_naming_the_field(
    system: SystemStack, http: httpx.Client
) -> None:
    address = unique_email("dup")
    signup(http, address)
    duplicate = http.post(
        f"{API}/signup",
        json={"name": "X", "email": address.upper(), "password": PASSWORD, "business_name": "X"},
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"

    other = unique_email("bad")
    bad = http.post(
        f"{API}/signup",
        json={"name": "X", "email": other, "password": "short", "business_name": "X"},
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["password"]
    login = http.post(f"{API}/sessions", json={"email": other, "password": "short"})
    assert login.status_code == 401, "the refused signup created nothing"


# -- sessions, CSRF, headers -------------------------------------------------------------


def test_cookie_session_csrf_and_logout(system: SystemStack, mail: MailSink) -> None:
    address = unique_email("cookie")
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip()) as browser:
        page = browser.get("/signup")
        assert page.status_code == 200
        form = {
            "name": "Cookie Coach",
            "email": address,
            "password": PASSWORD,
            "business_name": "Cookie Co",
            "csrf_token": csrf_from(page.text),
        }
        created = browser.post("/signup", data=form)
        assert created.status_code == 303 and created.headers["location"] == "/account"
        account = browser.get("/account")
        assert "Cookie Co" in account.text and address in account.text

        # The cookie works for the JSON API too, but writes need the CSRF header.
        assert browser.get(f"{API}/me").json()["account"]["email"] == address
        no_csrf = browser.post(f"{API}/email-verifications")
        assert no_csrf.status_code == 403
        with_csrf = browser.post(
            f"{API}/email-verifications",
            headers={"X-CSRF-Token": browser.cookies["clientele_csrf"]},
        )
        assert with_csrf.status_code == 202
        cross_site = browser.post(
            f"{API}/email-verifications",
            headers={
                "X-CSRF-Token": browser.cookies["clientele_csrf"],
                "Origin": "https://evil.example",
            },
        )
        assert cross_site.status_code == 403

        # A form post without the token changes nothing.
        forged = browser.post("/logout", data={})
        assert forged.status_code == 403
        assert browser.get("/account").status_code == 200

        session_cookie = browser.cookies["clientele_session"]
        out = browser.post("/logout", data={"csrf_token": browser.cookies["clientele_csrf"]})
        assert out.status_code == 303
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip()) as replay:
        replay.cookies.set("clientele_session", session_cookie)
        after = replay.get("/account")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        assert replay.get(f"{API}/me").status_code == 401


def test_security_headers_and_request_ids(system: SystemStack, http: httpx.Client) -> None:
    for path in ("/", "/login", f"{API}/.well-known/jwks.json"):
        response = http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "same-origin"
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])

    chosen = f"test-{uuid.uuid4().hex}"
    answered = http.get(f"{API}/.well-known/jwks.json", headers={"X-Request-ID": chosen})
    assert answered.headers["x-request-id"] == chosen
    assert len(answered.headers.get_list("x-request-id")) == 1
    deadline = time.monotonic() + 5
    while chosen not in system.log("clients-api") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert chosen in system.log("clients-api"), "the service logged the gateway's request id"
    hostile = http.get("/", headers={"X-Request-ID": "evil id; with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"]), "unsafe ids replaced"


def test_unknown_api_and_internal_headers(system: SystemStack, http: httpx.Client) -> None:
    missing = http.get("/api/v1/nothing/here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    # A client claiming to be someone through internal headers gains nothing.
    spoofed = http.get(
        f"{API}/me",
        headers={"X-Clientele-Account-Id": str(uuid.uuid4()), "X-Forwarded-User": "admin"},
    )
    assert spoofed.status_code == 401


def test_health_endpoints(system: SystemStack) -> None:
    for url in (system.gateway_url, system.url_of("clients"), system.url_of("notifications")):
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text


def test_one_correlation_id_links_the_logs_of_every_process_and_each_serves_metrics(
    system: SystemStack, http: httpx.Client, mail: MailSink
) -> None:
    chosen = f"journey-{uuid.uuid4().hex}"
    address = unique_email("correlated")
    response = http.post(
        f"{API}/signup",
        json={
            "name": "Robin Coach",
            "email": address,
            "password": PASSWORD,
            "business_name": "Robin's Coaching",
        },
        headers={"X-Correlation-ID": chosen},
    )
    assert response.status_code == 201, response.text
    mail.wait_for(address, "welcome")
    # The gateway, the api that took the request, and the worker of another service
    # that handled the event it caused (queueing the email) all logged the same id.
    for name in ("gateway", "clients-api", "notifications-worker"):
        lines = [line for line in system.log(name).splitlines() if chosen in line]
        assert lines, f"{name} never logged the correlation id"
    [queued] = [
        json.loads(line)
        for line in system.log("notifications-worker").splitlines()
        if chosen in line and "email_queued" in line
    ]
    assert queued["correlation_id"] == chosen
    assert queued["event_name"] == "clients.account_registered.v1"
    assert queued["request_id"] == response.headers["x-request-id"]

    for port in (
        system.ports.gateway,
        system.ports.clients,
        system.ports.clients_worker_metrics,
        system.ports.notifications_worker_metrics,
        system.ports.catalog_worker_metrics,
        system.ports.payments_worker_metrics,
    ):
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200
        assert "clientele_outbox_backlog" in scraped.text
    clients_api = httpx.get(f"http://127.0.0.1:{system.ports.clients}/metrics").text
    assert 'route="/api/v1/clients/signup",status="201"' in clients_api
    gateway = httpx.get(f"{system.gateway_url}/metrics").text
    assert 'route="proxy:clients",status="201"' in gateway
    worker = httpx.get(f"http://127.0.0.1:{system.ports.notifications_worker_metrics}/metrics")
    assert 'clientele_events_consumed_total{event="clients.account_registered.v1"}' in worker.text
