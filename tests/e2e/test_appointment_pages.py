"""The appointment pages through the gateway against every real process: who may open the
calendar and availability pages, login for "my appointments", CSRF on every post, and a
paid request going on to the checkout with its appointment."""

from __future__ import annotations

import re
import uuid
from html import unescape

import httpx

from tests.e2e.test_catalog import CLIENTS, browser_for, eventually, new_coach, offering
from tests.e2e.test_gateway import csrf_from, unique_email
from tests.support.stack import SystemStack

ALL_DAY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def _first_slot(page: str) -> str:
    match = re.search(r'class="btn btn--secondary btn--sm slot" href="([^"]+)"', page)
    assert match, "the booking page lists free slots"
    return unescape(match.group(1))


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name!r}"
    return unescape(match.group(1))


def test_coach_pages_need_a_coach_of_the_business_and_csrf(
    system: SystemStack, http: httpx.Client
) -> None:
    owner = new_coach(http, f"Calendar Studio {uuid.uuid4().hex[:4]}")
    other = new_coach(http, f"Other Studio {uuid.uuid4().hex[:4]}")
    calendar = f"/businesses/{owner.business_id}/calendar"
    availability = f"/businesses/{owner.business_id}/availability"

    # Anonymous: to the login page.
    for path in (calendar, availability):
        response = http.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")

    with browser_for(system, other.email) as stranger:
        for path in (calendar, f"{calendar}?week=2030-01-07", availability):
            assert stranger.get(path).status_code == 404, path
        token = csrf_from(stranger.get(f"/businesses/{other.business_id}/calendar").text)
        refused = stranger.post(
            availability,
            data={"csrf_token": token, "time_zone": "UTC", "client_notice_hours": "1"},
        )
        assert refused.status_code == 404
        action = stranger.post(
            f"{calendar}/{uuid.uuid4()}/confirm", data={"csrf_token": token, "week": ""}
        )
        assert action.status_code == 404

    with browser_for(system, owner.email) as coach:
        page = coach.get(calendar)
        assert page.status_code == 200
        assert "Calendar" in page.text and "Previous week" in page.text
        assert 'href="/businesses/' + owner.business_id + '/availability"' in page.text
        week = coach.get(f"{calendar}?week=2031-05-14")  # a Wednesday: its Monday's week
        assert week.status_code == 200 and "Mon 12 May 2031" in week.text
        form = coach.get(availability)
        assert form.status_code == 200 and 'name="hours_mon"' in form.text
        token = csrf_from(form.text)
        fields = {
            "time_zone": "Europe/Paris",
            "hours_mon": "09:00-12:00, 13:00-17:00",
            "hours_sat": "10:00-12:00",
            "client_notice_hours": "12",
            "reminder_hours_before": "2",
            "coupon_sites": "Groupon\nLivingSocial",
        }
        # Without the CSRF token: refused, nothing saved.
        assert coach.post(availability, data=fields).status_code == 403
        assert coach.post(availability, data={**fields, "csrf_token": "x" * 43}).status_code == 403
        schedule = httpx.get(
            f"{system.gateway_url}{CLIENTS}/businesses/{owner.business_id}/schedule",
            headers=owner.headers,
        ).json()
        assert schedule["time_zone"] == "UTC"

        saved = coach.post(availability, data={**fields, "csrf_token": token})
        assert saved.status_code == 303, saved.text
        schedule = httpx.get(
            f"{system.gateway_url}{CLIENTS}/businesses/{owner.business_id}/schedule",
            headers=owner.headers,
        ).json()
        assert schedule["time_zone"] == "Europe/Paris"
        assert schedule["weekly_hours"]["mon"] == [["09:00", "12:00"], ["13:00", "17:00"]]
        assert schedule["client_notice_hours"] == 12 and schedule["reminder_hours_before"] == 2
        assert schedule["coupon_sites"] == ["Groupon", "LivingSocial"]
        shown = coach.get(availability).text
        assert 'value="09:00-12:00, 13:00-17:00"' in shown and "LivingSocial" in shown

        # A zone the service does not know, and hours it cannot read: errors by the fields.
        bad = coach.post(
            availability,
            data={**fields, "time_zone": "Mars/Olympus", "csrf_token": token},
        )
        assert bad.status_code == 422 and "field-time_zone-error" in bad.text
        unreadable = coach.post(
            availability, data={**fields, "hours_tue": "nine to five", "csrf_token": token}
        )
        assert unreadable.status_code == 422 and "field-hours_tue-error" in unreadable.text

        # Blocked times: CSRF, then added in the business's zone, then deleted.
        blocked = f"{availability}/blocked"
        times = {"starts_at": "2031-01-05T09:00", "ends_at": "2031-01-05T18:00", "reason": "Off"}
        assert coach.post(blocked, data=times).status_code == 403
        added = coach.post(blocked, data={**times, "csrf_token": token})
        assert added.status_code == 303, added.text
        [item] = httpx.get(
            f"{system.gateway_url}{CLIENTS}/businesses/{owner.business_id}/blocked-times",
            headers=owner.headers,
        ).json()["items"]
        assert item["starts_at"].startswith("2031-01-05T08:00")  # 09:00 in Paris, in UTC
        delete = f"{blocked}/{item['id']}/delete"
        assert coach.post(delete).status_code == 403
        assert coach.post(delete, data={"csrf_token": token}).status_code == 303
        assert coach.post(f"{calendar}/{uuid.uuid4()}/confirm").status_code == 403


