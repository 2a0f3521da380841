"""Unsubscribing by the signed link: per business and address, promotional email only."""

from __future__ import annotations

import base64
import uuid

import pytest
from sqlalchemy import func, select

from notifications.models import Unsubscribe
from notifications.unsubscribes.tokens import UnsubscribeTokens
from tests.notifications import events
from tests.notifications.clientbook import CoachApi, apply
from tests.notifications.conftest import no_more_deliveries
from tests.notifications.mail import parts

SECRET = "a-test-secret-of-enough-length"


def _flip(text: str, index: int) -> str:
    swapped = "B" if text[index] != "B" else "C"
    return text[:index] + swapped + text[index + 1 :]


def test_a_token_names_its_business_and_address() -> None:
    tokens = UnsubscribeTokens(SECRET)
    business = uuid.uuid4()
    token = tokens.issue(business, "  Jamie@Example.com ")
    assert token.startswith("u1.")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    target = tokens.read(token)
    assert target is not None
    assert (target.business_id, target.email) == (business, "jamie@example.com")
    assert tokens.issue(business, "jamie@example.com") == token, "stateless: always the same"
    assert UnsubscribeTokens(SECRET).read(token) == target, "any process with the secret"


def _forgeries(tokens: UnsubscribeTokens, business: uuid.UUID) -> dict[str, str]:
    token = tokens.issue(business, "jamie@example.com")
    version, payload, mac = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "==")
    other_business = base64.urlsafe_b64encode(uuid.uuid4().bytes + raw[16:]).rstrip(b"=").decode()
    other_address = base64.urlsafe_b64encode(raw[:16] + b"eve@example.com").rstrip(b"=").decode()
    return {
        "payload changed": f"{version}.{_flip(payload, 3)}.{mac}",
        "mac changed": f"{version}.{payload}.{_flip(mac, 5)}",
        "other business, same mac": f"{version}.{other_business}.{mac}",
        "other address, same mac": f"{version}.{other_address}.{mac}",
        "other version": f"u2.{payload}.{mac}",
        "no version": f"{payload}.{mac}",
        "mac cut short": f"{version}.{payload}.{mac[:-2]}",
        "no mac": f"{version}.{payload}.",
        "padding added": f"{version}.{payload}=.{mac}",
        "other secret": UnsubscribeTokens(SECRET + "x").issue(business, "jamie@example.com"),
        "garbage": "u1.!!!.???",
        "empty": "",
        "huge": "u1." + "A" * 2000 + "." + mac,
    }


def test_altered_and_foreign_tokens_are_refused() -> None:
    tokens = UnsubscribeTokens(SECRET)
    for kind, forged in _forgeries(tokens, uuid.uuid4()).items():
        assert tokens.read(forged) is None, kind


async def test_unsubscribe_round_trip(coach_api: CoachApi) -> None:
    tokens = UnsubscribeTokens(coach_api.harness.settings.secret_key)
    token = tokens.issue(coach_api.business, "jamie@example.com")
    expect = {"business_name": "Casey Coaching", "email": "jamie@example.com"}

    looked_up = await coach_api.unsubscribe("lookup", token)
    assert looked_up.status_code == 200, looked_up.text
    assert looked_up.json() == {**expect, "unsubscribed": False}
    for _ in range(2):  # idempotent
        done = await coach_api.unsubscribe("unsubscribe", token)
        assert done.status_code == 200 and done.json() == {**expect, "unsubscribed": True}
    assert (await coach_api.unsubscribe("lookup", token)).json()["unsubscribed"] is True
    for _ in range(2):
        undone = await coach_api.unsubscribe("undo", token)
        assert undone.status_code == 200 and undone.json() == {**expect, "unsubscribed": False}
    assert (await coach_api.unsubscribe("lookup", token)).json()["unsubscribed"] is False

    unknown_business = tokens.issue(uuid.uuid4(), "jamie@example.com")
    answer = await coach_api.unsubscribe("unsubscribe", unknown_business)
    assert answer.status_code == 200
    assert answer.json() == {
        "business_name": None,
        "email": "jamie@example.com",
        "unsubscribed": True,
    }


