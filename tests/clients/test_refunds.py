"""A refund's effects on the clients service: a timeline entry always, and with
revoke_access on a full refund, what the order gave taken back once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from clients import models
from kit.contracts.payments import OrderPaidV1, OrderRefundedV1
from tests.clients.conftest import Coach, make_coach
from tests.clients.test_purchases import (
    Purchases,
    order_paid,
    profile,
    purchases,
    rows,
)

__all__ = ["purchases"]  # the fixture, imported for these tests


def order_refunded(paid: OrderPaidV1, **overrides: Any) -> OrderRefundedV1:
    values: dict[str, Any] = {
        "business_id": paid.business_id,
        "order_id": paid.order_id,
        "refund_id": uuid.uuid4(),
        "amount_minor": paid.amount_minor,
        "currency": paid.currency,
        "refunded_total_minor": paid.amount_minor,
        "full": True,
        "revoke_access": True,
        "buyer_email": paid.buyer_email,
        "buyer_account_id": paid.buyer_account_id,
        "buyer_name": paid.buyer_name,
        "offering_name": paid.offering_name,
        "kind": paid.kind,
        "business_name": paid.business_name,
        "refunded_at": datetime.now(UTC),
        **overrides,
    }
    return OrderRefundedV1(**values)


async def timeline(purchases: Purchases, coach: Coach, email: str) -> list[tuple[str, str]]:
    entries = (await profile(purchases.api, coach, email))["timeline"]
    return [(e["kind"], e["summary"]) for e in entries]


async def test_a_full_refund_with_revoke_takes_back_credits_and_access_once(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    sessions = order_paid(
        coach, kind="engagement", offering_name="Five sessions", details={"credits": 5}
    )
    course = order_paid(coach, kind="course", offering_name="Spring course")
    kept = order_paid(coach, kind="course", offering_name="Kept course")
    await purchases.deliver(sessions, course, kept)

    refunds = [order_refunded(sessions), order_refunded(course)]
    # Redelivered, and a second event for the same order's refund: revoked once.
    twice = refunds[1].model_copy(update={"id": uuid.uuid4(), "refund_id": uuid.uuid4()})
    await purchases.deliver(*refunds, refunds[0], twice)

    [credit] = await rows(api, models.Credit.__table__)
    assert (credit.total, credit.remaining) == (5, 0)
    entitlements = {
        e.offering_name: e.status for e in await rows(api, models.Entitlement.__table__)
    }
    assert entitlements == {"Spring course": "revoked", "Kept course": "active"}
    applied = {a.order_id: a.revoked_at for a in await rows(api, models.PurchaseApplied.__table__)}
    assert applied[sessions.order_id] is not None and applied[course.order_id] is not None
    assert applied[kept.order_id] is None

    entries = await timeline(purchases, coach, "new.buyer@example.com")
    refunded = [summary for kind, summary in entries if kind == "refunded"]
    assert sorted(refunded) == sorted(
        [
            "Refunded $120.00 of Five sessions; access revoked",
            "Refunded $120.00 of Spring course; access revoked",
            "Refunded $120.00 of Spring course; access revoked",  # the second event's entry
        ]
    )


async def test_without_revoke_or_when_partial_only_the_timeline_changes(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    sessions = order_paid(
        coach, kind="engagement", offering_name="Five sessions", details={"credits": 5}
    )
    course = order_paid(coach, kind="course", offering_name="Spring course")
    await purchases.deliver(sessions, course)
    await purchases.deliver(
        order_refunded(sessions, revoke_access=False),
        # revoke asked, but the refund is partial: access stays.
        order_refunded(course, amount_minor=2000, refunded_total_minor=2000, full=False),
    )
    [credit] = await rows(api, models.Credit.__table__)
    assert credit.remaining == 5
    [entitlement] = await rows(api, models.Entitlement.__table__)
    assert entitlement.status == "active"
    assert all(a.revoked_at is None for a in await rows(api, models.PurchaseApplied.__table__))
    refunded = sorted(
        s for k, s in await timeline(purchases, coach, "new.buyer@example.com") if k == "refunded"
    )
    assert refunded == [
        "Refunded $120.00 of Five sessions",
        "Refunded $20.00 of Spring course ($20.00 refunded in all)",
    ]


async def test_a_revoked_group_place_is_removed_once_and_nothing_else(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    groups = {}
    for name in ("Morning Yoga", "Evening Yoga"):
        created = await api.http.post(
            coach.url("/groups"), json={"name": name}, headers=coach.headers
        )
        groups[name] = created.json()["id"]
    morning = order_paid(
        coach,
        kind="group",
        offering_name="Morning club",
        details={"group_id": groups["Morning Yoga"]},
    )
    evening = order_paid(
        coach,
        kind="group",
        offering_name="Evening club",
        details={"group_id": groups["Evening Yoga"]},
    )
    await purchases.deliver(morning, evening)
    await purchases.wait_published("clients.group_member_added.v1", 2)

    refund = order_refunded(morning)
    await purchases.deliver(refund, refund)
    [removed] = await purchases.wait_published("clients.group_member_removed.v1", 1)
    assert removed["group_id"] == groups["Morning Yoga"]
    for name, members in (("Morning Yoga", 0), ("Evening Yoga", 1)):
        detail = await api.http.get(coach.url(f"/groups/{groups[name]}"), headers=coach.headers)
        assert len(detail.json()["members"]) == members, name
    # The client stays a client of the business, active.
    found = await api.http.get(coach.url("/clients?q=new.buyer"), headers=coach.headers)
    [client] = found.json()["items"]
    assert client["status"] == "active"
    assert len(await api.outbox_events("clients.group_member_removed.v1")) == 1


async def test_a_group_place_the_buyer_had_before_is_not_taken_by_a_refund(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    created = await api.http.post(
        coach.url("/groups"), json={"name": "Club"}, headers=coach.headers
    )
    group_id = created.json()["id"]
    first = order_paid(coach, kind="group", details={"group_id": group_id})
    second = order_paid(coach, kind="group", details={"group_id": group_id})  # a member already
    await purchases.deliver(first)
    await purchases.deliver(second)
    await purchases.deliver(order_refunded(second))
    detail = await api.http.get(coach.url(f"/groups/{group_id}"), headers=coach.headers)
    assert len(detail.json()["members"]) == 1
    assert await api.outbox_events("clients.group_member_removed.v1") == []
