"""The worker on a real broker: client book events in, catalog events out.

broker -> consumer -> read model -> eligibility, and API -> outbox -> relay -> broker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import func, select

from catalog.models import inbox
from kit.contracts.base import Event
from kit.contracts.catalog import CollectionUpdatedV1, OfferingPublishedV1
from kit.contracts.clients import BusinessCreatedV1, GroupCreatedV1
from tests.catalog.conftest import API, Business, Catalog, RunningWorker, wait_until


async def handled(catalog: Catalog, *events: Event) -> None:
    wanted = {e.id for e in events}

    async def done() -> bool:
        async with catalog.sessionmaker() as session:
            query = select(inbox.c.event_id).where(inbox.c.event_id.in_(wanted))
            return set((await session.execute(query)).scalars()) == wanted

    await wait_until(done, 15, f"{len(wanted)} event(s) handled")


async def test_client_book_events_on_the_broker_decide_who_may_buy(
    catalog: Catalog, running_worker: RunningWorker
) -> None:
    business_id = uuid.uuid4()
    slug = f"casey-{business_id.hex[:6]}"
    biz = Business(
        business_id,
        slug,
        "Casey Coaching",
        catalog.issuer.headers(uuid.uuid4(), {business_id: "owner"}),
    )
    group_id = uuid.uuid4()
    created = BusinessCreatedV1(
        business_id=business_id,
        occurred_at=catalog.now(),
        business_name="Casey Coaching",
        slug=slug,
        owner_account_id=uuid.uuid4(),
        owner_email="casey@example.com",
    )
    group = GroupCreatedV1(
        business_id=business_id, occurred_at=catalog.now(), group_id=group_id, group_name="Runners"
    )
    for event in (created, group):
        await running_worker.publish(event)
    await handled(catalog, created, group)

    # The group is known now: an offering for it can be written and published.
    offering = await catalog.published_offering(biz, visibility="groups", group_ids=[str(group_id)])
    await catalog.create_collection(biz, name="Members", in_app=True)
    member = catalog.person()
    added = catalog.client_added(biz, member)
    joined = catalog.member_event(biz, group_id, member)
    # Out of order (membership before the client) and twice: the same result.
    for event in (joined, added, joined, added):
        await running_worker.publish(event)
    await handled(catalog, added, joined)

    page = await catalog.http.get(
        f"{API}/public/businesses/{slug}/offerings/{offering['id']}", headers=member.headers
    )
    assert page.status_code == 200, page.text
    assert (await catalog.quote(offering["id"], member.headers)).status_code == 200
    menu = await catalog.http.get(f"{API}/me/menu", headers=member.headers)
    assert [b["business"]["slug"] for b in menu.json()["businesses"]] == [slug]

    left = catalog.member_event(biz, group_id, member, added=False)
    await running_worker.publish(left)
    await handled(catalog, left)
    refused = await catalog.quote(offering["id"], member.headers)
    assert (refused.status_code, refused.json()["reason"]) == (403, "not_in_group")

    async with catalog.sessionmaker() as session:
        rows = await session.execute(select(func.count()).select_from(inbox))
        assert rows.scalar_one() == 5  # each event once, duplicates skipped


async def test_catalog_events_reach_the_broker_through_the_outbox(
    catalog: Catalog, running_worker: RunningWorker
) -> None:
    exchange = await running_worker.publisher.events_exchange()
    connection = await running_worker.publisher.publish_connection()
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="catalog.#")
    received: list[tuple[str, dict[str, Any]]] = []

    async def on_message(message: Any) -> None:
        async with message.process():
            received.append((message.routing_key, json.loads(message.body)))

    await queue.consume(on_message)

    biz = await catalog.business()
    offering = await catalog.published_offering(biz, price_minor=4200)
    edited = await catalog.http.patch(
        biz.url(f"/offerings/{offering['id']}"), json={"price_minor": 4500}, headers=biz.coach
    )
    assert edited.json()["version"] == 2
    collection = await catalog.create_collection(biz, offering_ids=[offering["id"]])
    await catalog.http.patch(
        biz.url(f"/collections/{collection['id']}"), json={"in_app": True}, headers=biz.coach
    )
    await catalog.http.post(biz.url(f"/offerings/{offering['id']}/archive"), headers=biz.coach)
    await catalog.http.delete(biz.url(f"/collections/{collection['id']}"), headers=biz.coach)

    async def all_arrived() -> bool:
        return len(received) >= 6

    await wait_until(all_arrived, 15, "six catalog events on the broker")
    await asyncio.sleep(0.2)
    names = sorted(name for name, _ in received)
    assert names == sorted(
        [
            "catalog.offering_published.v1",
            "catalog.offering_published.v1",
            "catalog.collection_updated.v1",
            "catalog.collection_updated.v1",
            "catalog.offering_archived.v1",
            "catalog.collection_deleted.v1",
        ]
    )
    published = [
        OfferingPublishedV1.model_validate(body)
        for name, body in received
        if name == OfferingPublishedV1.name
    ]
    assert sorted((e.version, e.price_minor) for e in published) == [(1, 4200), (2, 4500)]
    assert all(e.business_id == biz.id and e.offering_name == "Strength program" for e in published)
    updates = [
        CollectionUpdatedV1.model_validate(body)
        for name, body in received
        if name == CollectionUpdatedV1.name
    ]
    assert sorted(u.in_app for u in updates) == [False, True]
    assert all(u.offering_ids == [uuid.UUID(offering["id"])] for u in updates)
    assert all(body["business_id"] == str(biz.id) for _, body in received)
    await channel.close()