@pytest.mark.parametrize("action", ["lookup", "unsubscribe", "undo"])
async def test_a_bad_token_is_404(coach_api: CoachApi, action: str) -> None:
    tokens = UnsubscribeTokens(coach_api.harness.settings.secret_key)
    for kind, forged in _forgeries(tokens, coach_api.business).items():
        if kind in {"empty", "huge"}:
            continue  # refused by the schema instead (below)
        response = await coach_api.unsubscribe(action, forged)
        assert response.status_code == 404, kind
        assert response.headers["content-type"] == "application/problem+json"
    for body in ({}, {"token": ""}, {"token": "x" * 1001}, {"token": "x", "email": "a@b.c"}):
        path = {"lookup": "/unsubscribe/lookup", "unsubscribe": "/unsubscribe"}.get(
            action, "/unsubscribe/undo"
        )
        response = await coach_api.http.post(f"/api/v1/notifications{path}", json=body)
        assert response.status_code == 422, body
        assert "x" * 100 not in response.text, "the token is never echoed"
    async with coach_api.harness.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Unsubscribe))
    assert count == 0


async def test_unsubscribed_gets_no_campaign_but_still_transactional_email(
    coach_api: CoachApi,
) -> None:
    harness = coach_api.harness
    tokens = UnsubscribeTokens(harness.settings.secret_key)
    stays = events.client_added(coach_api.business, email="stays@example.com")
    leaves = events.client_added(coach_api.business, email="Leaves@Example.com")
    await apply(harness, stays, leaves)
    token = tokens.issue(coach_api.business, "leaves@example.com")
    assert (await coach_api.unsubscribe("unsubscribe", token)).status_code == 200

    draft = await coach_api.create()
    preview = (await coach_api.call("GET", f"/{draft['id']}/preview")).json()
    assert (preview["recipient_count"], preview["unsubscribed_count"]) == (1, 1)
    sent = await coach_api.send(draft["id"])
    assert sent["counts"]["recipients"] == 1 and sent["counts"]["unsubscribed"] == 1
    async with no_more_deliveries(harness.smtp):
        [received] = await harness.wait_for_delivery(1)
    assert received.rcpt_tos == ["stays@example.com"]

    # An invitation from the same business is transactional: it still arrives.
    await harness.publish(
        events.invitation_sent(business_id=coach_api.business, email="leaves@example.com")
    )
    received = await harness.wait_for_delivery(2)
    assert received[1].rcpt_tos == ["leaves@example.com"]
    assert "invited you" in received[1].message["Subject"]
    assert received[1].message["List-Unsubscribe"] is None

    # Undo: the next campaign reaches them again.
    assert (await coach_api.unsubscribe("undo", token)).json()["unsubscribed"] is False
    second = await coach_api.send((await coach_api.create(subject="Second"))["id"])
    assert second["counts"]["recipients"] == 2 and second["counts"]["unsubscribed"] == 0
    received = await harness.wait_for_delivery(4)
    assert sorted(r.rcpt_tos[0] for r in received[2:]) == [
        "leaves@example.com",
        "stays@example.com",
    ]


async def test_an_unsubscribe_is_for_one_business_only(coach_api: CoachApi) -> None:
    harness = coach_api.harness
    tokens = UnsubscribeTokens(harness.settings.secret_key)
    for business in (coach_api.business, coach_api.other_business):
        await apply(harness, events.client_added(business, email="both@example.com"))
    await coach_api.unsubscribe("unsubscribe", tokens.issue(coach_api.business, "both@example.com"))
    other_token = tokens.issue(coach_api.other_business, "both@example.com")
    assert (await coach_api.unsubscribe("lookup", other_token)).json() == {
        "business_name": "Other Studio",
        "email": "both@example.com",
        "unsubscribed": False,
    }

    mine = await coach_api.send((await coach_api.create())["id"])
    theirs = await coach_api.send(
        (await coach_api.create(business=coach_api.other_business))["id"],
        business=coach_api.other_business,
    )
    assert (mine["counts"]["recipients"], mine["counts"]["unsubscribed"]) == (0, 1)
    assert (theirs["counts"]["recipients"], theirs["counts"]["unsubscribed"]) == (1, 0)
    async with no_more_deliveries(harness.smtp):
        [received] = await harness.wait_for_delivery(1)
    assert received.rcpt_tos == ["both@example.com"]
    assert "you are a client of Other Studio" in parts(received.message)[0]
