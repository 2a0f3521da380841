"""Offerings: drafts edited in place, published versions frozen, events through the outbox,
and each business seeing only its own ids."""

from __future__ import annotations

import uuid

from tests.catalog.conftest import API, Catalog

PUBLISHED = "catalog.offering_published.v1"
ARCHIVED = "catalog.offering_archived.v1"


async def test_a_draft_is_edited_in_place_and_announced_only_when_published(
    catalog: Catalog,
) -> None:
    biz = await catalog.business()
    created = await catalog.create_offering(biz, capacity=10)
    assert created["status"] == "draft"
    assert (created["version"], created["currency"], created["spots_left"]) == (1, "USD", 10)
    assert created["business_id"] == str(biz.id)

    edited = await catalog.http.patch(
        biz.url(f"/offerings/{created['id']}"), json={"price_minor": 9900}, headers=biz.coach
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["version"], edited.json()["version_id"]) == (1, created["version_id"])
    assert edited.json()["price_minor"] == 9900
    assert await catalog.outbox_events() == []

    published = await catalog.publish(biz, created["id"])
    assert published["status"] == "published" and published["published_at"]
    [event] = await catalog.outbox_events(PUBLISHED)
    assert event["business_id"] == str(biz.id)
    assert event["offering_id"] == created["id"] and event["version_id"] == created["version_id"]
    assert (event["version"], event["name"], event["kind"]) == (1, "Strength program", "course")
    assert (event["price_minor"], event["currency"], event["visibility"]) == (9900, "USD", "public")
    assert event["billing"] == {"type": "one_time"} and event["group_ids"] == []

    # Publishing again changes nothing and announces nothing.
    await catalog.publish(biz, created["id"])
    assert len(await catalog.outbox_events(PUBLISHED)) == 1

    listed = await catalog.http.get(biz.url("/offerings"), headers=biz.coach)
    assert [o["id"] for o in listed.json()["items"]] == [created["id"]]
    drafts = await catalog.http.get(biz.url("/offerings?status=draft"), headers=biz.coach)
    assert drafts.json()["items"] == []


async def test_editing_a_published_offering_makes_a_new_version(catalog: Catalog) -> None:
    biz = await catalog.business()
    v1 = await catalog.published_offering(biz, price_minor=12000)

    response = await catalog.http.patch(
        biz.url(f"/offerings/{v1['id']}"),
        json={"price_minor": 15000, "name": "Strength program 2"},
        headers=biz.coach,
    )
    assert response.status_code == 200, response.text
    v2 = response.json()
    assert v2["version"] == 2 and v2["version_id"] != v1["version_id"]
    assert (v2["price_minor"], v2["name"], v2["status"]) == (
        15000,
        "Strength program 2",
        "published",
    )

    # The old version is still readable by its id, unchanged.
    old = await catalog.http.get(
        biz.url(f"/offering-versions/{v1['version_id']}"), headers=biz.coach
    )
    assert old.status_code == 200
    assert (old.json()["version"], old.json()["price_minor"]) == (1, 12000)
    assert old.json()["name"] == "Strength program"
    versions = await catalog.http.get(biz.url(f"/offerings/{v1['id']}/versions"), headers=biz.coach)
    assert [(v["version"], v["price_minor"]) for v in versions.json()["items"]] == [
        (2, 15000),
        (1, 12000),
    ]

    # Quotes use the newest version.
    quote = await catalog.quote(v1["id"])
    assert quote.status_code == 200, quote.text
    assert (quote.json()["version"], quote.json()["version_id"]) == (2, v2["version_id"])
    assert (quote.json()["price_minor"], quote.json()["total_minor"]) == (15000, 15000)

    # The new version is announced like a publication.
    events = await catalog.outbox_events(PUBLISHED)
    assert [(e["version"], e["price_minor"]) for e in events] == [(1, 12000), (2, 15000)]

    # An edit that changes nothing makes no version.
    same = await catalog.http.patch(
        biz.url(f"/offerings/{v1['id']}"), json={"price_minor": 15000}, headers=biz.coach
    )
    assert same.json()["version"] == 2
    assert len(await catalog.outbox_events(PUBLISHED)) == 2


async def test_archiving_hides_it_and_is_announced(catalog: Catalog) -> None:
    biz = await catalog.business()
    offering = await catalog.published_offering(biz)
    archived = await catalog.http.post(
        biz.url(f"/offerings/{offering['id']}/archive"), headers=biz.coach
    )
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    [event] = await catalog.outbox_events(ARCHIVED)
    assert (event["offering_id"], event["business_id"]) == (offering["id"], str(biz.id))

    refused = await catalog.quote(offering["id"])
    assert (refused.status_code, refused.json()["reason"]) == (404, "not_published")
    page = await catalog.http.get(f"{API}/public/businesses/{biz.slug}/offerings/{offering['id']}")
    assert page.status_code == 404
    edit = await catalog.http.patch(
        biz.url(f"/offerings/{offering['id']}"), json={"price_minor": 1}, headers=biz.coach
    )
    assert edit.status_code == 409

    # Publishing it again brings it back (and says so).
    await catalog.publish(biz, offering["id"])
    assert (await catalog.quote(offering["id"])).status_code == 200
    assert len(await catalog.outbox_events(PUBLISHED)) == 2


