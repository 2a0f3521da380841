"""The coach's activity feed: purchases, failures and refunds, filters, pages, totals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from payments import models
from tests.payments.conftest import API, Payments, Shop
from tests.payments.test_refunds import paid_order, refund
from tests.support.localstripe import DECLINED_CARD


async def feed(payments: Payments, shop: Shop, **params: Any) -> httpx.Response:
    return await payments.http.get(
        f"{API}/businesses/{shop.business.id}/activity",
        params=params,
        headers=shop.business.coach,
    )


async def failed_order(payments: Payments, shop: Shop) -> dict[str, Any]:
    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], DECLINED_CARD
    )
    answer = await payments.pay(created, payment_method)
    assert answer.json()["status"] == "failed", answer.text
    return dict(answer.json())


async def move(payments: Payments, table: Any, row_id: str, **values: datetime) -> None:
    """Put a row at another time (the feed is about when things happened)."""
    async with payments.engine.begin() as conn:
        await conn.execute(update(table).where(table.c.id == uuid.UUID(row_id)).values(**values))


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


async def test_the_feed_lists_purchases_failures_and_refunds_newest_first(
    payments: Payments, shop: Shop
) -> None:
    bought = await paid_order(payments, shop, name="Ada Buyer", email="ada@example.com")
    failed = await failed_order(payments, shop)
    refunded = await refund(payments, shop, bought["id"], amount_minor=2000, reason="Late")
    assert refunded.status_code == 201
    free = await payments.created_order(shop.free["id"])
    pending = await payments.created_order(shop.paid["id"])  # not activity yet

    answer = await feed(payments, shop)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [(i["kind"], i["order_id"]) for i in items] == [
        ("purchase", free["order"]["id"]),
        ("refund", bought["id"]),
        ("failure", failed["id"]),
        ("purchase", bought["id"]),
    ]
    assert pending["order"]["id"] not in {i["order_id"] for i in items}
    purchase = items[3]
    assert (purchase["amount_minor"], purchase["currency"], purchase["status"]) == (
        12000,
        "USD",
        "paid",
    )
    assert (purchase["buyer_name"], purchase["buyer_email"]) == ("Ada Buyer", "ada@example.com")
    assert (purchase["refunded_minor"], purchase["refundable_minor"]) == (2000, 10000)
    assert purchase["offering_name"] == "Reformer course"
    refund_entry = items[1]
    assert refund_entry["id"] == refunded.json()["id"]
    assert (refund_entry["amount_minor"], refund_entry["reason"]) == (2000, "Late")
    assert (refund_entry["origin"], refund_entry["status"]) == ("coach", "refunded")
    failure = items[2]
    assert failure["status"] == "failed"
    assert "declined" in failure["failure_reason"].lower()
    assert items[0]["refundable_minor"] == 0  # free: nothing to refund
    assert answer.json()["summary"] == [
        {"currency": "USD", "gross_minor": 12000, "refunded_minor": 2000, "net_minor": 10000}
    ]
    assert answer.json()["totals"] == []
    assert answer.json()["next_cursor"] is None

    only = await feed(payments, shop, kind=["refund", "failure"])
    assert [i["kind"] for i in only.json()["items"]] == ["refund", "failure"]
    assert (await feed(payments, shop, kind="nonsense")).status_code == 422


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
    payments: Payments, shop: Shop
) -> None:
    ids = [(await payments.created_order(shop.free["id"]))["order"]["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await feed(payments, shop, **params)).json()
        seen += [i["order_id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Something new happening meanwhile never shifts the next page.
        await payments.created_order(shop.free["id"])
    assert pages == 3
    assert seen == list(reversed(ids))
    bad = await feed(payments, shop, cursor="not-a-cursor")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"


async def test_date_range_and_totals_per_period_and_currency(
    payments: Payments, shop: Shop
) -> None:
    euro = await payments.catalog.published_offering(
        shop.business, name="Mat class", price_minor=2500, currency="EUR"
    )
    march_1 = await paid_order(payments, shop)
    march_2 = await paid_order(payments, shop)
    march_20 = await paid_order(payments, shop)
    april = await paid_order(payments, shop)
    in_euro = await payments.created_order(euro["id"])
    method = await payments.stripe.confirm_card_setup(in_euro["stripe"]["client_secret"])
    assert (await payments.pay(in_euro, method)).json()["status"] == "paid"
    partial = await refund(payments, shop, march_1["id"], amount_minor=5000)
    orders = models.Order.__table__
    for order, moment in (
        (march_1, at("2026-03-02")),  # a Monday
        (march_2, at("2026-03-08", 23)),  # the Sunday of the same week
        (march_20, at("2026-03-20")),
        (april, at("2026-04-01")),
    ):
        await move(payments, orders, order["id"], paid_at=moment)
    await move(payments, orders, in_euro["order"]["id"], paid_at=at("2026-03-03"))
    await move(payments, models.Refund.__table__, partial.json()["id"], created_at=at("2026-03-21"))

    march = await feed(payments, shop, **{"from": "2026-03-01", "to": "2026-03-31"})
    assert march.status_code == 200, march.text
    body = march.json()
    assert [i["order_id"] for i in body["items"]] == [
        march_1["id"],  # its refund, on the 21st
        march_20["id"],
        march_2["id"],
        in_euro["order"]["id"],
        march_1["id"],
    ]
    assert body["summary"] == [
        {"currency": "EUR", "gross_minor": 2500, "refunded_minor": 0, "net_minor": 2500},
        {"currency": "USD", "gross_minor": 36000, "refunded_minor": 5000, "net_minor": 31000},
    ]
    weekly = (
        await feed(payments, shop, **{"from": "2026-03-01", "to": "2026-03-31", "period": "week"})
    ).json()["totals"]
    assert [
        (t["period_start"], t["currency"], t["gross_minor"], t["refunded_minor"], t["net_minor"])
        for t in weekly
    ] == [
        ("2026-03-16", "USD", 12000, 5000, 7000),
        ("2026-03-02", "USD", 24000, 0, 24000),
        ("2026-03-02", "EUR", 2500, 0, 2500),
    ]
    monthly = (await feed(payments, shop, period="month", kind="refund")).json()
    assert [i["kind"] for i in monthly["items"]] == ["refund"]
    assert [
        (t["period_start"], t["currency"], t["gross_minor"], t["net_minor"])
        for t in monthly["totals"]
    ] == [
        ("2026-04-01", "USD", 12000, 12000),
        ("2026-03-01", "USD", 36000, 31000),
        ("2026-03-01", "EUR", 2500, 2500),
    ]
    daily = (await feed(payments, shop, **{"from": "2026-03-08", "to": "2026-03-08"})).json()
    assert [i["order_id"] for i in daily["items"]] == [march_2["id"]]
    one_day = (
        await feed(payments, shop, **{"from": "2026-03-02", "to": "2026-03-03", "period": "day"})
    ).json()["totals"]
    assert [(t["period_start"], t["currency"]) for t in one_day] == [
        ("2026-03-03", "EUR"),
        ("2026-03-02", "USD"),
    ]
    backwards = await feed(payments, shop, **{"from": "2026-03-31", "to": "2026-03-01"})
    assert backwards.status_code == 422
    assert (await feed(payments, shop, period="year")).status_code == 422


async def test_only_the_business_coach_sees_its_feed(payments: Payments, shop: Shop) -> None:
    await payments.created_order(shop.free["id"])
    other = await payments.catalog.business("Other Studio")
    someone = payments.catalog.person()
    url = f"{API}/businesses/{shop.business.id}/activity"
    for headers in (other.coach, someone.headers):
        assert (await payments.http.get(url, headers=headers)).status_code == 404
    assert (await payments.http.get(url)).status_code == 401
    mine = await payments.http.get(f"{API}/businesses/{other.id}/activity", headers=other.coach)
    assert mine.status_code == 200
    assert (mine.json()["items"], mine.json()["summary"]) == ([], [])
