"""The storefront and the coach's catalog pages, through the gateway against every real process."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devtools.demo_catalog import DEMO_OFFERINGS, ensure_demo_catalog
from tests.e2e.conftest import unique_ip
from tests.e2e.test_gateway import PASSWORD, csrf_from, signup, unique_email
from tests.support.stack import MailSink, SystemStack

CLIENTS = "/api/v1/clients"
CATALOG = "/api/v1/catalog"
OPEN_REDIRECT_VECTORS = (
    "//evil.example",
    "/\\evil.example",
    "https://x@evil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "javascript:alert(1)",
)


@dataclass
class Coach:
    business_id: str
    slug: str
    name: str
    headers: dict[str, str]
    email: str

    @property
    def base(self) -> str:
        return f"{CATALOG}/businesses/{self.business_id}"


def new_coach(http: httpx.Client, business: str) -> Coach:
    email = unique_email("coach")
    result = signup(http, email, business_name=business)
    return Coach(
        result["business"]["id"],
        result["business"]["slug"],
        business,
        {"Authorization": f"Bearer {result['access_token']}"},
        email,
    )


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll until ``check()`` is truthy (read models are fed by events)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        time.sleep(0.2)


def offering(
    http: httpx.Client, coach: Coach, name: str, publish: bool = True, **fields: Any
) -> dict:
    body = {
        "name": name,
        "description": f"All about {name}.",
        "kind": "appointment",
        "details": {"duration_minutes": 60},
        "billing": {"type": "one_time"},
        "price_minor": 12000,
        "currency": "usd",
        "visibility": "public",
        **fields,
    }
    # The catalog learns about a new business from an event: retry until it knows it.
    created = eventually(
        lambda: (
            (r := http.post(f"{coach.base}/offerings", json=body, headers=coach.headers))
            and (r if r.status_code != 404 else None)
        ),
        what="the catalog knows the business",
    )
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    if publish:
        published = http.post(
            f"{coach.base}/offerings/{result['id']}/publish", headers=coach.headers
        )
        assert published.status_code == 200, published.text
        result = published.json()
    return result


def collection(
    http: httpx.Client, coach: Coach, name: str, offering_ids: list[str], **flags: bool
) -> dict:
    created = http.post(
        f"{coach.base}/collections",
        json={"name": name, "offering_ids": offering_ids, **flags},
        headers=coach.headers,
    )
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


@contextmanager
def browser_for(system: SystemStack, email: str) -> Iterator[httpx.Client]:
    """A cookie session, as a browser gets one through the login page."""
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as client:
        page = client.get("/login")
        done = client.post(
            "/login",
            data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page.text)},
        )
        assert done.status_code == 303, done.text
        yield client


def make_client(http: httpx.Client, coach: Coach, email: str) -> None:
    """An existing account is ``added`` at once; the catalog hears of it by event."""
    invited = http.post(
        f"{CLIENTS}/businesses/{coach.business_id}/invitations",
        json={"addresses": email},
        headers=coach.headers,
    )
    assert invited.status_code == 200, invited.text
    assert invited.json()["results"][0]["outcome"] == "added"


def meta(page: str, attribute: str, name: str) -> str | None:
    match = re.search(rf'<meta {attribute}="{re.escape(name)}" content="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


# -- the packages page ------------------------------------------------------------------------


def test_packages_page_html_and_json(system: SystemStack, http: httpx.Client) -> None:
    coach = new_coach(http, f"Harbour Pilates {uuid.uuid4().hex[:4]}")
    first = offering(http, coach, "Private session", capacity=3)
    offering(
        http,
        coach,
        "Monthly coaching",
        billing={"type": "recurring", "interval": "month", "interval_count": 1},
        price_minor=3000,
    )
    offering(http, coach, "Secret unlisted", visibility="unlisted")
    offering(http, coach, "Draft idea", publish=False)

    page = eventually(
        lambda: (
            (r := http.get(f"/b/{coach.slug}")).status_code == 200
            and "Monthly coaching" in r.text
            and r
        ),
        what="the packages page lists the offerings",
    )
    text = page.text
    assert f"<title>{coach.name}: offerings · Clientele</title>" in text
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in text
    assert "Private session" in (meta(text, "name", "description") or "")
    assert meta(text, "property", "og:title") == f"{coach.name}: offerings"
    assert meta(text, "property", "og:url") == f"{system.gateway_url}/b/{coach.slug}"
    assert meta(text, "property", "og:type") == "website"
    assert meta(text, "property", "og:description")
    assert '<main id="main"' in text and "site-header" in text
    assert "$120.00" in text and "One-time payment" in text and "3 spots left" in text
    assert "$30.00 / month" in text and "Subscription" in text
    assert "Secret unlisted" not in text and "Draft idea" not in text
    # An appointment's button leads to its booking page (a slot first, then payment).
    assert f'href="/b/{coach.slug}/offerings/{first["id"]}/book"' in text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    data = http.get(f"{CATALOG}/public/businesses/{coach.slug}/packages").json()
    assert data["business"]["slug"] == coach.slug
    assert [o["name"] for o in data["offerings"]] == ["Private session", "Monthly coaching"] or {
        o["name"] for o in data["offerings"]
    } == {"Private session", "Monthly coaching"}

    # The offering page, and the unlisted one by its link; checkout placeholder.
    detail = http.get(f"/b/{coach.slug}/offerings/{first['id']}")
    assert detail.status_code == 200
    assert meta(detail.text, "property", "og:type") == "product"
    assert "Private session" in detail.text and "60 minutes" in detail.text
    checkout = http.get(f"/b/{coach.slug}/offerings/{first['id']}/checkout")
    assert checkout.status_code == 200
    assert "Continue to payment" in checkout.text
    assert 'name="email"' in checkout.text and 'name="name"' in checkout.text
    assert http.get(f"/b/{coach.slug}/offerings/{uuid.uuid4()}").status_code == 404
    assert http.get("/b/no-such-business-here").status_code == 404
    assert http.get("/b/Not..A..Slug").status_code == 404

    # A logged-in visitor sees the same offerings; checkout skips the name/email step.
    with browser_for(system, coach.email) as browser:
        mine = browser.get(f"/b/{coach.slug}")
        assert "Monthly coaching" in mine.text and "Log out" in mine.text
        buying = browser.get(f"/b/{coach.slug}/offerings/{first['id']}/checkout")
        assert "Buying as" in buying.text and "Robin Coach" in buying.text
        assert 'name="email"' not in buying.text


def test_anonymous_packages_page_is_cached_until_the_catalog_changes(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Cached Studio {uuid.uuid4().hex[:4]}")
    offering(http, coach, "First class")
    eventually(
        lambda: "First class" in http.get(f"/b/{coach.slug}").text,
        what="the packages page lists the first offering",
    )
    # Polled: the publish event may still be on its way and empty the cache once more.
    again = eventually(
        lambda: (r := http.get(f"/b/{coach.slug}")).headers.get("x-cache") == "hit" and r,
        what="a second anonymous visit is answered from the cache",
    )
    assert "First class" in again.text
    assert "set-cookie" not in again.headers, "nothing per visitor in a shared page"
    assert again.headers["x-frame-options"] == "DENY"
    # The embed variant is its own entry, and keeps its framing headers when cached.
    framed = eventually(
        lambda: (r := http.get(f"/b/{coach.slug}?embed=1")).headers.get("x-cache") == "hit" and r,
        what="the embed variant is cached too",
    )
    assert "x-frame-options" not in framed.headers
    assert "frame-ancestors *" in framed.headers["content-security-policy"]
    assert "site-header" not in framed.text and "First class" in framed.text

    # A new offering is an event that empties the cache: the next visitor sees it.
    offering(http, coach, "Second class")
    eventually(
        lambda: "Second class" in http.get(f"/b/{coach.slug}").text,
        timeout=10,
        what="the cached page was invalidated by the catalog event",
    )
    # A logged-in visitor never gets the shared page: theirs has their own menu.
    with browser_for(system, coach.email) as browser:
        mine = browser.get(f"/b/{coach.slug}")
        assert "x-cache" not in mine.headers and "Log out" in mine.text


def test_embed_pages_may_be_framed_and_nothing_else(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, "Embed Studio")
    item = offering(http, coach, "Embedded session")
    framed = eventually(
        lambda: (r := http.get(f"/b/{coach.slug}?embed=1")).status_code == 200 and r,
        what="packages page",
    )
    assert "x-frame-options" not in framed.headers
    csp = framed.headers["content-security-policy"]
    assert "frame-ancestors *" in csp and "'none'" not in csp.split("frame-ancestors")[1]
    assert "x-clientele-frameable" not in framed.headers
    assert "site-header" not in framed.text and "site-footer" not in framed.text
    assert "embed-frame.js" in framed.text
    assert "Embedded session" in framed.text
    assert f"/b/{coach.slug}/offerings/{item['id']}?embed=1" in framed.text
    # The buy button leaves the frame.
    assert re.search(r'/(book|checkout)" target="_blank" rel="noopener"', framed.text)

    one = http.get(f"/b/{coach.slug}/offerings/{item['id']}?embed=1")
    assert "x-frame-options" not in one.headers

    # The exception is narrow: the same pages without embed=1, other pages, the API.
    for path in (
        f"/b/{coach.slug}",
        f"/b/{coach.slug}/offerings/{item['id']}",
        f"/b/{coach.slug}/offerings/{item['id']}/checkout?embed=1",
        "/login?embed=1",
        "/?embed=1",
        f"{CATALOG}/public/businesses/{coach.slug}/packages?embed=1",
    ):
        response = http.get(path)
        assert response.headers.get("x-frame-options") == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path

    script = http.get("/embed.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "clientele:height" in script.text and "data-clientele-button" in script.text


# -- redirects after login ----------------------------------------------------------------


@pytest.mark.parametrize("vector", OPEN_REDIRECT_VECTORS)
def test_login_never_redirects_offsite(system: SystemStack, vector: str) -> None:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as http:
        email = unique_email("redirect")
        signup(http, email)
        page = http.get("/login", params={"next": vector})
        assert page.status_code == 200
        assert 'name="next"' not in page.text, "an unsafe next is not carried in the form"
        posted = http.post(
            "/login",
            data={
                "email": email,
                "password": PASSWORD,
                "next": vector,
                "csrf_token": csrf_from(page.text),
            },
        )
        assert posted.status_code == 303
        assert posted.headers["location"] == "/account", vector
        # Already logged in: the login page sends you on, still never offsite.
        again = http.get("/login", params={"next": vector})
        assert again.status_code == 303 and again.headers["location"] == "/account", vector


@pytest.mark.parametrize("vector", OPEN_REDIRECT_VECTORS)
def test_signup_page_never_redirects_offsite(system: SystemStack, vector: str) -> None:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as http:
        page = http.get("/signup", params={"next": vector})
        assert 'name="next"' not in page.text
        posted = http.post(
            "/signup",
            data={
                "name": "Sam Signup",
                "email": unique_email("signup-next"),
                "password": PASSWORD,
                "business_name": "Sam's Studio",
                "next": vector,
                "csrf_token": csrf_from(page.text),
            },
        )
        assert posted.status_code == 303, posted.text
        assert posted.headers["location"] == "/account", vector


def test_magic_link_never_redirects_offsite(system: SystemStack, mail: MailSink) -> None:
    for vector in OPEN_REDIRECT_VECTORS:
        with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as http:
            email = unique_email("magic-next")
            signup(http, email)
            page = http.get("/login/magic", params={"next": vector})
            assert 'name="next"' not in page.text
            sent = http.post(
                "/login/magic",
                data={"email": email, "next": vector, "csrf_token": csrf_from(page.text)},
            )
            assert sent.status_code == 200
            [message] = mail.wait_for(email, "log in")
            link = mail.link(message, "/login/magic/confirm?token=")
            confirm = http.get(link)
            token = re.search(r"token=([^&]+)", link).group(1)
            done = http.post(
                "/login/magic/confirm",
                data={"token": token, "csrf_token": csrf_from(confirm.text)},
            )
            assert done.status_code == 303
            assert done.headers["location"] == "/account", vector


# -- established clients -------------------------------------------------------------------


def test_established_only_collection_redirects_then_403_then_shows(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, "Inner Circle")
    vip = offering(http, coach, "Clients-only session", visibility="established_only")
    public = offering(http, coach, "Open session")
    members = collection(
        http, coach, "For my clients", [vip["id"], public["id"]], in_app=True, established_only=True
    )
    path = f"/b/{coach.slug}/collections/{members['id']}"

    anonymous = eventually(
        lambda: (r := http.get(path)).status_code != 404 and r, what="collection known"
    )
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/login?next={quote(path)}"
    embedded = http.get(f"{path}?embed=1")
    assert embedded.status_code == 401 and 'target="_blank"' in embedded.text

    stranger_email = unique_email("stranger")
    signup(http, stranger_email)
    with browser_for(system, stranger_email) as stranger:
        refused = stranger.get(path)
        assert refused.status_code == 403
        assert "for established clients" in refused.text.lower()

    client_email = unique_email("client")
    signup(http, client_email)
    make_client(http, coach, client_email)
    # Logging in with next= lands back on the collection.
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as browser:
        login_page = browser.get(anonymous.headers["location"])
        assert f'name="next" value="{path}"' in login_page.text
        logged_in = browser.post(
            "/login",
            data={
                "email": client_email,
                "password": PASSWORD,
                "next": path,
                "csrf_token": csrf_from(login_page.text),
            },
        )
        assert logged_in.headers["location"] == path
        shown = eventually(
            lambda: (r := browser.get(path)).status_code == 200 and r, what="client known"
        )
        assert "For my clients" in shown.text
        assert "Clients-only session" in shown.text and "Open session" in shown.text
        assert "noindex" in shown.text


# -- the user menu --------------------------------------------------------------------------


def _menu(page: str) -> str:
    match = re.search(r'<nav class="site-nav".*?</nav>', page, re.S)
    assert match
    return match.group(0)


def test_menu_lists_in_app_collections(system: SystemStack, http: httpx.Client) -> None:
    first_coach = new_coach(http, f"Menu Yoga {uuid.uuid4().hex[:4]}")
    item = offering(http, first_coach, "Flow class")
    morning = collection(http, first_coach, "Morning classes", [item["id"]], in_app=True)
    collection(http, first_coach, "Not in the menu", [item["id"]], in_app=False)
    email = unique_email("menu-client")
    signup(http, email)
    make_client(http, first_coach, email)

    with browser_for(system, email) as browser:
        nav = eventually(
            lambda: "Morning classes" in (n := _menu(browser.get("/home").text)) and n,
            what="the menu lists the collection",
        )
        link = f'href="/b/{first_coach.slug}/collections/{morning["id"]}"'
        assert link in nav
        assert "<details" not in nav and "Not in the menu" not in nav

        collection(http, first_coach, "Evening classes", [item["id"]], in_app=True)
        nav = eventually(
            lambda: "Evening classes" in (n := _menu(browser.get("/account").text)) and n,
            timeout=30,
            what="the second collection after the cache expires",
        )
        assert "<summary" in nav and "Offerings" in nav and link in nav
        assert "menu__heading" not in nav, "one business: no grouping"

        second_coach = new_coach(http, f"Menu Pilates {uuid.uuid4().hex[:4]}")
        mat = offering(http, second_coach, "Mat class")
        collection(http, second_coach, "Pilates for clients", [mat["id"]], in_app=True)
        make_client(http, second_coach, email)
        nav = eventually(
            lambda: "Pilates for clients" in (n := _menu(browser.get("/home").text)) and n,
            what="grouped by business",
        )
        assert nav.count("menu__heading") == 2
        assert first_coach.name in nav and second_coach.name in nav


# -- cross-business isolation ---------------------------------------------------------------


def test_a_coach_gets_404_for_every_catalog_id_of_another_business(
    system: SystemStack, http: httpx.Client
) -> None:
    alpha = new_coach(http, "Alpha Catalog")
    beta = new_coach(http, "Beta Catalog")
    offering(http, alpha, "Alpha thing")
    b_offering = offering(http, beta, "Beta thing")
    b_collection = collection(http, beta, "Beta set", [b_offering["id"]])
    b_code = http.post(
        f"{beta.base}/discount-codes",
        json={"code": "BETA10", "percent_off": 10},
        headers=beta.headers,
    )
    assert b_code.status_code == 201, b_code.text
    code_id = b_code.json()["id"]
    version_id = b_offering["version_id"]

    # The API, with alpha's token: beta's ids under alpha's business, and beta's business.
    for method, path in (
        ("GET", f"{alpha.base}/offerings/{b_offering['id']}"),
        ("PATCH", f"{alpha.base}/offerings/{b_offering['id']}"),
        ("POST", f"{alpha.base}/offerings/{b_offering['id']}/archive"),
        ("GET", f"{alpha.base}/offerings/{b_offering['id']}/versions"),
        ("GET", f"{alpha.base}/offering-versions/{version_id}"),
        ("GET", f"{alpha.base}/collections/{b_collection['id']}"),
        ("DELETE", f"{alpha.base}/collections/{b_collection['id']}"),
        ("DELETE", f"{alpha.base}/discount-codes/{code_id}"),
        ("GET", f"{beta.base}/offerings"),
        ("GET", f"{beta.base}/collections"),
        ("GET", f"{beta.base}/discount-codes"),
        ("GET", f"{beta.base}/groups"),
    ):
        body = {"name": "Taken over"} if method == "PATCH" else None
        response = http.request(method, path, json=body, headers=alpha.headers)
        assert response.status_code == 404, (method, path, response.text)

    # The pages, logged in as alpha's coach.
    with browser_for(system, alpha.email) as browser:
        a = f"/businesses/{alpha.business_id}"
        b = f"/businesses/{beta.business_id}"
        for path in (
            f"{a}/offerings/{b_offering['id']}",
            f"{a}/offerings/{b_offering['id']}/preview",
            f"{a}/offering-versions/{version_id}",
            f"{a}/collections/{b_collection['id']}",
            f"{a}/collections/{b_collection['id']}/preview",
            f"{b}/offerings",
            f"{b}/offerings/{b_offering['id']}",
            f"{b}/collections",
            f"{b}/discount-codes",
        ):
            assert browser.get(path).status_code == 404, path
        csrf = csrf_from(browser.get(f"{a}/offerings").text)
        for path in (
            f"{a}/offerings/{b_offering['id']}/archive",
            f"{a}/collections/{b_collection['id']}/delete",
            f"{a}/discount-codes/{code_id}/delete",
        ):
            assert browser.post(path, data={"csrf_token": csrf}).status_code == 404, path
    # Nothing of beta's changed.
    still = http.get(f"{beta.base}/offerings/{b_offering['id']}", headers=beta.headers).json()
    assert still["status"] == "published" and still["name"] == "Beta thing"
    assert http.get(
        f"{beta.base}/collections/{b_collection['id']}", headers=beta.headers
    ).is_success
    assert [
        c["id"]
        for c in http.get(f"{beta.base}/discount-codes", headers=beta.headers).json()["items"]
    ] == [code_id]


# -- the coach's editor ------------------------------------------------------------------------


def test_coach_creates_edits_publishes_and_previews_through_the_pages(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, "Editor Studio")
    offering(http, coach, "Warm-up")  # the catalog knows the business now
    a = f"/businesses/{coach.business_id}"
    with browser_for(system, coach.email) as browser:
        listing = browser.get(f"{a}/offerings")
        assert listing.status_code == 200 and "Warm-up" in listing.text
        assert f'href="{a}/offerings"' in listing.text, "in the business nav"
        form = browser.get(f"{a}/offerings/new")
        csrf = csrf_from(form.text)
        assert 'data-show-when="kind:engagement"' in form.text

        # Errors: one the page finds (price), one the catalog finds (duration), shown by the fields.
        bad = browser.post(
            f"{a}/offerings",
            data={
                "csrf_token": csrf,
                "name": "Long talk",
                "kind": "appointment",
                "duration_minutes": "2",
                "billing_type": "one_time",
                "price": "abc",
                "currency": "USD",
                "visibility": "public",
            },
        )
        assert bad.status_code == 422
        assert 'id="field-price-error"' in bad.text
        bad = browser.post(
            f"{a}/offerings",
            data={
                "csrf_token": csrf,
                "name": "Long talk",
                "kind": "appointment",
                "duration_minutes": "2",
                "billing_type": "one_time",
                "price": "80",
                "currency": "USD",
                "visibility": "public",
            },
        )
        assert bad.status_code == 422
        assert 'id="field-duration_minutes-error"' in bad.text
        assert 'value="Long talk"' in bad.text, "what was typed stays"

        created = browser.post(
            f"{a}/offerings",
            data={
                "csrf_token": csrf,
                "name": "Ten sessions",
                "description": "A bundle.",
                "kind": "engagement",
                "credits": "10",
                "billing_type": "payment_plan",
                "installments": "4",
                "interval": "month",
                "interval_count": "1",
                "price": "50.00",
                "currency": "usd",
                "visibility": "public",
                "capacity": "5",
            },
        )
        assert created.status_code == 303, created.text
        editor_path = created.headers["location"]
        oid = editor_path.rsplit("/", 1)[1]
        editor = browser.get(editor_path)
        assert "Draft" in editor.text and "4 × $50.00 monthly" in editor.text
        assert "<dialog" in editor.text and "Embed / Link" in editor.text
        assert f"{system.gateway_url}/b/{coach.slug}/offerings/{oid}" in editor.text
        assert "data-clientele-button" in editor.text and "/embed.js" in editor.text

        published = browser.post(f"{editor_path}/publish", data={"csrf_token": csrf})
        assert published.status_code == 303
        edited = browser.post(
            editor_path,
            data={
                "csrf_token": csrf,
                "name": "Ten sessions plus",
                "kind": "engagement",
                "credits": "12",
                "billing_type": "payment_plan",
                "installments": "4",
                "interval": "month",
                "interval_count": "1",
                "price": "55",
                "currency": "USD",
                "visibility": "public",
            },
        )
        assert edited.status_code == 303
        editor = browser.get(editor_path)
        assert "Version 2" in editor.text and "v1" in editor.text and "v2" in editor.text

        preview = browser.get(f"{editor_path}/preview")
        assert preview.status_code == 200
        assert "Preview" in preview.text and "Ten sessions plus" in preview.text
        assert "disabled" in preview.text and "/checkout" not in preview.text

        # A collection with both flags, through its form.
        made = browser.post(
            f"{a}/collections",
            data={
                "csrf_token": csrf,
                "name": "Bundles",
                "offering_ids": [oid],
                f"position-{oid}": "1",
                "in_app": "on",
                "established_only": "on",
            },
        )
        assert made.status_code == 303, made.text
        page = browser.get(made.headers["location"])
        assert "List this for in-app access by established clients" in page.text
        assert "Available only to established clients" in page.text
        assert page.text.count("checked") >= 3
        cid = made.headers["location"].rsplit("/", 1)[1]
        stored = http.get(f"{coach.base}/collections/{cid}", headers=coach.headers).json()
        assert stored["in_app"] and stored["established_only"]
        assert stored["offering_ids"] == [oid]
        collection_preview = browser.get(f"{made.headers['location']}/preview")
        assert (
            "Ten sessions plus" in collection_preview.text and "Preview" in collection_preview.text
        )

        # Discount codes.
        code = browser.post(
            f"{a}/discount-codes",
            data={
                "csrf_token": csrf,
                "code": "SPRING20",
                "discount_kind": "percent",
                "amount": "20",
            },
        )
        assert code.status_code == 303, code.text
        codes = browser.get(f"{a}/discount-codes")
        assert "SPRING20" in codes.text and "20% off" in codes.text
        again = browser.post(
            f"{a}/discount-codes",
            data={
                "csrf_token": csrf,
                "code": "spring20",
                "discount_kind": "percent",
                "amount": "5",
            },
        )
        assert again.status_code in (409, 422) and 'id="field-code-error"' in again.text


# -- the catalog being down ------------------------------------------------------------------


def test_pages_survive_the_catalog_being_down(system: SystemStack, http: httpx.Client) -> None:
    email = unique_email("down")
    signup(http, email)
    with browser_for(system, email) as browser:
        system.kill("catalog-api")
        try:
            time.sleep(6)  # past the menu cache
            home = browser.get("/account")
            assert home.status_code == 200
            assert "Log out" in home.text
        finally:
            system.restart("catalog-api")


def test_make_run_demo_catalog_is_created_once_through_the_api(
    system: SystemStack, http: httpx.Client
) -> None:
    coach = new_coach(http, f"Demo {uuid.uuid4().hex[:4]}")
    path = ensure_demo_catalog(system.gateway_url, coach.email, PASSWORD)
    assert path == f"/b/{coach.slug}"
    assert ensure_demo_catalog(system.gateway_url, coach.email, PASSWORD) == path
    offerings = http.get(f"{coach.base}/offerings", headers=coach.headers).json()["items"]
    assert sorted(o["name"] for o in offerings) == sorted(o["name"] for o in DEMO_OFFERINGS)
    assert all(o["status"] == "published" for o in offerings)
    [programs] = http.get(f"{coach.base}/collections", headers=coach.headers).json()["items"]
    assert programs["in_app"] and programs["established_only"]
    page = eventually(
        lambda: (r := http.get(path)).status_code == 200 and "Monthly coaching" in r.text,
        what="the demo storefront lists the offerings",
    )
    assert page
