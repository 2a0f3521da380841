"""Scenario 9: who may touch what. Every route with an id, from each service's own OpenAPI
document, is called directly and through the gateway by the coach, a client, a group
member of business A and by nobody, with the ids of business B (and A's business id with
B's ids): none succeeds, and an id of another business is a 404, never a 403. Then every
JSON body takes the fields an attacker would like to set, and nothing changes."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tests.security.world import Business, Person
from tests.support.stack import SystemStack

T = TypeVar("T")
SERVICES = ("clients", "notifications", "catalog", "payments")
PAGE_MODULES = (
    "activity",
    "appointments",
    "billing",
    "catalog_coach",
    "checkout",
    "coach",
    "forms",
    "sequences",
    "storefront",
)
MASS_ASSIGNMENT = {
    "business_id": str(uuid.uuid4()),
    "role": "owner",
    "price": 0,
    "price_minor": 0,
    "status": "paid",
    "is_established": True,
    "amount_minor": 1,
}
# Answers that change with the clock or the workers (a sequence's run counts), not callers.
VOLATILE = {"client_can_change", "overdue", "spots_left", "expires_in", "now", "runs"}


# One keep-alive pool for the thousands of calls, shared by the worker threads.
HTTP = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32))


def in_parallel(tasks: list[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda task: task(), tasks))


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    params: tuple[str, ...]
    body: str | None  # the request body's schema name
    fields: tuple[str, ...] = ()  # the body's own fields

    @property
    def public(self) -> bool:
        return "/b/{slug}" in self.path or "/public/" in self.path

    @property
    def personal(self) -> bool:
        """Routes of the caller's own things: their owner is a client, not the coach."""
        return "/businesses/{business_id}" not in self.path and not self.public


def openapi_routes(system: SystemStack) -> list[Route]:
    found = []
    for service in SERVICES:
        spec = httpx.get(f"{system.url_of(service)}/openapi.json", timeout=10).json()
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                params = tuple(
                    p["name"] for p in operation.get("parameters", []) if p["in"] == "path"
                )
                content = operation.get("requestBody", {}).get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1] or None
                schema = spec.get("components", {}).get("schemas", {}).get(name or "", {})
                fields = tuple(schema.get("properties", {}))
                found.append(Route(service, method.upper(), path, params, name, fields))
    return found


def fill(route_path: str, params: tuple[str, ...], source: dict[str, str], b: Business) -> str:
    path = route_path
    for name in params:
        value = source[name]
        if name == "entitlement_id" and "worksheet" in route_path:
            value = source.get("worksheet_entitlement", value)
        if name == "offering_id" and (
            "appointment-offerings" in route_path or route_path.endswith("/book")
        ):
            value = source["appointment_offering_id"]
        path = path.replace("{" + name + "}", value)
    return path


def values(b: Business) -> dict[str, str]:
    return {**b.ids, "worksheet_entitlement": b.worksheet_entitlement}


def body_for(schema: str | None, target: dict[str, str]) -> Any:
    """A body that would be valid, so an answer is about the ids and never about the body."""
    later_at = (datetime.now(UTC) + timedelta(days=50)).replace(second=0, microsecond=0)
    later, after = later_at.isoformat(), (later_at + timedelta(hours=1)).isoformat()
    bodies: dict[str, Any] = {
        "GroupIn": {"name": "taken over"},
        "MembersIn": {"client_ids": [target["client_id"]]},
        "InviteIn": {"addresses": "stranger@example.com"},
        "ScheduleIn": {"time_zone": "UTC", "weekly_hours": {}},
        "BlockedTimeIn": {"starts_at": later, "ends_at": after, "reason": "x"},
        "RescheduleIn": {"starts_at": target["slot"]},
        "SignIn": {"name": "Someone Else"},
        "AnswersIn": {"answers": ["taken over"]},
        "CampaignCreate": {"subject": "x", "body_markdown": "x", "audience": {"kind": "all"}},
        "CampaignUpdate": {"subject": "taken over"},
        "SequenceIn": {
            "name": "taken over",
            "steps": [
                {
                    "delay_minutes": 0,
                    "action": "email",
                    "email_subject": "x",
                    "email_body_markdown": "x",
                }
            ],
        },
        "OfferingIn": {
            "name": "x",
            "kind": "course",
            "billing": {"type": "free"},
            "price_minor": 0,
            "currency": "usd",
        },
        "OfferingPatch": {"name": "taken over"},
        "CollectionIn": {"name": "x"},
        "CollectionPatch": {"name": "taken over"},
        "DiscountCodeIn": {"code": "TAKEN", "percent_off": 99},
        "PayIn": {"payment_method_id": "pm_card_visa"},
        "NewCardIn": {"payment_method_id": "pm_card_visa"},
        "RefundIn": {},
        "AppointmentRequestIn": {
            "offering_id": target["appointment_offering_id"],
            "starts_at": target["slot"],
            "time_zone": "UTC",
            "pay_with": "free",
        },
    }
    if schema is None:
        return None
    assert schema in bodies, f"add a valid {schema} body to this test"
    return bodies[schema]


