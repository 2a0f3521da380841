"""The whole path with the real producer: the clients service's api and relay publish
the client book's events, the catalog's worker consumes them, and eligibility follows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.worker import build_worker as build_clients_worker
from tests.catalog.conftest import API, Business, Catalog, RunningWorker, wait_until
from tests.clients.conftest import ClientsApi, Coach, clients_api, invitation_token, make_coach

__all__ = ["clients_api"]  # the fixture, imported for this module


@pytest.fixture
async def clients_relay(
    clients_api: ClientsApi, running_worker: RunningWorker
) -> AsyncIterator[None]:
    """The clients worker (its outbox relay), started after the catalog's queue exists."""
    stop = asyncio.Event()
    task = asyncio.create_task(build_clients_worker(clients_api.settings).run(stop))
    yield
    stop.set()
    await task


async def a_client(api: ClientsApi, coach: Coach) -> dict[str, Any]:
    """A client made the real way (invitation, acceptance); returns the clients API's row."""
    email = f"client-{uuid.uuid4().hex[:8]}@example.com"
    invited = await api.http.post(
        coach.url("/invitations"), json={"addresses": email}, headers=coach.headers
    )
    assert invited.status_code == 200, invited.text
    accepted = await api.http.post(
        "/api/v1/clients/invitations/accept",
        json={
            "token": await invitation_token(api, email),
            "name": "Jamie Client",
            "password": "a long unusual passphrase",
        },
    )
    assert accepted.status_code == 201, accepted.text
    listed = await api.http.get(coach.url(f"/clients?q={email}"), headers=coach.headers)
    [client] = listed.json()["items"]
    [added] = [e for e in await api.outbox_events("clients.client_added.v1") if e["email"] == email]
    return {**client, "account_id": added["account_id"]}


@pytest.mark.usefixtures("clients_relay")
async def test_group_offering_follows_the_client_book(
    catalog: Catalog, clients_api: ClientsApi
) -> None:
    coach = await make_coach(clients_api, business="Harbour Pilates")
    business_id = uuid.UUID(coach.business_id)
    biz = Business(
        business_id,
        "",
        "Harbour Pilates",
        catalog.issuer.headers(uuid.UUID(coach.account_id), {business_id: "owner"}),
    )
    member, other = await a_client(clients_api, coach), await a_client(clients_api, coach)
    group = await clients_api.http.post(
        coach.url("/groups"), json={"name": "Reformer"}, headers=coach.headers
    )
    group_id = group.json()["id"]
    members_url = coach.url(f"/groups/{group_id}/members")
    await clients_api.http.post(
        members_url, json={"client_ids": [member["id"]]}, headers=coach.headers
    )

    async def group_known() -> bool:
        listed = await catalog.http.get(biz.url("/groups"), headers=biz.coach)
        return [g["id"] for g in listed.json()["items"]] == [group_id]

    await wait_until(group_known, 20, "the group reached the catalog")
    offering = await catalog.published_offering(biz, visibility="groups", group_ids=[group_id])
    member_headers = catalog.issuer.headers(uuid.UUID(member["account_id"]))
    other_headers = catalog.issuer.headers(uuid.UUID(other["account_id"]))

    async def member_may_buy() -> bool:
        return (await catalog.quote(offering["id"], member_headers)).status_code == 200

    await wait_until(member_may_buy, 20, "the membership reached the catalog")
    refused = await catalog.quote(offering["id"], other_headers)
    assert (refused.status_code, refused.json()["reason"]) == (403, "not_in_group")

    # The business (and its slug) came with clients.business_created.v1.
    [created] = [
        e
        for e in await clients_api.outbox_events("clients.business_created.v1")
        if e["business_id"] == coach.business_id
    ]
    packages = await catalog.http.get(f"{API}/public/businesses/{created['slug']}/packages")
    assert packages.status_code == 200, packages.text
    assert packages.json()["business"]["name"] == "Harbour Pilates"

    await clients_api.http.post(
        f"{members_url}/remove", json={"client_ids": [member["id"]]}, headers=coach.headers
    )

    async def member_refused() -> bool:
        response = await catalog.quote(offering["id"], member_headers)
        return response.status_code == 403 and response.json()["reason"] == "not_in_group"

    await wait_until(member_refused, 20, "the removal reached the catalog")
