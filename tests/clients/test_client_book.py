"""The client book on the clients service: invitations, clients, groups, isolation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from clients import models
from kit.db import utcnow
from tests.clients.conftest import ClientsApi, Coach, invitation_token, make_coach

API = "/api/v1/clients"
PASSWORD = "a long unusual passphrase"


async def count(api: ClientsApi, table: object, *where: object) -> int:
    async with api.engine.connect() as conn:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return int((await conn.execute(query)).scalar_one())


async def invite(api: ClientsApi, coach: Coach, addresses: str | list[str]) -> dict:
    response = await api.http.post(
        coach.url("/invitations"), json={"addresses": addresses}, headers=coach.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def accept_new(api: ClientsApi, token: str, name: str = "Jamie Client") -> dict:
    response = await api.http.post(
        f"{API}/invitations/accept", json={"token": token, "name": name, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def a_client(api: ClientsApi, coach: Coach, email: str | None = None) -> dict:
    """A client of the coach's business, made the real way: invitation, then acceptance."""
    email = email or f"client-{uuid.uuid4().hex[:8]}@example.com"
    await invite(api, coach, email)
    accepted = await accept_new(api, await invitation_token(api, email))
    clients = await api.http.get(coach.url(f"/clients?q={email}"), headers=coach.headers)
    [client] = clients.json()["items"]
    return {**client, "session": accepted}


# -- invitations ---------------------------------------------------------------------------


