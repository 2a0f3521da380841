"""Who sees and may buy what: every visibility against every kind of viewer.

Viewers of business A: anonymous, logged in but not a client, a client, a
member of the offering's group, a client removed from that group, and a
client of another business only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from catalog.eligibility.service import Standing, refusal
from tests.catalog.conftest import API, Business, Catalog, Person

VIEWERS = ("anonymous", "non_client", "client", "member", "removed", "other_client")
VISIBILITIES = ("public", "unlisted", "established_only", "groups")

# May the viewer see (and buy) an offering of this visibility? If not, the quote's reason.
EXPECTED: dict[str, dict[str, str | None]] = {
    "public": dict.fromkeys(VIEWERS),
    "unlisted": dict.fromkeys(VIEWERS),
    "established_only": {
        "anonymous": "login_required",
        "non_client": "not_a_client",
        "client": None,
        "member": None,
        "removed": None,
        "other_client": "not_a_client",
    },
    "groups": {
        "anonymous": "login_required",
        "non_client": "not_a_client",
        "client": "not_in_group",
        "member": None,
        "removed": "not_in_group",
        "other_client": "not_a_client",
    },
}


@dataclass
class World:
    biz: Business
    other: Business
    group: uuid.UUID
    offerings: dict[str, dict[str, Any]]  # visibility -> offering
    viewers: dict[str, dict[str, str]]  # viewer -> headers
    people: dict[str, Person]
    collection: dict[str, Any]
    client_collection: dict[str, Any]


@pytest.fixture
async def world(catalog: Catalog) -> World:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    group = await catalog.group(biz, "Runners")
    other_group = await catalog.group(biz, "Climbers")
    offerings = {}
    for visibility in VISIBILITIES:
        groups = [str(group), str(other_group)] if visibility == "groups" else []
        offerings[visibility] = await catalog.published_offering(
            biz, name=f"{visibility} offering", visibility=visibility, group_ids=groups
        )
    non_client = catalog.person()
    client = await catalog.add_client(biz)
    member = await catalog.add_client(biz)
    await catalog.join(biz, group, member)
    removed = await catalog.add_client(biz)
    await catalog.join(biz, group, removed)
    await catalog.leave(biz, group, removed)
    other_client = await catalog.add_client(other)
    await catalog.group(other, "Runners elsewhere")
    people = {
        "non_client": non_client,
        "client": client,
        "member": member,
        "removed": removed,
        "other_client": other_client,
    }
    viewers = {"anonymous": {}, **{name: p.headers for name, p in people.items()}}
    everything = [offerings[v]["id"] for v in VISIBILITIES]
    collection = await catalog.create_collection(
        biz, name="Everything", offering_ids=everything, in_app=True
    )
    client_collection = await catalog.create_collection(
        biz, name="For clients", offering_ids=everything, established_only=True
    )
    return World(biz, other, group, offerings, viewers, people, collection, client_collection)


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_offering_page_and_quote(
    catalog: Catalog, world: World, visibility: str, viewer: str
) -> None:
    offering = world.offerings[visibility]
    headers = world.viewers[viewer]
    expected = EXPECTED[visibility][viewer]

    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/offerings/{offering['id']}", headers=headers
    )
    quote = await catalog.quote(offering["id"], headers)
    if expected is None:
        assert page.status_code == 200, page.text
        assert page.json()["offering"]["id"] == offering["id"] and page.json()["can_buy"] is True
        assert quote.status_code == 200, quote.text
        assert quote.json()["total_minor"] == offering["price_minor"]
    else:
        assert page.status_code == 404, page.text
        assert quote.status_code == 403, quote.text
        assert quote.json()["reason"] == expected


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_packages_are_public_offerings_only_and_the_same_for_everyone(
    catalog: Catalog, world: World, viewer: str
) -> None:
    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/packages", headers=world.viewers[viewer]
    )
    assert page.status_code == 200
    assert [o["id"] for o in page.json()["offerings"]] == [world.offerings["public"]["id"]]
    anonymous = await catalog.http.get(f"{API}/public/businesses/{world.biz.slug}/packages")
    assert page.json() == anonymous.json()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_collection_shows_what_the_viewer_may_see_in_order(
    catalog: Catalog, world: World, viewer: str
) -> None:
    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/collections/{world.collection['id']}",
        headers=world.viewers[viewer],
    )
    assert page.status_code == 200, page.text
    visible = [v for v in VISIBILITIES if EXPECTED[v][viewer] is None]
    assert [o["id"] for o in page.json()["offerings"]] == [
        world.offerings[v]["id"] for v in visible
    ]
    assert page.json()["collection"] == {
        "id": world.collection["id"],
        "name": "Everything",
        "description": "",
        "in_app": True,
        "established_only": False,
    }
    # Group-only offerings appear for members and nobody else.
    shown = {o["id"] for o in page.json()["offerings"]}
    assert (world.offerings["groups"]["id"] in shown) == (viewer == "member")


@pytest.mark.parametrize(
    ("viewer", "status", "reason"),
    [
        ("anonymous", 401, "login_required"),
        ("non_client", 403, "not_a_client"),
        ("other_client", 403, "not_a_client"),
        ("client", 200, None),
        ("member", 200, None),
        ("removed", 200, None),
    ],
)
async def test_established_only_collection(
    catalog: Catalog, world: World, viewer: str, status: int, reason: str | None
) -> None:
    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/collections/{world.client_collection['id']}",
        headers=world.viewers[viewer],
    )
    assert page.status_code == status, page.text
    if reason:
        assert page.headers["content-type"].startswith("application/problem+json")
        assert page.json()["reason"] == reason
    else:
        ids = [o["id"] for o in page.json()["offerings"]]
        assert world.offerings["established_only"]["id"] in ids


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_menu(catalog: Catalog, world: World, viewer: str) -> None:
    menu = await catalog.http.get(f"{API}/me/menu", headers=world.viewers[viewer])
    if viewer == "anonymous":
        assert menu.status_code == 401
        return
    assert menu.status_code == 200
    businesses = menu.json()["businesses"]
    if viewer in ("client", "member", "removed"):
        # Only the in-app collection, with the path of its public page.
        assert businesses == [
            {
                "business": {
                    "id": str(world.biz.id),
                    "name": world.biz.name,
                    "slug": world.biz.slug,
                },
                "collections": [
                    {
                        "id": world.collection["id"],
                        "name": "Everything",
                        "path": f"/b/{world.biz.slug}/collections/{world.collection['id']}",
                    }
                ],
            }
        ]
    else:
        assert businesses == []


async def test_drafts_and_archived_offerings_are_for_nobody(catalog: Catalog, world: World) -> None:
    draft = await catalog.create_offering(world.biz, name="Draft")
    archived = await catalog.published_offering(world.biz, name="Old")
    await catalog.http.post(
        world.biz.url(f"/offerings/{archived['id']}/archive"), headers=world.biz.coach
    )
    await catalog.http.patch(
        world.biz.url(f"/collections/{world.collection['id']}"),
        json={"offering_ids": [draft["id"], archived["id"], world.offerings["public"]["id"]]},
        headers=world.biz.coach,
    )
    for viewer, headers in world.viewers.items():
        for offering in (draft, archived):
            page = await catalog.http.get(
                f"{API}/public/businesses/{world.biz.slug}/offerings/{offering['id']}",
                headers=headers,
            )
            assert page.status_code == 404, viewer
            quote = await catalog.quote(offering["id"], headers)
            assert (quote.status_code, quote.json()["reason"]) == (404, "not_published")
        listed = await catalog.http.get(
            f"{API}/public/businesses/{world.biz.slug}/collections/{world.collection['id']}",
            headers=headers,
        )
        assert [o["id"] for o in listed.json()["offerings"]] == [world.offerings["public"]["id"]]
    unknown = await catalog.quote(str(uuid.uuid4()))
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "not_found")


async def test_archived_client_loses_access_and_a_restored_one_gets_it_back(
    catalog: Catalog, world: World
) -> None:
    from kit.contracts.clients import ClientRestoredV1

    member = world.people["member"]
    offering = world.offerings["groups"]["id"]
    assert (await catalog.quote(offering, member.headers)).status_code == 200
    await catalog.archive_client(world.biz, member)
    refused = await catalog.quote(offering, member.headers)
    assert (refused.status_code, refused.json()["reason"]) == (403, "not_a_client")
    menu = await catalog.http.get(f"{API}/me/menu", headers=member.headers)
    assert menu.json()["businesses"] == []
    await catalog.apply(
        ClientRestoredV1(
            business_id=world.biz.id,
            occurred_at=catalog.now(),
            client_id=member.client_ids[world.biz.id],
            account_id=member.account_id,
        )
    )
    assert (await catalog.quote(offering, member.headers)).status_code == 200


async def test_a_deleted_group_gives_no_access(catalog: Catalog, world: World) -> None:
    from kit.contracts.clients import GroupDeletedV1

    member = world.people["member"]
    await catalog.apply(
        GroupDeletedV1(business_id=world.biz.id, occurred_at=catalog.now(), group_id=world.group)
    )
    refused = await catalog.quote(world.offerings["groups"]["id"], member.headers)
    assert refused.json()["reason"] == "not_in_group"
    # A late "added" for the deleted group does not bring the membership back.
    await catalog.join(world.biz, world.group, member)
    refused = await catalog.quote(world.offerings["groups"]["id"], member.headers)
    assert refused.json()["reason"] == "not_in_group"


async def test_sold_out_offering_cannot_be_bought(catalog: Catalog, world: World) -> None:
    from sqlalchemy import update

    from catalog.models import Offering

    offering = await catalog.published_offering(world.biz, capacity=2)
    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/offerings/{offering['id']}"
    )
    assert page.json()["offering"]["spots_left"] == 2
    async with catalog.sessionmaker() as session, session.begin():
        await session.execute(
            update(Offering).where(Offering.id == uuid.UUID(offering["id"])).values(spots_taken=2)
        )
    page = await catalog.http.get(
        f"{API}/public/businesses/{world.biz.slug}/offerings/{offering['id']}"
    )
    assert (page.json()["offering"]["spots_left"], page.json()["can_buy"]) == (0, False)
    quote = await catalog.quote(offering["id"])
    assert (quote.status_code, quote.json()["reason"]) == (403, "sold_out")


def test_the_rule_itself() -> None:
    group = uuid.uuid4()
    anonymous = Standing()
    stranger = Standing(account_id=uuid.uuid4())
    client = Standing(account_id=uuid.uuid4(), is_client=True)
    member = Standing(account_id=uuid.uuid4(), is_client=True, group_ids=frozenset({group}))
    assert refusal("draft", "public", [], member) == "not_published"
    assert refusal("archived", "public", [], member) == "not_published"
    assert refusal("published", "groups", [str(group)], member) is None
    assert refusal("published", "groups", [group], client) == "not_in_group"
    assert refusal("published", "groups", [group], stranger) == "not_a_client"
    assert refusal("published", "established_only", [], anonymous) == "login_required"
    assert refusal("published", "unlisted", [], anonymous) is None
