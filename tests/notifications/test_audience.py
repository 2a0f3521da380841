"""The audience read model: late, repeated and reordered events give the same audience."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from kit.contracts.base import Event
from notifications.audience.repository import AudienceRepository
from notifications.models import AudienceClient, GroupMembership
from tests.notifications import events
from tests.notifications.clientbook import CoachApi, apply, audience_of
from tests.notifications.conftest import Notifications, SmtpServer, free_port


async def test_scrambled_and_repeated_events_through_the_broker(
    notifications: Notifications,
) -> None:
    business = uuid.uuid4()
    t = events.at
    back = events.client_added(business, occurred_at=t(0), email="Back@Example.com")
    gone = events.client_added(business, occurred_at=t(1), email="gone@example.com")
    early_archive = events.client_added(business, occurred_at=t(2), email="early@example.com")
    left_group = events.client_added(business, occurred_at=t(3), email="left@example.com")
    group = events.group_created(business, occurred_at=t(10), group_name="Morning yoga")
    other_business_client = events.client_added(uuid.uuid4(), occurred_at=t(0))

    in_order = [
        back,
        gone,
        early_archive,
        left_group,
        other_business_client,
        group,
        events.member_added(group.group_id, back, occurred_at=t(11)),
        events.member_added(group.group_id, gone, occurred_at=t(12)),
        events.member_added(group.group_id, left_group, occurred_at=t(13)),
        events.group_renamed(group, "Evening yoga", occurred_at=t(14)),
        events.client_archived(back, occurred_at=t(20)),
        events.client_restored(back, occurred_at=t(21)),
        events.client_archived(gone, occurred_at=t(22)),
        events.client_archived(early_archive, occurred_at=t(23)),
        events.member_removed(group.group_id, left_group, occurred_at=t(24)),
        # Removing a membership that never existed changes nothing.
        events.member_removed(group.group_id, early_archive, occurred_at=t(25)),
    ]
    # Newest first, and some of them twice: the opposite of the order they happened in.
    scrambled = [*reversed(in_order), in_order[0], in_order[6], in_order[11], in_order[14]]
    await notifications.publish_all(*scrambled)

    assert await audience_of(notifications, business) == {"back@example.com", "left@example.com"}
    assert await audience_of(notifications, business, group.group_id) == {"back@example.com"}
    async with notifications.sessionmaker() as session:
        known = await AudienceRepository(session).group(business, group.group_id)
        clients = (
            await session.execute(
                select(AudienceClient.email, AudienceClient.status).where(
                    AudienceClient.business_id == business
                )
            )
        ).all()
    assert known is not None and (known.name, known.deleted) == ("Evening yoga", False)
    assert sorted(clients) == [
        ("back@example.com", "active"),
        ("early@example.com", "archived"),
        ("gone@example.com", "archived"),
        ("left@example.com", "active"),
    ]


@pytest.fixture
async def harness(make_notifications: Callable[..., Awaitable[Notifications]]) -> Notifications:
    return await make_notifications(SmtpServer(free_port()))


async def test_every_order_of_a_clients_events_gives_its_latest_status(
    harness: Notifications,
) -> None:
    business = uuid.uuid4()
    t = events.at
    expected: dict[str, bool] = {}
    for n, order in enumerate(itertools.permutations(range(4))):
        added = events.client_added(business, occurred_at=t(0), email=f"c{n}@example.com")
        history: list[Event] = [
            added,
            events.client_archived(added, occurred_at=t(1)),
            events.client_restored(added, occurred_at=t(2)),
            events.client_archived(added, occurred_at=t(3)),
        ]
        await apply(harness, *(history[i] for i in order))
        expected[added.email] = False
        # The same client added again later (they came back): active whatever the order.
        if n % 2:
            again = events.client_added(
                business,
                client_id=added.client_id,
                account_id=added.account_id,
                occurred_at=t(4),
                email=added.email,
            )
            await apply(harness, again, history[order[0]])
            expected[added.email] = True
    active = await audience_of(harness, business)
    assert active == {email for email, is_active in expected.items() if is_active}
    assert len(active) == 12


async def test_every_order_of_membership_events_gives_the_latest_membership(
    harness: Notifications,
) -> None:
    business = uuid.uuid4()
    t = events.at
    group = events.group_created(business, occurred_at=t(0))
    await apply(harness, group)
    members = set()
    for n, order in enumerate(itertools.permutations(range(3))):
        client = events.client_added(business, occurred_at=t(0), email=f"m{n}@example.com")
        await apply(harness, client)
        history = [
            events.member_added(group.group_id, client, occurred_at=t(1)),
            events.member_removed(group.group_id, client, occurred_at=t(2)),
            events.member_added(group.group_id, client, occurred_at=t(3)),
        ]
        if n % 2:  # ... or the last word is a removal
            history[2] = events.member_removed(group.group_id, client, occurred_at=t(3))
        else:
            members.add(client.email)
        await apply(harness, *(history[i] for i in order), history[order[0]])
    assert await audience_of(harness, business, group.group_id) == members
    assert len(members) == 3


async def test_a_member_added_before_its_group_and_client_are_known(
    harness: Notifications,
) -> None:
    business = uuid.uuid4()
    group = events.group_created(business, occurred_at=events.at(5))
    client = events.client_added(business, occurred_at=events.at(1), email="first@example.com")
    await apply(harness, events.member_added(group.group_id, client, occurred_at=events.at(6)))
    assert await audience_of(harness, business, group.group_id) == set()
    await apply(harness, client, group)
    assert await audience_of(harness, business, group.group_id) == {"first@example.com"}


async def test_a_deleted_group_loses_its_members_for_good(harness: Notifications) -> None:
    business = uuid.uuid4()
    t = events.at
    group = events.group_created(business, occurred_at=t(0))
    clients = [events.client_added(business, occurred_at=t(0)) for _ in range(3)]
    await apply(harness, group, *clients)
    await apply(
        harness, *(events.member_added(group.group_id, c, occurred_at=t(1)) for c in clients)
    )
    assert len(await audience_of(harness, business, group.group_id)) == 3

    deleted = events.group_deleted(group, occurred_at=t(10))
    # Then the deletion again, and news from before it arriving late.
    late = [
        deleted,
        events.member_added(group.group_id, clients[0], occurred_at=t(2)),
        events.group_renamed(group, "Renamed late", occurred_at=t(3)),
        events.group_created(business, group_id=group.group_id, occurred_at=t(0)),
        events.member_removed(group.group_id, clients[1], occurred_at=t(4)),
    ]
    await apply(harness, deleted, *late)
    assert await audience_of(harness, business, group.group_id) == set()
    async with harness.sessionmaker() as session:
        known = await AudienceRepository(session).group(business, group.group_id)
        memberships = (await session.execute(select(GroupMembership))).scalars().all()
    assert known is not None and known.deleted
    assert memberships == []
    # The clients themselves are still clients.
    assert len(await audience_of(harness, business)) == 3


async def test_a_deleted_group_cannot_be_targeted(coach_api: CoachApi) -> None:
    harness, business = coach_api.harness, coach_api.business
    group = events.group_created(business)
    client = events.client_added(business)
    await harness.publish_all(group, client, events.member_added(group.group_id, client))
    draft = await coach_api.create(audience={"kind": "group", "group_id": str(group.group_id)})
    assert draft["audience"] == {
        "kind": "group",
        "group_id": str(group.group_id),
        "group_name": "Morning yoga",
    }
    preview = (await coach_api.call("GET", f"/{draft['id']}/preview")).json()
    assert preview["recipient_count"] == 1

    await harness.publish_all(events.group_deleted(group))

    refused = await coach_api.call(
        "POST", json={**_body(), "audience": {"kind": "group", "group_id": str(group.group_id)}}
    )
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["audience.group_id"]
    preview = (await coach_api.call("GET", f"/{draft['id']}/preview")).json()
    assert (preview["recipient_count"], preview["unsubscribed_count"]) == (0, 0)
    send = await coach_api.call("POST", f"/{draft['id']}/send")
    assert send.status_code == 422
    assert [e["field"] for e in send.json()["errors"]] == ["audience.group_id"]
    assert (await coach_api.get(draft["id"]))["status"] == "draft"
    assert await harness.emails() == []


def _body() -> dict[str, object]:
    return {"subject": "Hello", "body_markdown": "Hi all", "audience": {"kind": "all"}}
