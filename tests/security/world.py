"""Two businesses with a coach, a client, a group member and one of everything, built
through the gateway's public API (the way a real coach and real clients make them)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import unique_ip
from tests.e2e.test_catalog import eventually
from tests.e2e.test_gateway import PASSWORD, unique_email
from tests.support.stack import MailSink, SystemStack

CLIENTS = "/api/v1/clients"
NOTIFY = "/api/v1/notifications"
CATALOG = "/api/v1/catalog"
PAYMENTS = "/api/v1/payments"
ALL_DAY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Person:
    email: str
    token: str
    account_id: str
    session_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Business:
    """A business, its people and the ids of what it holds (path parameter name -> id)."""

    label: str
    id: str
    slug: str
    name: str
    coach: Person
    client: Person
    member: Person
    ids: dict[str, str] = field(default_factory=dict)
    agreement_entitlement: str = ""
    worksheet_entitlement: str = ""


def signup(http: httpx.Client, label: str, **extra: str) -> tuple[Person, dict[str, Any]]:
    address = unique_email(label)
    body = {
        "name": f"{label} coach",
        "email": address,
        "password": PASSWORD,
        "business_name": f"{label} studio",
        **extra,
    }
    answer = http.post(f"{CLIENTS}/signup", json=body)
    assert answer.status_code == 201, answer.text
    result = answer.json()
    return Person(
        address, result["access_token"], result["account"]["id"], result["session_token"]
    ), result


def invitation_token(mail: MailSink, address: str) -> str:
    [message] = mail.wait_for(address, "invited you")
    link = mail.link(message, "/invitations/accept?token=")
    found = re.search(r"token=([^&]+)", link)
    assert found
    return found.group(1)


def accept(http: httpx.Client, token: str, name: str) -> httpx.Response:
    return http.post(
        f"{CLIENTS}/invitations/accept", json={"token": token, "name": name, "password": PASSWORD}
    )


def invite(http: httpx.Client, business_id: str, coach: Person, addresses: str) -> list[Any]:
    answer = http.post(
        f"{CLIENTS}/businesses/{business_id}/invitations",
        json={"addresses": addresses},
        headers=coach.headers,
    )
    assert answer.status_code == 200, answer.text
    results: list[Any] = answer.json()["results"]
    return results


def create(http: httpx.Client, path: str, body: dict[str, Any], who: Person) -> dict[str, Any]:
    answer = eventually(
        lambda: (r := http.post(path, json=body, headers=who.headers)).status_code != 404 and r,
        what=f"{path} knows the business",
    )
    assert answer.status_code in (200, 201), (path, answer.text)
    result: dict[str, Any] = answer.json()
    return result


def offering(
    http: httpx.Client, business_id: str, coach: Person, name: str, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": name,
        "description": f"About {name}.",
        "kind": "agreement",
        "details": {"agreement_text": "I agree."},
        "billing": {"type": "free"},
        "price_minor": 0,
        "currency": "usd",
        "visibility": "public",
        **fields,
    }
    base = f"{CATALOG}/businesses/{business_id}/offerings"
    made = create(http, base, body, coach)
    published = http.post(f"{base}/{made['id']}/publish", headers=coach.headers)
    assert published.status_code == 200, published.text
    result: dict[str, Any] = published.json()
    return result


def free_order(http: httpx.Client, offering_id: str, buyer: Person | None, **body: Any) -> Any:
    answer = eventually(
        lambda: (
            (
                r := http.post(
                    f"{PAYMENTS}/orders",
                    json={"offering_id": offering_id, **body},
                    headers={
                        "Idempotency-Key": uuid.uuid4().hex,
                        **(buyer.headers if buyer else {}),
                    },
                )
            ).status_code
            != 404
            and r
        ),
        what="payments can quote the offering",
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def build_business(
    system: SystemStack, mail: MailSink, label: str, *, subscription: bool = False
) -> Business:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as http:
        coach, result = signup(http, label)
        business_id = result["business"]["id"]
        client_email, member_email, pending_email = (
            unique_email(f"{label}-client"),
            unique_email(f"{label}-member"),
            unique_email(f"{label}-pending"),
        )
        invite(http, business_id, coach, f"{client_email}, {member_email}, {pending_email}")
        people = []
        for address, role in ((client_email, "client"), (member_email, "member")):
            accepted = accept(http, invitation_token(mail, address), f"{label} {role}")
            assert accepted.status_code in (200, 201), accepted.text
            body = accepted.json()
            people.append(
                Person(address, body["access_token"], body["account"]["id"], body["session_token"])
            )
        client, member = people
        business = Business(
            label,
            business_id,
            result["business"]["slug"],
            result["business"]["name"],
            coach,
            client,
            member,
        )
        ids = business.ids
        ids["business_id"] = business_id
        ids["slug"] = business.slug
        book = f"{CLIENTS}/businesses/{business_id}"
        listed = http.get(f"{book}/clients", headers=coach.headers).json()["items"]
        by_email = {c["email"]: c["id"] for c in listed}
        ids["client_id"] = by_email[client_email]
        group = create(http, f"{book}/groups", {"name": f"{label} group"}, coach)
        ids["group_id"] = group["id"]
        added = http.post(
            f"{book}/groups/{group['id']}/members",
            json={"client_ids": [by_email[member_email]]},
            headers=coach.headers,
        )
        assert added.status_code == 200, added.text
        invitations = http.get(f"{book}/invitations", headers=coach.headers).json()["items"]
        ids["invitation_id"] = next(i["id"] for i in invitations if i["email"] == pending_email)
        start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=40)
        blocked = create(
            http,
            f"{book}/blocked-times",
            {
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=1)).isoformat(),
                "reason": "away",
            },
            coach,
        )
        ids["blocked_id"] = blocked["id"]
        schedule = http.put(
            f"{book}/schedule",
            json={"time_zone": "UTC", "weekly_hours": ALL_DAY, "client_notice_hours": 1},
            headers=coach.headers,
        )
        assert schedule.status_code == 200, schedule.text

        # The catalog: an appointment, an agreement, a worksheet; a collection and a code.
        appointment_offering = offering(
            http,
            business_id,
            coach,
            f"{label} check-in",
            kind="appointment",
            details={"duration_minutes": 30},
        )
        agreement = offering(http, business_id, coach, f"{label} agreement")
        worksheet = offering(
            http,
            business_id,
            coach,
            f"{label} worksheet",
            kind="worksheet",
            details={"questions": ["What is your goal?"]},
        )
        ids["offering_id"] = agreement["id"]
        ids["version_id"] = agreement["version_id"]
        catalog = f"{CATALOG}/businesses/{business_id}"
        ids["collection_id"] = create(
            http,
            f"{catalog}/collections",
            {"name": "All", "offering_ids": [agreement["id"]]},
            coach,
        )["id"]
        ids["code_id"] = create(
            http, f"{catalog}/discount-codes", {"code": f"{label}10", "percent_off": 10}, coach
        )["id"]
        notify = f"{NOTIFY}/businesses/{business_id}"
        ids["campaign_id"] = create(
            http,
            f"{notify}/campaigns",
            {"subject": "Hello", "body_markdown": "Hi", "audience": {"kind": "all"}},
            coach,
        )["id"]
        ids["sequence_id"] = create(
            http,
            f"{notify}/sequences",
            {
                "name": "Onboarding",
                "offering_id": agreement["id"],
                "steps": [
                    {
                        "delay_minutes": 0,
                        "action": "email",
                        "email_subject": "Welcome",
                        "email_body_markdown": "Welcome aboard.",
                    }
                ],
            },
            coach,
        )["id"]

        # The client buys the agreement and the worksheet, and books the appointment.
        order = free_order(http, agreement["id"], client)
        ids["order_id"] = order["order"]["id"]
        free_order(http, worksheet["id"], client)
        forms = eventually(
            lambda: (
                (f := http.get(f"{CLIENTS}/me/forms", headers=client.headers).json()["items"])
                and len(f) == 2
                and f
            ),
            what="the purchases made entitlements",
        )
        kinds = {f["kind"]: f["entitlement_id"] for f in forms}
        business.agreement_entitlement = kinds["agreement"]
        business.worksheet_entitlement = kinds["worksheet"]
        ids["entitlement_id"] = kinds["agreement"]
        slots_path = (
            f"{CLIENTS}/b/{business.slug}/appointment-offerings/{appointment_offering['id']}/slots"
        )
        slots = eventually(
            lambda: (
                (r := http.get(slots_path, params={"tz": "UTC"})).status_code == 200
                and r.json()["slots"]
            ),
            what="the clients service knows the appointment offering",
        )
        booked = http.post(
            f"{CLIENTS}/b/{business.slug}/appointments",
            json={
                "offering_id": appointment_offering["id"],
                "starts_at": slots[-1]["starts_at"],
                "time_zone": "UTC",
                "pay_with": "free",
            },
            headers={"Idempotency-Key": uuid.uuid4().hex, **client.headers},
        )
        assert booked.status_code in (200, 201), booked.text
        ids["appointment_id"] = booked.json()["id"]
        ids["appointment_offering_id"] = appointment_offering["id"]
        ids["slot"] = slots[-2]["starts_at"]
        if subscription:
            from tests.e2e.test_billing import MONTHLY, subscribed

            monthly = offering(
                http,
                business_id,
                coach,
                f"{label} monthly",
                kind="course",
                details={},
                billing=MONTHLY,
                price_minor=2000,
            )
            ids["subscription_id"] = subscribed(system, http, monthly["id"], client.email)
        return business
