"""A buyer's purchase history: their paid orders in every business, newest first, and
nobody else's."""

from __future__ import annotations

from typing import Any

from tests.payments.conftest import API, Payments, Shop, person_headers


async def history(payments: Payments, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    answer = await payments.http.get(f"{API}/me/orders", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_my_orders_lists_the_buyers_purchases_in_every_business_newest_first(
    payments: Payments, shop: Shop
) -> None:
    catalog = payments.catalog
    kim, lee = catalog.person(), catalog.person()
    kim_headers = person_headers(catalog, kim, "kim@example.com")
    lee_headers = person_headers(catalog, lee, "lee@example.com")
    other = await catalog.business("Dune Yoga")
    monthly = await catalog.published_offering(
        other,
        name="Yoga membership",
        price_minor=3000,
        billing={"type": "recurring", "interval": "month"},
    )
    workbook = await catalog.published_offering(
        other, name="Workbook", billing={"type": "free"}, price_minor=0, kind="worksheet"
    )

    # Logged in: a free order, then a paid one.
    free = await payments.created_order(shop.free["id"], headers=kim_headers)
    paid = await payments.created_order(shop.paid["id"], headers=kim_headers)
    method = await payments.stripe.confirm_card_setup(paid["stripe"]["client_secret"])
    assert (await payments.pay(paid, method, headers=kim_headers)).json()["status"] == "paid"
    # Logged out, with the account's email (any case), in another business.
    logged_out = await payments.created_order(workbook["id"], name="Kim", email="Kim@Example.com")
    # Started and never paid: not a purchase.
    await payments.created_order(monthly["id"], headers=kim_headers)
    # Somebody else's purchases, logged in and logged out.
    await payments.created_order(shop.free["id"], headers=lee_headers)
    await payments.created_order(workbook["id"], name="Lee", email="lee@example.com")

    mine = await history(payments, kim_headers)
    assert mine["total"] == 3 and (mine["limit"], mine["offset"]) == (20, 0)
    assert [o["id"] for o in mine["items"]] == [
        logged_out["order"]["id"],
        paid["order"]["id"],
        free["order"]["id"],
    ]
    newest, card, intro = mine["items"]
    assert (newest["business_name"], newest["offering_name"], newest["kind"]) == (
        "Dune Yoga",
        "Workbook",
        "worksheet",
    )
    assert (newest["price_label"], newest["amount_minor"], newest["status"]) == ("Free", 0, "paid")
    assert (card["business_name"], card["offering_name"], card["price_label"]) == (
        "Harbour Pilates",
        "Reformer course",
        "$120.00",
    )
    assert (card["amount_minor"], card["currency"], card["refunded_minor"]) == (12000, "USD", 0)
    assert card["paid_at"] is not None and card["created_at"] is not None
    assert intro["offering_name"] == "Intro call"
    assert set(card) == {
        "id",
        "business_id",
        "business_name",
        "offering_name",
        "kind",
        "amount_minor",
        "currency",
        "price_label",
        "status",
        "paid_at",
        "created_at",
        "refunded_minor",
    }

    page = await history(payments, kim_headers, limit=1, offset=1)
    assert ([o["id"] for o in page["items"]], page["total"]) == ([paid["order"]["id"]], 3)
    assert (await history(payments, kim_headers, offset=3))["items"] == []

    # Isolation: Lee sees only Lee's, a new account nothing, nobody logged out anything.
    theirs = await history(payments, lee_headers)
    assert sorted(o["offering_name"] for o in theirs["items"]) == ["Intro call", "Workbook"]
    nobody = catalog.person()
    empty = await history(payments, person_headers(catalog, nobody, "nobody@example.com"))
    assert (empty["items"], empty["total"]) == ([], 0)
    assert (await payments.http.get(f"{API}/me/orders")).status_code == 401
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        answer = await payments.http.get(f"{API}/me/orders", params=bad, headers=kim_headers)
        assert answer.status_code == 422
