"""Agreements to sign and worksheets to fill, bought with an order: what is signed is the
text bought (its version and SHA-256), once, by its buyer only; answers are one per
question, saved again as edited; the coach sees both on the client's profile."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import func, select

from clients import models
from kit.contracts.payments import OrderPaidV1
from tests.clients.conftest import ClientsApi, Coach, make_coach
from tests.clients.test_purchases import Purchases, order_paid, profile, purchases, rows
from tests.clients.test_refunds import order_refunded

__all__ = ["purchases"]  # the fixture, imported for these tests

API = "/api/v1/clients"
BUYER = "buyer@example.com"
TEXT_V1 = "Sessions can be moved up to 24 hours ahead.\n\nNo refunds after the first session."
TEXT_V2 = "Sessions can be moved up to 48 hours ahead."
QUESTIONS = ["What do you want to change?", "What stopped you so far?"]


def agreement_order(coach: Coach, **overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "buyer_email": BUYER,
        "kind": "agreement",
        "offering_name": "Coaching agreement",
        "details": {"agreement_text": TEXT_V1},
        "amount_minor": 0,
        "billing": {"type": "free"},
        **overrides,
    }
    return order_paid(coach, **values)


def worksheet_order(coach: Coach, **overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "buyer_email": BUYER,
        "kind": "worksheet",
        "offering_name": "Intake worksheet",
        "details": {"questions": QUESTIONS},
        **overrides,
    }
    return order_paid(coach, **values)


async def entitlement_id(api: ClientsApi, order: OrderPaidV1) -> str:
    [row] = await rows(
        api, models.Entitlement.__table__, models.Entitlement.order_id == order.order_id
    )
    return str(row.id)


async def counts(api: ClientsApi) -> dict[str, int]:
    found = {}
    async with api.engine.connect() as conn:
        for table in (models.AgreementSignature, models.WorksheetAnswers, models.TimelineEntry):
            query = select(func.count()).select_from(table)
            found[table.__tablename__] = int((await conn.execute(query)).scalar_one())
    return found


def timeline_kinds(client: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e["summary"]) for e in client["timeline"]]


async def test_the_buyer_signs_the_text_they_bought_once_even_after_the_coach_edited_it(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    bought = agreement_order(coach)
    # The coach edits the offering later (a new version); a later buyer gets the new text.
    later = agreement_order(
        coach,
        offering_id=bought.offering_id,
        offering_version_id=uuid.uuid4(),
        details={"agreement_text": TEXT_V2},
        buyer_email="later@example.com",
    )
    await purchases.deliver(bought, later)
    [stored] = await rows(
        api, models.Entitlement.__table__, models.Entitlement.order_id == bought.order_id
    )
    assert stored.details == {"agreement_text": TEXT_V1}
    agreement_id = str(stored.id)
    url = f"{API}/me/entitlements/{agreement_id}/agreement"

    shown = await api.http.get(url, headers=buyer.headers)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["text"], body["signature"], body["can_sign"]) == (TEXT_V1, None, True)
    assert body["offering_version_id"] == str(bought.offering_version_id)
    assert body["text_sha256"] == hashlib.sha256(TEXT_V1.encode()).hexdigest()
    assert body["business_name"] == "Casey Coaching"

    signed = await api.http.post(
        f"{url}/signature", json={"name": "  Robin Buyer "}, headers=buyer.headers
    )
    assert signed.status_code == 201, signed.text
    signature = signed.json()["signature"]
    assert signature["signed_name"] == "Robin Buyer"
    assert signature["offering_version_id"] == str(bought.offering_version_id)
    assert signature["text_sha256"] == hashlib.sha256(TEXT_V1.encode()).hexdigest()
    assert signed.json()["can_sign"] is False and signed.json()["signed_text"] == TEXT_V1
    [row] = await rows(api, models.AgreementSignature.__table__)
    assert (row.text, row.signed_name, str(row.entitlement_id)) == (
        TEXT_V1,
        "Robin Buyer",
        agreement_id,
    )
    assert str(row.account_id) == buyer.account_id
    assert str(row.business_id) == coach.business_id

    # Once only: a second signature (another name, too) is refused and changes nothing.
    before = await counts(api)
    again = await api.http.post(
        f"{url}/signature", json={"name": "Someone Else"}, headers=buyer.headers
    )
    assert again.status_code == 409, again.text
    assert again.json()["reason"] == "already_signed"
    assert await counts(api) == before
    assert (await api.http.get(url, headers=buyer.headers)).json()["signature"] == signature

    # The coach sees it on the client's profile, once, and reads what was signed.
    client = await profile(api, coach, BUYER)
    assert (
        timeline_kinds(client).count(("agreement_signed", "Signed agreement Coaching agreement"))
        == 1
    )
    forms = await api.http.get(coach.url(f"/clients/{client['id']}/forms"), headers=coach.headers)
    assert forms.status_code == 200, forms.text
    [agreement] = forms.json()["agreements"]
    assert agreement["signature"]["signed_name"] == "Robin Buyer"
    assert agreement["signed_text"] == TEXT_V1
    assert forms.json()["worksheets"] == []

    mine = (await api.http.get(f"{API}/me/forms", headers=buyer.headers)).json()["items"]
    assert [(f["entitlement_id"], f["kind"], f["signed_name"]) for f in mine] == [
        (agreement_id, "agreement", "Robin Buyer")
    ]


async def test_only_the_buyer_can_see_or_sign_and_a_blank_name_is_refused(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    other_coach = await make_coach(api, business="Other Studio")
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    stranger = await make_coach(api, email="stranger@example.com", business="Stranger Studio")
    bought = agreement_order(coach)
    sheet = worksheet_order(coach)
    await purchases.deliver(bought, sheet)
    agreement_url = f"{API}/me/entitlements/{await entitlement_id(api, bought)}/agreement"
    worksheet_url = f"{API}/me/entitlements/{await entitlement_id(api, sheet)}/worksheet"
    before = await counts(api)

    for who in (stranger, coach, other_coach):
        assert (await api.http.get(agreement_url, headers=who.headers)).status_code == 404
        signing = await api.http.post(
            f"{agreement_url}/signature", json={"name": "Not Them"}, headers=who.headers
        )
        assert signing.status_code == 404
        assert (await api.http.get(worksheet_url, headers=who.headers)).status_code == 404
        answering = await api.http.put(
            f"{worksheet_url}/answers", json={"answers": ["a", "b"]}, headers=who.headers
        )
        assert answering.status_code == 404
    assert (await api.http.get(agreement_url)).status_code == 401
    # An agreement is not a worksheet, and an unknown id is nothing.
    wrong = f"{API}/me/entitlements/{await entitlement_id(api, bought)}/worksheet"
    assert (await api.http.get(wrong, headers=buyer.headers)).status_code == 404
    unknown = f"{API}/me/entitlements/{uuid.uuid4()}/agreement"
    assert (await api.http.get(unknown, headers=buyer.headers)).status_code == 404
    # Another business's coach cannot read this business's client either.
    client = await profile(api, coach, BUYER)
    other = await api.http.get(
        other_coach.url(f"/clients/{client['id']}/forms"), headers=other_coach.headers
    )
    assert other.status_code == 404

    for name in ("", "   ", "x" * 201, "Robin\nBuyer"):
        blank = await api.http.post(
            f"{agreement_url}/signature", json={"name": name}, headers=buyer.headers
        )
        assert blank.status_code == 422, blank.text
        assert [e["field"] for e in blank.json()["errors"]] == ["name"]
    extra = await api.http.post(
        f"{agreement_url}/signature",
        json={"name": "Robin", "text": "I agree to nothing"},
        headers=buyer.headers,
    )
    assert extra.status_code == 422
    assert await counts(api) == before


async def test_a_refunded_or_ended_agreement_or_worksheet_cannot_be_signed_or_answered(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    bought = agreement_order(coach, amount_minor=5000, billing={"type": "one_time"})
    sheet = worksheet_order(coach)
    await purchases.deliver(bought, sheet)
    await purchases.deliver(order_refunded(bought), order_refunded(sheet))
    agreement_url = f"{API}/me/entitlements/{await entitlement_id(api, bought)}/agreement"
    worksheet_url = f"{API}/me/entitlements/{await entitlement_id(api, sheet)}/worksheet"
    before = await counts(api)

    shown = (await api.http.get(agreement_url, headers=buyer.headers)).json()
    assert (shown["status"], shown["can_sign"]) == ("revoked", False)
    refused = await api.http.post(
        f"{agreement_url}/signature", json={"name": "Robin Buyer"}, headers=buyer.headers
    )
    assert refused.status_code == 409 and refused.json()["reason"] == "access_ended"
    assert (await api.http.get(worksheet_url, headers=buyer.headers)).json()["can_edit"] is False
    answering = await api.http.put(
        f"{worksheet_url}/answers", json={"answers": ["a", "b"]}, headers=buyer.headers
    )
    assert answering.status_code == 409
    assert await counts(api) == before


async def test_an_agreement_bought_before_texts_were_kept_cannot_be_signed(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    bought = agreement_order(coach, details={})
    await purchases.deliver(bought)
    url = f"{API}/me/entitlements/{await entitlement_id(api, bought)}/agreement"
    shown = (await api.http.get(url, headers=buyer.headers)).json()
    assert (shown["text"], shown["can_sign"]) == (None, False)
    refused = await api.http.post(f"{url}/signature", json={"name": "Robin"}, headers=buyer.headers)
    assert refused.status_code == 409


async def test_worksheet_answers_are_one_per_question_saved_and_edited(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    sheet = worksheet_order(coach)
    await purchases.deliver(sheet)
    url = f"{API}/me/entitlements/{await entitlement_id(api, sheet)}/worksheet"

    empty = (await api.http.get(url, headers=buyer.headers)).json()
    assert empty["questions"] == QUESTIONS
    assert empty["answers"] == [{"question": q, "answer": ""} for q in QUESTIONS]
    assert (empty["submitted_at"], empty["can_edit"]) == (None, True)

    before = await counts(api)
    bad: list[tuple[Any, str]] = [
        ({"answers": ["only one"]}, "answers"),
        ({"answers": ["a", "b", "c"]}, "answers"),
        ({"answers": ["", "  "]}, "answers"),
        ({"answers": []}, "answers"),
        ({"answers": ["ok", "x" * 5001]}, "answers.1"),
        ({"answers": ["ok", "bell\x07"]}, "answers.1"),
        ({"answers": ["ok", 3]}, "answers.1"),
        ({"answers": "ok"}, "answers"),
        ({}, "answers"),
        ({"answers": ["a", "b"], "submitted_at": "2020-01-01"}, "submitted_at"),
    ]
    for body, field in bad:
        answer = await api.http.put(f"{url}/answers", json=body, headers=buyer.headers)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in answer.json()["errors"]] == [field], body
    assert await counts(api) == before

    saved = await api.http.put(
        f"{url}/answers",
        json={"answers": ["More energy.\r\nLess stress.", "x" * 5000]},
        headers=buyer.headers,
    )
    assert saved.status_code == 200, saved.text
    first = saved.json()
    assert first["answers"] == [
        {"question": QUESTIONS[0], "answer": "More energy.\nLess stress."},
        {"question": QUESTIONS[1], "answer": "x" * 5000},
    ]
    assert first["submitted_at"] is not None

    edited = await api.http.put(
        f"{url}/answers", json={"answers": ["More energy.", ""]}, headers=buyer.headers
    )
    assert edited.status_code == 200, edited.text
    assert [a["answer"] for a in edited.json()["answers"]] == ["More energy.", ""]
    assert edited.json()["submitted_at"] == first["submitted_at"]
    assert edited.json()["updated_at"] >= first["updated_at"]
    assert len(await rows(api, models.WorksheetAnswers.__table__)) == 1

    client = await profile(api, coach, BUYER)
    assert (
        timeline_kinds(client).count(
            ("worksheet_submitted", "Submitted worksheet Intake worksheet")
        )
        == 1
    )
    forms = (
        await api.http.get(coach.url(f"/clients/{client['id']}/forms"), headers=coach.headers)
    ).json()
    [worksheet] = forms["worksheets"]
    assert worksheet["answers"][0] == {"question": QUESTIONS[0], "answer": "More energy."}
    assert worksheet["submitted_at"] == first["submitted_at"]


async def test_a_worksheet_without_questions_has_one_free_text_answer(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email=BUYER, business="Buyer Studio")
    sheet = worksheet_order(coach, details={})
    await purchases.deliver(sheet)
    url = f"{API}/me/entitlements/{await entitlement_id(api, sheet)}/worksheet"
    assert (await api.http.get(url, headers=buyer.headers)).json()["questions"] == ["Your answers"]
    saved = await api.http.put(
        f"{url}/answers", json={"answers": ["All of it."]}, headers=buyer.headers
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["answers"] == [{"question": "Your answers", "answer": "All of it."}]


async def test_only_agreements_and_worksheets_keep_their_details(purchases: Purchases) -> None:
    api = purchases.api
    coach = await make_coach(api)
    package = order_paid(coach, kind="package", details={"includes": ["Call"]})
    sheet = worksheet_order(coach)
    await purchases.deliver(package, sheet)
    by_kind = {e.kind: e.details for e in await rows(api, models.Entitlement.__table__)}
    assert by_kind == {"package": None, "worksheet": {"questions": QUESTIONS}}