async def test_each_address_gets_its_outcome(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    other_coach = await make_coach(clients_api)  # has an account, is nobody's client yet
    existing = await a_client(clients_api, coach)
    await invite(clients_api, coach, "pending@example.com")
    old_token = await invitation_token(clients_api, "pending@example.com")

    result = await invite(
        clients_api,
        coach,
        f"{other_coach.email.upper()}, new@example.com; {existing['email']}\n"
        "pending@example.com not-an-address NEW@example.com",
    )
    outcomes = {(r["input"], r["outcome"]) for r in result["results"]}
    assert outcomes == {
        (other_coach.email.upper(), "added"),
        ("new@example.com", "invited"),
        (existing["email"], "already_client"),
        ("pending@example.com", "already_invited"),
        ("not-an-address", "invalid"),
    }
    assert result["counts"] == {
        "added": 1,
        "invited": 1,
        "already_client": 1,
        "already_invited": 1,
        "invalid": 1,
    }
    [invalid] = [r for r in result["results"] if r["outcome"] == "invalid"]
    assert "@" in invalid["reason"]

    added = [
        e
        for e in await clients_api.outbox_events("clients.client_added.v1")
        if e["email"] == other_coach.email
    ]
    assert len(added) == 1 and added[0]["source"] == "added" and added[0]["notify"] is True
    assert added[0]["business_name"] == "Casey Coaching"

    # The resend replaced the link: the old one no longer works, the new one does.
    new_token = await invitation_token(clients_api, "pending@example.com")
    assert new_token != old_token
    gone = await clients_api.http.post(f"{API}/invitations/lookup", json={"token": old_token})
    assert gone.status_code == 404
    ok = await clients_api.http.post(f"{API}/invitations/lookup", json={"token": new_token})
    assert ok.json()["status"] == "valid" and ok.json()["account_exists"] is False


async def test_accepting_creates_one_account_and_one_client_even_when_posted_twice_at_once(
    clients_api: ClientsApi,
) -> None:
    coach = await make_coach(clients_api)
    await invite(clients_api, coach, "twice@example.com")
    token = await invitation_token(clients_api, "twice@example.com")
    body = {"token": token, "name": "Twice", "password": PASSWORD}
    answers = await asyncio.gather(
        *(clients_api.http.post(f"{API}/invitations/accept", json=body) for _ in range(3))
    )
    assert sorted(a.status_code for a in answers) == [201, 410, 410]
    assert (
        await count(clients_api, models.Account, models.Account.email == "twice@example.com") == 1
    )
    assert await count(clients_api, models.Client) == 1
    [winner] = [a.json() for a in answers if a.status_code == 201]
    assert winner["next"] == "/home"
    assert winner["account"]["email_verified"] is True

    me = await clients_api.http.get(
        f"{API}/me/memberships", headers={"Authorization": f"Bearer {winner['access_token']}"}
    )
    [membership] = me.json()["items"]
    assert membership["business_id"] == coach.business_id
    assert membership["business_name"] == "Casey Coaching"


async def test_an_existing_account_accepts_with_its_password(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    # Invited before the address had an account; the account appeared meanwhile.
    await invite(clients_api, coach, "slow@example.com")
    token = await invitation_token(clients_api, "slow@example.com")
    await clients_api.signup("slow@example.com", business_name="Slow Co")
    lookup = await clients_api.http.post(f"{API}/invitations/lookup", json={"token": token})
    assert lookup.json()["account_exists"] is True

    wrong = await clients_api.http.post(
        f"{API}/invitations/accept", json={"token": token, "password": "not the password"}
    )
    assert wrong.status_code == 401
    assert await count(clients_api, models.Client) == 0, "a wrong password changes nothing"
    right = await clients_api.http.post(
        f"{API}/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert right.status_code == 201
    assert await count(clients_api, models.Account, models.Account.email == "slow@example.com") == 1
    assert await count(clients_api, models.Client) == 1


async def test_logged_in_invitee_accepts_as_themselves_and_nobody_else_can(
    clients_api: ClientsApi,
) -> None:
    coach = await make_coach(clients_api)
    stranger = await make_coach(clients_api, business="Stranger Co")
    # Invited first, signed up later: now the invitee can accept while logged in.
    await invite(clients_api, coach, "member@example.com")
    token = await invitation_token(clients_api, "member@example.com")
    signed_up = await clients_api.signup("member@example.com", business_name="Member Co")
    as_stranger = await clients_api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=stranger.headers
    )
    assert as_stranger.status_code == 403
    assert "member@example.com" in as_stranger.json()["detail"]
    as_member = await clients_api.http.post(
        f"{API}/invitations/accept",
        json={"token": token},
        headers={"Authorization": f"Bearer {signed_up['access_token']}"},
    )
    assert as_member.status_code == 201


@pytest.mark.parametrize("state", ["expired", "revoked", "reused", "unknown"])
async def test_unusable_tokens_are_refused_and_change_nothing(
    clients_api: ClientsApi, state: str
) -> None:
    coach = await make_coach(clients_api)
    await invite(clients_api, coach, "who@example.com")
    token = await invitation_token(clients_api, "who@example.com")
    [invitation] = (
        await clients_api.http.get(coach.url("/invitations"), headers=coach.headers)
    ).json()["items"]
    if state == "expired":
        async with clients_api.engine.begin() as conn:
            await conn.execute(
                update(models.Invitation).values(expires_at=utcnow() - timedelta(seconds=1))
            )
    elif state == "revoked":
        revoked = await clients_api.http.post(
            coach.url(f"/invitations/{invitation['id']}/revoke"), headers=coach.headers
        )
        assert revoked.json()["status"] == "revoked"
    elif state == "reused":
        await accept_new(clients_api, token)
    else:
        token = "x" * 43
    accounts_before = await count(clients_api, models.Account)
    clients_before = await count(clients_api, models.Client)
    answer = await clients_api.http.post(
        f"{API}/invitations/accept", json={"token": token, "name": "N", "password": PASSWORD}
    )
    assert answer.status_code == (404 if state == "unknown" else 410)
    assert answer.json()["detail"]
    assert await count(clients_api, models.Account) == accounts_before
    assert await count(clients_api, models.Client) == clients_before
    listed = (await clients_api.http.get(coach.url("/invitations"), headers=coach.headers)).json()
    expected = {
        "expired": "expired",
        "revoked": "revoked",
        "reused": "accepted",
        "unknown": "pending",
    }
    assert listed["items"][0]["status"] == expected[state]


async def test_daily_invitation_cap_refuses_clearly_and_sends_nothing(
    clients_api: ClientsApi,
) -> None:
    clients_api.settings.invitation_daily_cap = 3
    coach = await make_coach(clients_api)
    too_many = await clients_api.http.post(
        coach.url("/invitations"),
        json={"addresses": "a@example.com b@example.com c@example.com d@example.com"},
        headers=coach.headers,
    )
    assert too_many.status_code == 429
    assert "3 invitation emails a day" in too_many.json()["detail"]
    assert too_many.json()["remaining_today"] == 3
    assert int(too_many.headers["retry-after"]) > 0
    assert await count(clients_api, models.Invitation) == 0
    assert await clients_api.outbox_events("clients.invitation_sent.v1") == []

    fits = await invite(clients_api, coach, "a@example.com b@example.com c@example.com")
    assert fits["remaining_today"] == 0
    again = await clients_api.http.post(
        coach.url("/invitations"), json={"addresses": "d@example.com"}, headers=coach.headers
    )
    assert again.status_code == 429
    quota = await clients_api.http.get(coach.url("/invitations/quota"), headers=coach.headers)
    assert quota.json() == {"daily_cap": 3, "sent_today": 3, "remaining_today": 0}


async def test_bad_invitation_input(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    for body, field in (
        ({"addresses": " , ; "}, "addresses"),
        ({"addresses": "a@example.com", "business_id": coach.business_id}, "business_id"),
        ({}, "addresses"),
    ):
        response = await clients_api.http.post(
            coach.url("/invitations"), json=body, headers=coach.headers
        )
        assert response.status_code == 422, body
        assert field in [e["field"] for e in response.json()["errors"]]
    assert await count(clients_api, models.Invitation) == 0


# -- clients -------------------------------------------------------------------------------


async def test_list_search_filter_sort_and_paginate(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    names = ["Alice Anders", "Bob Brown", "Carla Cruz", "Dan Dee"]
    made = []
    for name in names:
        email = f"{name.split()[0].lower()}@example.com"
        await invite(clients_api, coach, email)
        await accept_new(clients_api, await invitation_token(clients_api, email), name=name)
        made.append(email)
    group = (
        await clients_api.http.post(
            coach.url("/groups"), json={"name": "Yoga"}, headers=coach.headers
        )
    ).json()
    listed = (
        await clients_api.http.get(coach.url("/clients?sort=name"), headers=coach.headers)
    ).json()
    assert [c["name"] for c in listed["items"]] == names
    assert all(c["source"] == "invited" for c in listed["items"])
    ids = {c["name"]: c["id"] for c in listed["items"]}
    await clients_api.http.post(
        coach.url(f"/groups/{group['id']}/members"),
        json={"client_ids": [ids["Bob Brown"], ids["Dan Dee"]]},
        headers=coach.headers,
    )
    await clients_api.http.post(
        coach.url(f"/clients/{ids['Carla Cruz']}/archive"), headers=coach.headers
    )

    async def names_for(query: str) -> list[str]:
        page = await clients_api.http.get(coach.url(f"/clients?{query}"), headers=coach.headers)
        assert page.status_code == 200, page.text
        return [c["name"] for c in page.json()["items"]]

    assert await names_for("q=BRO") == ["Bob Brown"]
    assert await names_for("q=dan@example") == ["Dan Dee"]
    assert await names_for("q=%25") == []  # a literal %, not a wildcard
    assert await names_for(f"group_id={group['id']}&sort=-name") == ["Dan Dee", "Bob Brown"]
    assert await names_for("sort=name") == ["Alice Anders", "Bob Brown", "Dan Dee"]
    assert await names_for("status=archived") == ["Carla Cruz"]
    assert await names_for("status=all&sort=email&limit=2&offset=2") == ["Carla Cruz", "Dan Dee"]
    page = (await clients_api.http.get(coach.url("/clients?limit=2"), headers=coach.headers)).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    bad = await clients_api.http.get(coach.url("/clients?sort=password"), headers=coach.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sort"


async def test_profile_timeline_archive_and_restore(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    client = await a_client(clients_api, coach)
    url = coach.url(f"/clients/{client['id']}")
    archived = await clients_api.http.post(f"{url}/archive", headers=coach.headers)
    assert archived.json()["status"] == "archived"
    assert (await clients_api.http.post(f"{url}/archive", headers=coach.headers)).status_code == 409
    restored = await clients_api.http.post(f"{url}/restore", headers=coach.headers)
    assert restored.json()["status"] == "active"
    profile = (await clients_api.http.get(url, headers=coach.headers)).json()
    kinds = [e["kind"] for e in profile["timeline"]]
    assert kinds[:2] == ["restored", "archived"], "newest first"
    assert kinds.count("invited") == 2, "invited by email, then accepted"
    assert len(await clients_api.outbox_events("clients.client_archived.v1")) == 1
    assert len(await clients_api.outbox_events("clients.client_restored.v1")) == 1


# -- groups --------------------------------------------------------------------------------


async def test_groups(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    first, second = await a_client(clients_api, coach), await a_client(clients_api, coach)
    empty = await clients_api.http.post(
        coach.url("/groups"), json={"name": "Yoga"}, headers=coach.headers
    )
    assert empty.status_code == 201 and empty.json()["member_count"] == 0
    group = empty.json()
    duplicate = await clients_api.http.post(
        coach.url("/groups"), json={"name": " yoga "}, headers=coach.headers
    )
    assert duplicate.status_code == 409
    blank = await clients_api.http.post(
        coach.url("/groups"), json={"name": "  "}, headers=coach.headers
    )
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "name"

    members = coach.url(f"/groups/{group['id']}/members")
    both = {"client_ids": [first["id"], second["id"]]}
    added = await clients_api.http.post(members, json=both, headers=coach.headers)
    assert added.json()["changed"] == 2 and added.json()["group"]["member_count"] == 2
    again = await clients_api.http.post(members, json=both, headers=coach.headers)
    assert again.json()["changed"] == 0, "adding twice changes nothing"
    assert len(await clients_api.outbox_events("clients.group_member_added.v1")) == 2

    removed = await clients_api.http.post(
        f"{members}/remove", json={"client_ids": [first["id"]]}, headers=coach.headers
    )
    assert removed.json()["changed"] == 1
    await clients_api.http.post(
        f"{members}/remove", json={"client_ids": [first["id"]]}, headers=coach.headers
    )
    assert len(await clients_api.outbox_events("clients.group_member_removed.v1")) == 1
    # Removal touched nothing else of the client.
    profile = (
        await clients_api.http.get(coach.url(f"/clients/{first['id']}"), headers=coach.headers)
    ).json()
    assert profile["status"] == "active" and profile["groups"] == []
    assert any(e["kind"] == "group_removed" for e in profile["timeline"])

    renamed = await clients_api.http.patch(
        coach.url(f"/groups/{group['id']}"), json={"name": "Morning Yoga"}, headers=coach.headers
    )
    assert renamed.json()["name"] == "Morning Yoga"
    listing = (await clients_api.http.get(coach.url("/groups"), headers=coach.headers)).json()
    assert [(g["name"], g["member_count"]) for g in listing["items"]] == [("Morning Yoga", 1)]
    deleted = await clients_api.http.delete(
        coach.url(f"/groups/{group['id']}"), headers=coach.headers
    )
    assert deleted.status_code == 204
    assert (await clients_api.http.get(coach.url("/groups"), headers=coach.headers)).json()[
        "items"
    ] == []
    assert await count(clients_api, models.Client) == 2, "deleting a group keeps its members"
    assert len(await clients_api.outbox_events("clients.group_created.v1")) == 1
    assert len(await clients_api.outbox_events("clients.group_deleted.v1")) == 1


async def test_concurrent_adds_of_one_member_make_one_membership(clients_api: ClientsApi) -> None:
    coach = await make_coach(clients_api)
    client = await a_client(clients_api, coach)
    group = (
        await clients_api.http.post(coach.url("/groups"), json={"name": "G"}, headers=coach.headers)
    ).json()
    answers = await asyncio.gather(
        *(
            clients_api.http.post(
                coach.url(f"/groups/{group['id']}/members"),
                json={"client_ids": [client["id"]]},
                headers=coach.headers,
            )
            for _ in range(4)
        )
    )
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["changed"] for a in answers) == 1
    assert len(await clients_api.outbox_events("clients.group_member_added.v1")) == 1


# -- isolation -----------------------------------------------------------------------------


async def test_another_business_ids_are_404_and_lists_show_only_own(
    clients_api: ClientsApi,
) -> None:
    a = await make_coach(clients_api, business="Alpha")
    b = await make_coach(clients_api, business="Beta")
    b_client = await a_client(clients_api, b)
    b_group = (
        await clients_api.http.post(
            b.url("/groups"), json={"name": "Beta group"}, headers=b.headers
        )
    ).json()
    await invite(clients_api, b, "beta-only@example.com")
    pending = await clients_api.http.get(b.url("/invitations?status=pending"), headers=b.headers)
    [b_invitation] = pending.json()["items"]

    # A's coach, using A's business path with B's object ids.
    attempts = [
        ("GET", a.url(f"/clients/{b_client['id']}"), None),
        ("POST", a.url(f"/clients/{b_client['id']}/archive"), None),
        ("POST", a.url(f"/clients/{b_client['id']}/restore"), None),
        ("GET", a.url(f"/groups/{b_group['id']}"), None),
        ("PATCH", a.url(f"/groups/{b_group['id']}"), {"name": "Mine now"}),
        ("DELETE", a.url(f"/groups/{b_group['id']}"), None),
        ("POST", a.url(f"/groups/{b_group['id']}/members"), {"client_ids": [b_client["id"]]}),
        (
            "POST",
            a.url(f"/groups/{b_group['id']}/members/remove"),
            {"client_ids": [b_client["id"]]},
        ),
        ("POST", a.url(f"/invitations/{b_invitation['id']}/revoke"), None),
        ("POST", a.url(f"/invitations/{b_invitation['id']}/resend"), None),
    ]
    for method, url, body in attempts:
        response = await clients_api.http.request(method, url, json=body, headers=a.headers)
        assert response.status_code == 404, (method, url, response.text)
    # A's coach on B's business path: the business does not exist for them.
    for path in ("/clients", "/groups", "/invitations", f"/clients/{b_client['id']}"):
        response = await clients_api.http.get(b.url(path), headers=a.headers)
        assert response.status_code == 404, path
    # B's client cannot be put in A's group.
    a_group = (
        await clients_api.http.post(
            a.url("/groups"), json={"name": "Alpha group"}, headers=a.headers
        )
    ).json()
    smuggle = await clients_api.http.post(
        a.url(f"/groups/{a_group['id']}/members"),
        json={"client_ids": [b_client["id"]]},
        headers=a.headers,
    )
    assert smuggle.status_code == 422 and smuggle.json()["errors"][0]["field"] == "client_ids"
    # Lists show only A's own.
    assert (await clients_api.http.get(a.url("/clients"), headers=a.headers)).json()["items"] == []
    assert (await clients_api.http.get(a.url("/invitations"), headers=a.headers)).json()[
        "items"
    ] == []
    assert [
        g["name"]
        for g in (await clients_api.http.get(a.url("/groups"), headers=a.headers)).json()["items"]
    ] == ["Alpha group"]
    # Nothing of B's changed.
    profile = (
        await clients_api.http.get(b.url(f"/clients/{b_client['id']}"), headers=b.headers)
    ).json()
    assert profile["status"] == "active" and [g["name"] for g in profile["groups"]] == []
    assert (
        await clients_api.http.get(b.url(f"/groups/{b_group['id']}"), headers=b.headers)
    ).json()["name"] == "Beta group"