async def test_kind_details_and_prices_are_shown_as_buyers_read_them(catalog: Catalog) -> None:
    biz = await catalog.business()
    group = await catalog.group(biz, "Runners")
    cases = [
        ({"kind": "appointment", "details": {"duration_minutes": 50}}, "$120.00"),
        (
            {
                "kind": "engagement",
                "details": {"credits": 10, "credit_expiry_days": 90},
                "billing": {"type": "recurring", "interval": "month"},
                "price_minor": 3000,
            },
            "$30.00 / month",
        ),
        (
            {
                "kind": "group",
                "details": {"group_id": str(group)},
                "billing": {"type": "payment_plan", "installments": 4, "interval": "month"},
                "price_minor": 5000,
            },
            "4 × $50.00 monthly",
        ),
        (
            {
                "kind": "agreement",
                "details": {"agreement_text": "I agree."},
                "billing": {"type": "free"},
                "price_minor": 0,
            },
            "Free",
        ),
        ({"kind": "package", "details": {"includes": ["3 sessions", "a plan"]}}, "$120.00"),
        ({"kind": "worksheet", "currency": "jpy", "price_minor": 1500}, "¥1,500"),
    ]
    for fields, label in cases:
        created = await catalog.published_offering(biz, **fields)
        assert created["price_label"] == label, "the coach API labels prices too"
    page = await catalog.http.get(f"{API}/public/businesses/{biz.slug}/packages")
    assert page.status_code == 200, page.text
    assert page.json()["business"] == {"id": str(biz.id), "name": biz.name, "slug": biz.slug}
    cards = page.json()["offerings"]
    assert [c["price_label"] for c in cards] == [label for _, label in cases]
    assert cards[0]["details"] == {"duration_minutes": 50}
    assert cards[1]["details"] == {"credits": 10, "credit_expiry_days": 90}
    assert cards[1]["billing"] == {"type": "recurring", "interval": "month", "interval_count": 1}
    assert cards[5]["currency"] == "JPY"


async def test_the_group_picker_lists_the_businesss_live_groups(catalog: Catalog) -> None:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    await catalog.group(biz, "Runners")
    await catalog.group(biz, "Climbers")
    await catalog.group(other, "Not yours")
    response = await catalog.http.get(biz.url("/groups"), headers=biz.coach)
    assert [g["name"] for g in response.json()["items"]] == ["Climbers", "Runners"]
    assert (await catalog.http.get(biz.url("/groups"), headers=other.coach)).status_code == 404


async def test_another_business_gets_404_for_every_catalog_id(catalog: Catalog) -> None:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    offering = await catalog.published_offering(biz)
    collection = await catalog.create_collection(biz, offering_ids=[offering["id"]])
    code = await catalog.http.post(
        biz.url("/discount-codes"), json={"code": "SPRING", "percent_off": 10}, headers=biz.coach
    )
    assert code.status_code == 201
    before = await catalog.counts()

    oid, vid, cid, did = (
        offering["id"],
        offering["version_id"],
        collection["id"],
        code.json()["id"],
    )
    # The other coach, using their own business in the path with our ids.
    attempts = [
        ("GET", f"/offerings/{oid}", None),
        ("PATCH", f"/offerings/{oid}", {"price_minor": 1}),
        ("POST", f"/offerings/{oid}/publish", None),
        ("POST", f"/offerings/{oid}/archive", None),
        ("GET", f"/offerings/{oid}/versions", None),
        ("GET", f"/offering-versions/{vid}", None),
        ("GET", f"/collections/{cid}", None),
        ("PATCH", f"/collections/{cid}", {"name": "Mine now"}),
        ("DELETE", f"/collections/{cid}", None),
        ("DELETE", f"/discount-codes/{did}", None),
    ]
    for method, path, body in attempts:
        response = await catalog.http.request(
            method, other.url(path), json=body, headers=other.coach
        )
        assert response.status_code == 404, (method, path, response.text)
    # ... and our business in the path with their token.
    for method, path, body in attempts:
        response = await catalog.http.request(method, biz.url(path), json=body, headers=other.coach)
        assert response.status_code == 404, (method, path, response.text)
    # Their lists do not show our rows; our collection cannot take their offerings.
    for path in ("/offerings", "/collections", "/discount-codes"):
        listed = await catalog.http.get(other.url(path), headers=other.coach)
        assert listed.json()["items"] == [], path
    theirs = await catalog.create_collection(other)
    steal = await catalog.http.patch(
        other.url(f"/collections/{theirs['id']}"), json={"offering_ids": [oid]}, headers=other.coach
    )
    assert steal.status_code == 422 and steal.json()["errors"][0]["field"] == "offering_ids"
    # Nothing of ours changed.
    after = await catalog.counts()
    assert after == {**before, "collections": before["collections"] + 1, "outbox": after["outbox"]}
    mine = await catalog.http.get(biz.url(f"/offerings/{oid}"), headers=biz.coach)
    assert (mine.json()["status"], mine.json()["version"]) == ("published", 1)
    # A storefront under another business's slug does not show it either.
    wrong_shop = await catalog.http.get(f"{API}/public/businesses/{other.slug}/offerings/{oid}")
    assert wrong_shop.status_code == 404
    wrong_shop = await catalog.http.get(f"{API}/public/businesses/{other.slug}/collections/{cid}")
    assert wrong_shop.status_code == 404


async def test_coach_api_needs_a_token_of_that_businesss_staff(catalog: Catalog) -> None:
    biz = await catalog.business()
    anonymous = await catalog.http.get(biz.url("/offerings"))
    assert anonymous.status_code == 401
    client = await catalog.add_client(biz)
    as_client = await catalog.http.get(biz.url("/offerings"), headers=client.headers)
    assert as_client.status_code == 404
    unknown = await catalog.http.get(
        f"{API}/businesses/{uuid.uuid4()}/offerings", headers=biz.coach
    )
    assert unknown.status_code == 404