def test_my_appointments_needs_login_and_a_paid_request_goes_to_checkout(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Booking Studio {uuid.uuid4().hex[:4]}")
    put = httpx.put(
        f"{system.gateway_url}{CLIENTS}/businesses/{coach.business_id}/schedule",
        json={
            "time_zone": "UTC",
            "weekly_hours": ALL_DAY,
            "client_notice_hours": 1,
            "reminder_hours_before": 0,
            "coupon_sites": ["Groupon"],
        },
        headers=coach.headers,
    )
    assert put.status_code == 200, put.text
    paid = offering(http, coach, "Paid session", details={"duration_minutes": 30})
    free = offering(
        http,
        coach,
        "Free intro",
        details={"duration_minutes": 30},
        billing={"type": "free"},
        price_minor=0,
    )

    # My appointments: login first; posts need a session and the CSRF token.
    mine = http.get("/appointments")
    assert mine.status_code == 303 and mine.headers["location"].startswith("/login?next=")
    assert http.post(f"/appointments/{uuid.uuid4()}/cancel").status_code == 303
    with browser_for(system, coach.email) as someone:
        page = someone.get("/appointments")
        assert page.status_code == 200 and "My appointments" in page.text
        assert someone.post(f"/appointments/{uuid.uuid4()}/cancel").status_code == 403
        assert someone.post(f"/appointments/{uuid.uuid4()}/reschedule").status_code == 403
        assert "/appointments" in someone.get("/home").text

    # The storefront's offering page books an appointment offering.
    offering_page = eventually(
        lambda: (r := http.get(f"/b/{coach.slug}/offerings/{free['id']}")).status_code == 200 and r,
        what="the storefront knows the offering",
    )
    assert f'href="/b/{coach.slug}/offerings/{free["id"]}/book"' in offering_page.text

    # A request needs the CSRF token.
    book = f"/b/{coach.slug}/offerings/{paid['id']}/book"
    page = http.get(book, params={"tz": "Asia/Tokyo"})
    assert page.status_code == 200 and "Asia/Tokyo" in page.text
    chosen = http.get(_first_slot(page.text))
    assert chosen.status_code == 200 and "Send request" in chosen.text
    assert 'name="coupon_site"' in chosen.text and "Groupon" in chosen.text
    assert "Pay $120.00" in chosen.text
    request = {
        "idempotency_key": _hidden(chosen.text, "idempotency_key"),
        "slot": _hidden(chosen.text, "slot"),
        "tz": _hidden(chosen.text, "tz"),
        "name": "Pat Payer",
        "email": unique_email("payer"),
        "pay_with": "order",
        "coupon_number": "A-1",
    }
    refused = http.post(book, data=request)
    assert refused.status_code == 403 and "This form expired" in refused.text

    # A paid offering: the request waits for its payment, made through the checkout.
    # (The refusal came with a new CSRF token: the old one no longer counts.)
    sent = http.post(book, data={**request, "csrf_token": csrf_from(refused.text)})
    assert sent.status_code == 303, sent.text
    location = sent.headers["location"]
    assert location.startswith(f"/b/{coach.slug}/offerings/{paid['id']}/checkout?appointment_id=")
    appointment_id = location.rsplit("=", 1)[1]
    checkout = http.get(location)
    assert f'name="appointment_id" value="{appointment_id}"' in checkout.text
    order = http.post(
        location.split("?")[0],
        data={
            "csrf_token": csrf_from(checkout.text),
            "idempotency_key": _hidden(checkout.text, "idempotency_key"),
            "appointment_id": appointment_id,
            "name": request["name"],
            "email": request["email"],
        },
    )
    assert order.status_code == 200 and "Payment" in order.text, order.text
    orders = httpx.get(
        f"{system.gateway_url}/api/v1/payments/businesses/{coach.business_id}/orders",
        headers=coach.headers,
    ).json()["items"]
    [made] = [o for o in orders if o["buyer_email"] == request["email"]]
    assert made["appointment_id"] == appointment_id

    # A free offering: the request is sent at once; taken slots show a clear refusal.
    free_book = f"/b/{coach.slug}/offerings/{free['id']}/book"
    page = http.get(free_book, params={"tz": "UTC"})
    chosen = http.get(_first_slot(page.text))
    assert "Free" in chosen.text
    data = {
        "csrf_token": csrf_from(chosen.text),
        "idempotency_key": _hidden(chosen.text, "idempotency_key"),
        "slot": _hidden(chosen.text, "slot"),
        "tz": "UTC",
        "name": "Fay Free",
        "email": unique_email("free"),
        "pay_with": "free",
        "coupon_site": "Nowhere",
    }
    wrong_site = http.post(free_book, data=data)
    assert wrong_site.status_code == 422 and "field-coupon_site-error" in wrong_site.text
    data["coupon_site"] = "Groupon"
    data["idempotency_key"] = _hidden(wrong_site.text, "idempotency_key")
    done = http.post(free_book, data=data)
    assert done.status_code == 200, done.text
    assert "Request sent — the coach will confirm" in done.text
    assert "(UTC)" in done.text and "Groupon" in done.text
    # Asking for a time that is no longer free: said clearly, the slots shown again.
    gone = http.get(free_book, params={"tz": "UTC", "slot": "2020-01-01T09:00:00Z"})
    assert "That time is no longer free" in gone.text


def test_a_client_reschedules_and_cancels_within_the_notice_period(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Notice Studio {uuid.uuid4().hex[:4]}")
    client = new_coach(http, f"Client Own Studio {uuid.uuid4().hex[:4]}")
    schedule_url = f"{system.gateway_url}{CLIENTS}/businesses/{coach.business_id}/schedule"
    schedule = {
        "time_zone": "UTC",
        "weekly_hours": ALL_DAY,
        "client_notice_hours": 1,
        "reminder_hours_before": 0,
        "coupon_sites": [],
    }
    assert httpx.put(schedule_url, json=schedule, headers=coach.headers).status_code == 200
    free = offering(
        http,
        coach,
        "Free check-in",
        details={"duration_minutes": 30},
        billing={"type": "free"},
        price_minor=0,
    )
    book = f"/b/{coach.slug}/offerings/{free['id']}/book"
    with browser_for(system, client.email) as browser:
        page = browser.get(book, params={"tz": "Europe/Berlin"})
        slots = re.findall(r'class="btn btn--secondary btn--sm slot" href="([^"]+)"', page.text)
        chosen = browser.get(unescape(slots[-1]))  # far from now: the notice period allows it
        assert "Booking as" in chosen.text and 'name="email"' not in chosen.text
        done = browser.post(
            book,
            data={
                "csrf_token": csrf_from(chosen.text),
                "idempotency_key": _hidden(chosen.text, "idempotency_key"),
                "slot": _hidden(chosen.text, "slot"),
                "tz": "Europe/Berlin",
                "pay_with": "free",
            },
        )
        assert done.status_code == 200 and "Request sent" in done.text, done.text

        mine = browser.get("/appointments", params={"tz": "Europe/Berlin"})
        assert "Free check-in" in mine.text and "Requested" in mine.text
        [appointment_id] = re.findall(r'action="/appointments/([0-9a-f-]+)/cancel"', mine.text)
        picker = browser.get(
            f"/appointments/{appointment_id}/reschedule", params={"tz": "Europe/Berlin"}
        )
        assert picker.status_code == 200 and "Move to this time" in picker.text
        times = re.findall(r'name="starts_at" value="([^"]+)"', picker.text)
        moved = browser.post(
            f"/appointments/{appointment_id}/reschedule",
            data={
                "csrf_token": csrf_from(picker.text),
                "starts_at": times[-2],
                "tz": "Europe/Berlin",
            },
        )
        assert moved.status_code == 303, moved.text
        listed = httpx.get(
            f"{system.gateway_url}{CLIENTS}/me/appointments",
            headers=client.headers,
        ).json()["items"]
        assert [a["starts_at"].replace("+00:00", "Z") for a in listed] == [times[-2]]

        # Past the notice period (the coach asks for a year's notice): refused clearly.
        schedule["client_notice_hours"] = 24 * 365
        assert httpx.put(schedule_url, json=schedule, headers=coach.headers).status_code == 200
        mine = browser.get("/appointments")
        assert "Too close to change online" in mine.text
        refused = browser.post(
            f"/appointments/{appointment_id}/cancel", data={"csrf_token": csrf_from(mine.text)}
        )
        assert refused.status_code == 409 and "Changes are possible until" in refused.text

        schedule["client_notice_hours"] = 1
        assert httpx.put(schedule_url, json=schedule, headers=coach.headers).status_code == 200
        canceled = browser.post(
            f"/appointments/{appointment_id}/cancel", data={"csrf_token": csrf_from(mine.text)}
        )
        assert canceled.status_code == 303
        after = browser.get(canceled.headers["location"])
        assert "Your appointment was canceled." in after.text and "Canceled" in after.text
