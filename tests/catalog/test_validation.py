"""Bad input is 422 problem+json naming the field, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.catalog.conftest import Catalog, offering_body

GROUP = "<a group of the business>"
OTHER_GROUP = "<a group of another business>"

# (what is wrong, body overrides, the field the answer must name)
BAD_OFFERINGS: list[tuple[str, dict[str, Any], str]] = [
    ("negative price", {"price_minor": -1}, "price_minor"),
    ("absurd price", {"price_minor": 100_000_000}, "price_minor"),
    ("fractional price", {"price_minor": 12.5}, "price_minor"),
    ("price as text", {"price_minor": "120"}, "price_minor"),
    ("paid offering for nothing", {"price_minor": 0}, "price_minor"),
    (
        "free offering with a price",
        {"billing": {"type": "free"}, "price_minor": 100},
        "price_minor",
    ),
    ("unknown currency", {"currency": "XYZ"}, "currency"),
    ("withdrawn currency", {"currency": "DEM"}, "currency"),
    ("funds code, not a currency", {"currency": "XAU"}, "currency"),
    ("currency too long", {"currency": "USDOLLAR"}, "currency"),
    (
        "zero installments",
        {"billing": {"type": "payment_plan", "installments": 0, "interval": "month"}},
        "installments",
    ),
    (
        "one installment",
        {"billing": {"type": "payment_plan", "installments": 1, "interval": "month"}},
        "installments",
    ),
    (
        "interval count 0",
        {"billing": {"type": "recurring", "interval": "month", "interval_count": 0}},
        "interval_count",
    ),
    ("unknown interval", {"billing": {"type": "recurring", "interval": "fortnight"}}, "interval"),
    ("unknown billing", {"billing": {"type": "barter"}}, "billing"),
    ("empty name", {"name": ""}, "name"),
    ("blank name", {"name": "   "}, "name"),
    ("long name", {"name": "x" * 121}, "name"),
    ("long description", {"description": "x" * 5001}, "description"),
    ("unknown kind", {"kind": "webinar"}, "kind"),
    ("unknown visibility", {"visibility": "secret"}, "visibility"),
    ("business_id in the body", {"business_id": str(uuid.uuid4())}, "business_id"),
    ("status in the body", {"status": "published"}, "status"),
    ("capacity 0", {"capacity": 0}, "capacity"),
    ("groups without groups", {"visibility": "groups", "group_ids": []}, "group_ids"),
    ("unknown group", {"visibility": "groups", "group_ids": [str(uuid.uuid4())]}, "group_ids"),
    ("another business's group", {"visibility": "groups", "group_ids": [OTHER_GROUP]}, "group_ids"),
    ("groups on a public offering", {"group_ids": [GROUP]}, "group_ids"),
    (
        "appointment too short",
        {"kind": "appointment", "details": {"duration_minutes": 1}},
        "details.duration_minutes",
    ),
    ("appointment without duration", {"kind": "appointment"}, "details.duration_minutes"),
    (
        "engagement with 0 credits",
        {"kind": "engagement", "details": {"credits": 0}},
        "details.credits",
    ),
    (
        "engagement with 501 credits",
        {"kind": "engagement", "details": {"credits": 501}},
        "details.credits",
    ),
    (
        "group kind, unknown group",
        {"kind": "group", "details": {"group_id": str(uuid.uuid4())}},
        "details.group_id",
    ),
    (
        "group kind, other business's group",
        {"kind": "group", "details": {"group_id": OTHER_GROUP}},
        "details.group_id",
    ),
    ("details of another kind", {"kind": "course", "details": {"credits": 3}}, "details.credits"),
    (
        "agreement without text",
        {"kind": "agreement", "details": {"agreement_text": ""}},
        "details.agreement_text",
    ),
    (
        "worksheet with an empty list of questions",
        {"kind": "worksheet", "details": {"questions": []}},
        "details.questions",
    ),
    (
        "worksheet with a blank question",
        {"kind": "worksheet", "details": {"questions": ["Why?", "   "]}},
        "details.questions.1",
    ),
    (
        "worksheet with a question too long",
        {"kind": "worksheet", "details": {"questions": ["x" * 501]}},
        "details.questions.0",
    ),
    (
        "worksheet with a question on two lines",
        {"kind": "worksheet", "details": {"questions": ["Why\nnow?"]}},
        "details.questions.0",
    ),
    (
        "worksheet with 51 questions",
        {"kind": "worksheet", "details": {"questions": [f"Q{i}" for i in range(51)]}},
        "details.questions",
    ),
    (
        "worksheet questions not a list",
        {"kind": "worksheet", "details": {"questions": "Why?"}},
        "details.questions",
    ),
    (
        "worksheet with another field",
        {"kind": "worksheet", "details": {"prompt": "Why?"}},
        "details.prompt",
    ),
]


def _fill(value: Any, group: uuid.UUID, other_group: uuid.UUID) -> Any:
    if value == GROUP:
        return str(group)
    if value == OTHER_GROUP:
        return str(other_group)
    if isinstance(value, list):
        return [_fill(v, group, other_group) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, group, other_group) for k, v in value.items()}
    return value


def assert_names(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(field in f for f in fields), (field, fields)


@pytest.mark.parametrize(
    ("case", "overrides", "field"), BAD_OFFERINGS, ids=[c[0] for c in BAD_OFFERINGS]
)
async def test_bad_offering_is_refused_naming_the_field(
    catalog: Catalog, case: str, overrides: dict[str, Any], field: str
) -> None:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    group, other_group = await catalog.group(biz), await catalog.group(other)
    existing = await catalog.published_offering(biz)
    overrides = _fill(overrides, group, other_group)
    before = await catalog.counts()

    created = await catalog.http.post(
        biz.url("/offerings"), json=offering_body(**overrides), headers=biz.coach
    )
    assert_names(created, field)
    # The same change as an edit of a published offering: refused, no new version.
    edit = await catalog.http.patch(
        biz.url(f"/offerings/{existing['id']}"), json=overrides, headers=biz.coach
    )
    assert_names(edit, field)

    assert await catalog.counts() == before
    current = await catalog.http.get(biz.url(f"/offerings/{existing['id']}"), headers=biz.coach)
    assert current.json()["version"] == 1


async def test_worksheet_questions_are_optional_cleaned_and_versioned(catalog: Catalog) -> None:
    biz = await catalog.business()
    # A worksheet without questions (as every worksheet was before) stays valid: details {}.
    plain = await catalog.create_offering(biz, kind="worksheet", details={})
    assert plain["details"] == {}
    fifty = [f"Question {i}?" for i in range(50)]
    assert (await catalog.create_offering(biz, kind="worksheet", details={"questions": fifty}))[
        "details"
    ] == {"questions": fifty}
    asked = await catalog.create_offering(
        biz,
        kind="worksheet",
        details={"questions": ["  What do you want to change?  ", "Cafe\u0301 or tea?", "x" * 500]},
    )
    assert asked["details"] == {
        "questions": ["What do you want to change?", "Caf\u00e9 or tea?", "x" * 500]
    }
    await catalog.publish(biz, plain["id"])
    edited = await catalog.http.patch(
        biz.url(f"/offerings/{plain['id']}"),
        json={"details": {"questions": ["One?"]}},
        headers=biz.coach,
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["version"], edited.json()["details"]) == (2, {"questions": ["One?"]})
    first = await catalog.http.get(
        biz.url(f"/offering-versions/{plain['version_id']}"), headers=biz.coach
    )
    assert first.json()["details"] == {}  # what was bought under version 1 stays as it was


async def test_currency_codes_are_taken_in_any_case_and_stored_upper(catalog: Catalog) -> None:
    biz = await catalog.business()
    for code in ("eur", "Gbp", "JPY", "kwd"):
        offering = await catalog.create_offering(biz, currency=code)
        assert offering["currency"] == code.upper()


async def test_a_draft_naming_a_group_deleted_since_cannot_be_published(catalog: Catalog) -> None:
    from kit.contracts.clients import GroupDeletedV1

    biz = await catalog.business()
    group = await catalog.group(biz)
    draft = await catalog.create_offering(biz, visibility="groups", group_ids=[str(group)])
    await catalog.apply(
        GroupDeletedV1(business_id=biz.id, occurred_at=catalog.now(), group_id=group)
    )
    before = await catalog.counts()
    response = await catalog.http.post(
        biz.url(f"/offerings/{draft['id']}/publish"), headers=biz.coach
    )
    assert_names(response, "group_ids")
    assert await catalog.counts() == before


BAD_COLLECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("empty name", {"name": ""}, "name"),
    ("long name", {"name": "x" * 121}, "name"),
    ("business_id in the body", {"name": "A", "business_id": str(uuid.uuid4())}, "business_id"),
    ("unknown offering", {"name": "A", "offering_ids": [str(uuid.uuid4())]}, "offering_ids"),
    ("not a uuid", {"name": "A", "offering_ids": ["nope"]}, "offering_ids"),
    ("flag not a bool", {"name": "A", "in_app": "perhaps"}, "in_app"),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), BAD_COLLECTIONS, ids=[c[0] for c in BAD_COLLECTIONS]
)
async def test_bad_collection_is_refused_naming_the_field(
    catalog: Catalog, case: str, body: dict[str, Any], field: str
) -> None:
    biz = await catalog.business()
    existing = await catalog.create_collection(biz)
    before = await catalog.counts()
    assert_names(
        await catalog.http.post(biz.url("/collections"), json=body, headers=biz.coach), field
    )
    patch = {k: v for k, v in body.items()}
    assert_names(
        await catalog.http.patch(
            biz.url(f"/collections/{existing['id']}"), json=patch, headers=biz.coach
        ),
        field,
    )
    assert await catalog.counts() == before


async def test_null_for_a_required_collection_field_is_refused(catalog: Catalog) -> None:
    biz = await catalog.business()
    existing = await catalog.create_collection(biz)
    response = await catalog.http.patch(
        biz.url(f"/collections/{existing['id']}"), json={"name": None}, headers=biz.coach
    )
    assert_names(response, "name")


async def test_bad_quote_body_is_refused_naming_the_field(catalog: Catalog) -> None:
    response = await catalog.http.post(
        "/api/v1/catalog/quotes", json={"offering_id": str(uuid.uuid4()), "price_minor": 1}
    )
    assert_names(response, "price_minor")
    response = await catalog.http.post("/api/v1/catalog/quotes", json={"offering_id": "x"})
    assert_names(response, "offering_id")
