"""Sequence steps that act on a client's account (notifications.sequence_action_requested.v1),
from the event on the broker to the entitlement or the group place, applied once."""

from __future__ import annotations

import uuid
from typing import Any

from clients import models
from kit.contracts.notifications import SequenceActionRequestedV1
from tests.clients.conftest import Coach, make_coach
from tests.clients.test_purchases import (  # noqa: F401 (the fixture)
    Purchases,
    count,
    order_paid,
    purchases,
    rows,
)


def action(coach: Coach, order_id: uuid.UUID, **overrides: Any) -> SequenceActionRequestedV1:
    run_id = uuid.uuid4()
    step_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "business_id": uuid.UUID(coach.business_id),
        "sequence_id": uuid.uuid4(),
        "sequence_name": "Onboarding",
        "run_id": run_id,
        "step_id": step_id,
        "action": "assign_worksheet",
        "order_id": order_id,
        "buyer_email": "new.buyer@example.com",
        "buyer_name": "New Buyer",
        "offering_id": uuid.uuid4(),
        "offering_version_id": uuid.uuid4(),
        "target_name": "Goals worksheet",
        "details": {"questions": ["What matters most?"]},
        **overrides,
    }
    return SequenceActionRequestedV1(**values)


async def test_a_worksheet_and_an_agreement_step_give_one_entitlement_each(
    purchases: Purchases,  # noqa: F811
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    order = order_paid(coach)
    await purchases.deliver(order)
    worksheet = action(coach, order.order_id)
    agreement = action(
        coach,
        order.order_id,
        action="request_agreement",
        target_name="Coaching agreement",
        details={"agreement_text": "I agree."},
    )
    # The same step again (a redelivery, and a second event for the same run and step).
    copy = worksheet.model_copy(update={"id": uuid.uuid4()})
    await purchases.deliver(worksheet, worksheet, copy, agreement)

    given = await rows(
        api, models.Entitlement.__table__, models.Entitlement.kind.in_(["worksheet", "agreement"])
    )
    assert sorted((e.kind, e.offering_name, e.status) for e in given) == [
        ("agreement", "Coaching agreement", "active"),
        ("worksheet", "Goals worksheet", "active"),
    ]
    by_kind = {e.kind: e for e in given}
    assert by_kind["worksheet"].details == {"questions": ["What matters most?"]}
    assert by_kind["worksheet"].offering_version_id == worksheet.offering_version_id
    [purchase] = await rows(api, models.PurchaseApplied.__table__)
    assert {e.client_id for e in given} == {purchase.client_id}
    assert await count(api, models.SequenceActionApplied) == 2


async def test_a_group_step_adds_the_buyer_once_and_publishes_it(
    purchases: Purchases,  # noqa: F811
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    created = await api.http.post(
        coach.url("/groups"), json={"name": "Spring cohort"}, headers=coach.headers
    )
    group_id = uuid.UUID(created.json()["id"])
    order = order_paid(coach)
    await purchases.deliver(order)
    step = action(
        coach,
        order.order_id,
        action="add_to_group",
        offering_id=None,
        offering_version_id=None,
        group_id=group_id,
        target_name="Spring cohort",
        details={},
    )
    await purchases.deliver(step, step.model_copy(update={"id": uuid.uuid4()}))
    detail = (await api.http.get(coach.url(f"/groups/{group_id}"), headers=coach.headers)).json()
    assert [m["email"] for m in detail["members"]] == ["new.buyer@example.com"]
    [published] = await purchases.wait_published("clients.group_member_added.v1", 1)
    assert published["group_id"] == str(group_id)


async def test_a_step_before_its_order_is_applied_waits_for_it(
    purchases: Purchases,  # noqa: F811
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    order = order_paid(coach)
    step = action(coach, order.order_id)
    await purchases.publish(step)  # retried until the order is applied
    await purchases.deliver(order)
    await purchases.wait_handled(step)
    assert await count(api, models.Entitlement, models.Entitlement.kind == "worksheet") == 1
