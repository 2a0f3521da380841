"""Discount codes: what they take off, and every reason a quote refuses one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from catalog.discounts.repository import DiscountRepository
from catalog.models import DiscountCode, DiscountRedemption
from tests.catalog.conftest import Business, Catalog


async def make_code(catalog: Catalog, biz: Business, **fields: Any) -> dict[str, Any]:
    response = await catalog.http.post(biz.url("/discount-codes"), json=fields, headers=biz.coach)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def redeem(catalog: Catalog, biz: Business, code_id: str, account: uuid.UUID) -> None:
    """What payments will do when a purchase uses the code."""
    async with catalog.sessionmaker() as session, session.begin():
        await DiscountRepository(session).add_redemption(
            DiscountRedemption(
                id=uuid.uuid4(),
                business_id=biz.id,
                discount_code_id=uuid.UUID(code_id),
                account_id=account,
                redeemed_at=datetime.now(UTC),
            )
        )


async def test_percent_and_amount_off(catalog: Catalog) -> None:
    biz = await catalog.business()
    offering = await catalog.published_offering(biz, price_minor=12345)
    ten = await make_code(catalog, biz, code="TENOFF", percent_off=10)
    fiver = await make_code(catalog, biz, code="FIVER", amount_off_minor=500, currency="usd")
    assert (ten["label"], fiver["label"]) == ("10% off", "$5.00 off")
    await make_code(catalog, biz, code="ALL", percent_off=100)
    await make_code(catalog, biz, code="HUGE", amount_off_minor=99_999_999, currency="USD")

    cases = [("tenoff", "TENOFF", 1235), ("FiVeR", "FIVER", 500), ("all", "ALL", 12345)]
    cases.append(("huge", "HUGE", 12345))  # never more than the price
    for typed, code, off in cases:
        quote = await catalog.quote(offering["id"], code=typed)
        assert quote.status_code == 200, quote.text
        assert quote.json()["discount"] == {"code": code, "amount_off_minor": off}
        assert quote.json()["total_minor"] == 12345 - off
        assert quote.json()["price_minor"] == 12345
    plain = await catalog.quote(offering["id"])
    assert plain.json()["discount"] is None and plain.json()["total_minor"] == 12345
    blank = await catalog.quote(offering["id"], code="  ")
    assert blank.json()["discount"] is None


async def refusal_of(
    catalog: Catalog, offering: str, code: str, headers: dict[str, str] | None = None
) -> str:
    response = await catalog.quote(offering, headers, code=code)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "discount_code"
    return str(response.json()["reason"])


async def test_every_refusal_reason(catalog: Catalog) -> None:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    offering = await catalog.published_offering(biz)
    elsewhere = await catalog.published_offering(biz, name="Another")
    euro = await catalog.published_offering(biz, currency="EUR")
    client = await catalog.add_client(biz)
    someone = await catalog.add_client(biz)

    assert await refusal_of(catalog, offering["id"], "NOPE") == "discount_unknown"
    # Text no code can be, down to a NUL byte PostgreSQL cannot store (was a 500).
    for impossible in ("NO\x00PE", "no way!", "ü" * 5):
        assert await refusal_of(catalog, offering["id"], impossible) == "discount_unknown"
    await make_code(catalog, other, code="THEIRS", percent_off=50)
    assert await refusal_of(catalog, offering["id"], "THEIRS") == "discount_unknown"

    expiring = await make_code(
        catalog,
        biz,
        code="SOON",
        percent_off=10,
        expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    )
    assert (await catalog.quote(offering["id"], code="SOON")).status_code == 200
    async with catalog.sessionmaker() as session, session.begin():
        await session.execute(
            update(DiscountCode)
            .where(DiscountCode.id == uuid.UUID(expiring["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await refusal_of(catalog, offering["id"], "SOON") == "discount_expired"

    await make_code(catalog, biz, code="ONLYTHAT", percent_off=10, offering_ids=[elsewhere["id"]])
    assert await refusal_of(catalog, offering["id"], "ONLYTHAT") == "discount_not_for_offering"
    assert (await catalog.quote(elsewhere["id"], code="ONLYTHAT")).status_code == 200
    await make_code(catalog, biz, code="DOLLARS", amount_off_minor=100, currency="USD")
    assert await refusal_of(catalog, euro["id"], "DOLLARS") == "discount_not_for_offering"

    limited = await make_code(catalog, biz, code="FIRST2", percent_off=10, max_redemptions=2)
    await redeem(catalog, biz, limited["id"], someone.account_id)
    assert (await catalog.quote(offering["id"], code="FIRST2")).status_code == 200
    await redeem(catalog, biz, limited["id"], someone.account_id)
    assert await refusal_of(catalog, offering["id"], "FIRST2") == "discount_exhausted"

    once = await make_code(catalog, biz, code="ONCE", percent_off=10, max_per_client=1)
    await redeem(catalog, biz, once["id"], client.account_id)
    assert (
        await refusal_of(catalog, offering["id"], "ONCE", client.headers)
        == "discount_per_client_limit"
    )
    # Somebody else may still use it.
    assert (await catalog.quote(offering["id"], someone.headers, code="ONCE")).status_code == 200

    listed = await catalog.http.get(biz.url("/discount-codes"), headers=biz.coach)
    counts = {c["code"]: c["redemptions"] for c in listed.json()["items"]}
    assert counts["FIRST2"] == 2 and counts["ONCE"] == 1 and counts["SOON"] == 0


async def test_deleting_a_code_stops_it_and_frees_its_name(catalog: Catalog) -> None:
    biz, other = await catalog.business(), await catalog.business("Other Studio")
    offering = await catalog.published_offering(biz)
    code = await make_code(catalog, biz, code="SPRING", percent_off=10)
    duplicate = await catalog.http.post(
        biz.url("/discount-codes"), json={"code": "spring", "percent_off": 5}, headers=biz.coach
    )
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "code"
    # Another business may have the same code.
    await make_code(catalog, other, code="SPRING", percent_off=50)

    assert (
        await catalog.http.delete(biz.url(f"/discount-codes/{code['id']}"), headers=other.coach)
    ).status_code == 404
    deleted = await catalog.http.delete(biz.url(f"/discount-codes/{code['id']}"), headers=biz.coach)
    assert deleted.status_code == 204
    assert await refusal_of(catalog, offering["id"], "SPRING") == "discount_unknown"
    again = await catalog.http.delete(biz.url(f"/discount-codes/{code['id']}"), headers=biz.coach)
    assert again.status_code == 404
    renewed = await make_code(catalog, biz, code="Spring", percent_off=20)
    quote = await catalog.quote(offering["id"], code="SPRING")
    assert quote.json()["discount"] == {"code": "Spring", "amount_off_minor": 2400}
    listed = await catalog.http.get(biz.url("/discount-codes"), headers=biz.coach)
    assert [c["id"] for c in listed.json()["items"]] == [renewed["id"]]


async def test_offering_refusals_come_before_the_code(catalog: Catalog) -> None:
    biz = await catalog.business()
    offering = await catalog.published_offering(biz, visibility="established_only")
    await make_code(catalog, biz, code="TENOFF", percent_off=10)
    refused = await catalog.quote(offering["id"], code="TENOFF")
    assert (refused.status_code, refused.json()["reason"]) == (403, "login_required")


BAD_CODES: list[tuple[str, dict[str, Any], str]] = [
    (
        "both kinds",
        {"code": "AB1", "percent_off": 10, "amount_off_minor": 100, "currency": "USD"},
        "percent_off",
    ),
    ("neither kind", {"code": "AB1"}, "percent_off"),
    ("percent 0", {"code": "AB1", "percent_off": 0}, "percent_off"),
    ("percent 101", {"code": "AB1", "percent_off": 101}, "percent_off"),
    (
        "negative amount",
        {"code": "AB1", "amount_off_minor": -5, "currency": "USD"},
        "amount_off_minor",
    ),
    (
        "absurd amount",
        {"code": "AB1", "amount_off_minor": 100_000_000, "currency": "USD"},
        "amount_off_minor",
    ),
    ("amount without currency", {"code": "AB1", "amount_off_minor": 100}, "currency"),
    ("unknown currency", {"code": "AB1", "amount_off_minor": 100, "currency": "ABC"}, "currency"),
    ("percent with currency", {"code": "AB1", "percent_off": 5, "currency": "USD"}, "currency"),
    ("code too short", {"code": "A", "percent_off": 5}, "code"),
    ("code with spaces", {"code": "TWO WORDS", "percent_off": 5}, "code"),
    (
        "expired already",
        {"code": "AB1", "percent_off": 5, "expires_at": "2020-01-01T00:00:00Z"},
        "expires_at",
    ),
    (
        "naive expiry",
        {"code": "AB1", "percent_off": 5, "expires_at": "2999-01-01T00:00:00"},
        "expires_at",
    ),
    (
        "max redemptions 0",
        {"code": "AB1", "percent_off": 5, "max_redemptions": 0},
        "max_redemptions",
    ),
    ("max per client 0", {"code": "AB1", "percent_off": 5, "max_per_client": 0}, "max_per_client"),
    (
        "unknown offering",
        {"code": "AB1", "percent_off": 5, "offering_ids": [str(uuid.uuid4())]},
        "offering_ids",
    ),
    (
        "business_id in the body",
        {"code": "AB1", "percent_off": 5, "business_id": str(uuid.uuid4())},
        "business_id",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_CODES, ids=[c[0] for c in BAD_CODES])
async def test_bad_discount_code_is_refused_naming_the_field(
    catalog: Catalog, case: str, body: dict[str, Any], field: str
) -> None:
    biz = await catalog.business()
    before = await catalog.counts()
    response = await catalog.http.post(biz.url("/discount-codes"), json=body, headers=biz.coach)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert await catalog.counts() == before