def call(base: str, route: Route, path: str, who: Person | None, body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": uuid.uuid4().hex, **(who.headers if who else {})}
    return HTTP.request(
        route.method,
        f"{base}{path}",
        json=body,
        headers=headers,
        timeout=20,
        follow_redirects=False,
    )


def snapshot(system: SystemStack, routes: list[Route], b: Business) -> dict[str, Any]:
    """Everything B's coach and client can read about B, each answer a 200."""
    seen: dict[str, Any] = {}
    for route in routes:
        if route.method != "GET" or route.public or not route.params:
            continue
        if route.path.endswith(("/emails", "/runs")):
            continue  # logs the workers write as mail goes out, whatever the callers do
        owner = b.client if route.personal else b.coach
        path = fill(route.path, route.params, values(b), b)
        answer = call(system.url_of(route.service), route, path, owner, None)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        seen[path] = scrub(answer.json())
    return seen


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def attacks(routes: list[Route], a: Business, b: Business) -> list[tuple[str, Route, str, Any]]:
    """(label, route, path, body): B's ids, then A's business (or slug) with B's other ids."""
    planned = []
    target = values(b)
    for route in routes:
        if not route.params or route.path.endswith("/webhooks/stripe"):
            continue
        if not route.public:
            planned.append(
                (
                    "B's ids",
                    route,
                    fill(route.path, route.params, target, b),
                    body_for(route.body, target),
                )
            )
        scope = {"business_id", "slug"} & set(route.params)
        if scope and len(route.params) > 1:
            mixed = {**target, **{k: a.ids[k] for k in scope}}
            planned.append(
                (
                    "A's scope, B's ids",
                    route,
                    fill(route.path, route.params, mixed, b),
                    body_for(route.body, target),
                )
            )
    return planned


def test_authorization_matrix_api(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    a, b = businesses
    routes = openapi_routes(system)
    with_ids = [r for r in routes if r.params]
    assert len(with_ids) >= 70, "the OpenAPI documents list every route"
    before = snapshot(system, routes, b)
    actors: dict[str, Person | None] = {
        "coach": a.coach,
        "client": a.client,
        "member": a.member,
        "anonymous": None,
    }
    planned = attacks(routes, a, b)
    # Inside A: its client and member against its coach's routes, the member against
    # the client's own things.
    own = values(a)
    for route in with_ids:
        if route.public or route.path.endswith("/webhooks/stripe"):
            continue
        if not set(route.params) <= own.keys():
            continue  # A has no subscription: B's is in the cross-business attacks
        path = fill(route.path, route.params, own, a)
        if route.personal:
            planned.append(("A's client's ids", route, path, body_for(route.body, own)))
        else:
            planned.append(("A's coach routes", route, path, body_for(route.body, own)))
    calls = []
    for label, route, path, body in planned:
        for where, base in (
            ("direct", system.url_of(route.service)),
            ("gateway", system.gateway_url),
        ):
            for role, who in actors.items():
                if label == "A's coach routes" and role == "coach":
                    continue  # that is the coach's own business
                if label == "A's client's ids" and role in ("client", "coach"):
                    continue
                calls.append(
                    (f"{where} {role} {label}: {route.method} {path}", base, route, path, who, body)
                )

    def attempt(
        item: tuple[str, str, Route, str, Person | None, Any],
    ) -> Callable[[], str | None]:
        def run() -> str | None:
            what, base, route, path, who, body = item
            answer = call(base, route, path, who, body)
            allowed = (401, 404) if who is None else (404,)
            if answer.status_code not in allowed:
                return f"{what} -> {answer.status_code} {answer.text[:160]}"
            return None

        return run

    failures = [f for f in in_parallel([attempt(item) for item in calls]) if f]
    checked = len(calls)
    print(f"authorization matrix: {len(planned)} requests x roles = {checked} calls")
    assert failures == [], "\n".join(failures)
    assert_unchanged(before, snapshot(system, routes, b))


def page_routes() -> list[tuple[str, tuple[str, ...]]]:
    found = []
    for name in PAGE_MODULES:
        module = importlib.import_module(f"gateway.pages.{name}")
        for route in module.router.routes:
            path = getattr(route, "path", "")
            if "GET" in getattr(route, "methods", ()) and "{" in path:
                params = tuple(part[1:-1] for part in path.split("/") if part.startswith("{"))
                found.append((path, params))
    return found


def browser(system: SystemStack, who: Person | None) -> httpx.Client:
    cookies = {"clientele_session": who.session_token} if who else {}
    return httpx.Client(base_url=system.gateway_url, cookies=cookies, timeout=20)


def test_authorization_matrix_pages(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    a, b = businesses
    pages = page_routes()
    assert len(pages) >= 30
    target = values(b)
    failures = []
    checked = 0
    for path, params in pages:
        personal = not path.startswith(("/businesses/", "/b/"))
        if "subscription_id" in params:
            continue  # its own matrix below: the page also takes an emailed token
        full = fill(path, params, target, b)
        # The owner sees it: the ids are real.
        with browser(system, b.client if personal else b.coach) as owner:
            seen = owner.get(full)
            moved_on = seen.status_code == 303 and not seen.headers["location"].startswith(
                "/login"
            )  # a paid order's processing page goes on to the order
            assert seen.status_code == 200 or moved_on, (full, seen.status_code)
        variants = [] if path.startswith("/b/") else [full]  # B's storefront is public
        scope = {k: a.ids[k] for k in ("business_id", "slug") if k in params}
        if scope and len(params) > len(scope):  # A's business with B's other ids
            variants.append(fill(path, params, {**target, **scope}, b))
        for variant in variants:
            for role, who in (
                ("coach", a.coach),
                ("client", a.client),
                ("member", a.member),
                ("anonymous", None),
            ):
                with browser(system, who) as visitor:
                    answer = visitor.get(variant)
                checked += 1
                to_login = answer.status_code == 303 and answer.headers["location"].startswith(
                    "/login"
                )
                if not (answer.status_code == 404 or (who is None and to_login)):
                    failures.append(f"{role}: GET {variant} -> {answer.status_code}")
    print(f"page matrix: {checked} calls")
    assert failures == [], "\n".join(failures)


def test_subscription_card_page_is_only_for_its_buyer(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    a, b = businesses
    path = f"/billing/subscriptions/{b.ids['subscription_id']}/card"
    for who in (a.coach, a.client, a.member, b.coach, b.member):
        with browser(system, who) as visitor:
            assert visitor.get(path).status_code == 404, who.email
    with browser(system, None) as visitor:
        assert visitor.get(path).status_code in (303, 404)
        assert visitor.get(path, params={"token": "forged"}).status_code in (303, 404)


def test_mass_assignment_is_refused_everywhere(
    system: SystemStack, businesses: tuple[Business, Business]
) -> None:
    """Every JSON body, sent by the one who may send it, with each field an attacker would
    like to set: 422 naming the field (every input model forbids extras), nothing stored."""
    _a, b = businesses
    routes = [r for r in openapi_routes(system) if r.body]
    before = snapshot(system, openapi_routes(system), b)
    tasks = []
    for route in routes:
        owner = b.client if route.personal else b.coach
        path = fill(route.path, route.params, values(b), b) if route.params else route.path
        valid = body_for(route.body, values(b)) if route.body in KNOWN_BODIES else {}
        for name, value in MASS_ASSIGNMENT.items():
            if name in route.fields:
                continue  # the owner's own field to set (a price of an offering)
            for base in (system.url_of(route.service), system.gateway_url):
                tasks.append(assigning(base, route, path, owner, valid, name, value))
    failures = [f for f in in_parallel(tasks) if f]
    tried = len(tasks)
    print(f"mass assignment: {len(routes)} bodies x {len(MASS_ASSIGNMENT)} fields: {tried}")
    assert failures == [], "\n".join(failures)
    assert_unchanged(before, snapshot(system, openapi_routes(system), b))


def assigning(
    base: str, route: Route, path: str, owner: Person, valid: Any, name: str, value: Any
) -> Callable[[], str | None]:
    def run() -> str | None:
        answer = call(base, route, path, owner, {**valid, name: value})
        named = answer.status_code == 422 and any(
            name in str(e.get("field")) for e in answer.json().get("errors", [])
        )
        if named:
            return None
        return f"{route.method} {path} +{name} -> {answer.status_code} {answer.text[:160]}"

    return run


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = {
        path: (json.dumps(before.get(path), sort_keys=True), json.dumps(value, sort_keys=True))
        for path, value in after.items()
        if before.get(path) != value
    }
    assert changed == {}, "an attack changed B's data"


KNOWN_BODIES = {
    "GroupIn",
    "MembersIn",
    "InviteIn",
    "ScheduleIn",
    "BlockedTimeIn",
    "RescheduleIn",
    "SignIn",
    "AnswersIn",
    "CampaignCreate",
    "CampaignUpdate",
    "SequenceIn",
    "OfferingIn",
    "OfferingPatch",
    "CollectionIn",
    "CollectionPatch",
    "DiscountCodeIn",
    "PayIn",
    "NewCardIn",
    "RefundIn",
    "AppointmentRequestIn",
}


@pytest.mark.parametrize("field", sorted(MASS_ASSIGNMENT))
def test_signup_and_invitation_acceptance_take_no_role_or_business(
    system: SystemStack, http: httpx.Client, field: str
) -> None:
    answer = http.post(
        "/api/v1/clients/signup",
        json={
            "name": "Eve",
            "email": f"eve-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery staple",
            "business_name": "Eve's",
            field: MASS_ASSIGNMENT[field],
        },
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]
