"""Sequences: the coach's API, runs started by paid orders, steps run on time and once
(two runners, a runner that dies), stops on refund / subscription end, safe Markdown,
and the real worker delivering a step's email over SMTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kit.contracts.catalog import OfferingArchivedV1, OfferingPublishedV1
from kit.contracts.clients import GroupCreatedV1, GroupDeletedV1
from kit.contracts.payments import OrderPaidV1, OrderRefundedV1, SubscriptionEndedV1
from kit.db import create_engine, create_sessionmaker, utcnow
from notifications.audience.service import AudienceService
from notifications.emails.rendering import EmailRenderer
from notifications.main import build_app
from notifications.models import Email, SequenceRun, SequenceStepRun, outbox
from notifications.sequences import schemas
from notifications.sequences.rendering import render_step_email
from notifications.sequences.repository import SequenceRepository
from notifications.sequences.runner import SequenceRunner
from notifications.sequences.service import SequenceService, due_times
from tests.notifications.conftest import (
    Issuer,
    Notifications,
    SmtpServer,
    free_port,
    no_more_deliveries,
)
from tests.notifications.mail import html_text, parts

API = "/api/v1/notifications"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACTION = "notifications.sequence_action_requested.v1"


# -- helpers ---------------------------------------------------------------------------------


def order_paid(business: uuid.UUID, offering: uuid.UUID, **overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "business_id": business,
        "order_id": uuid.uuid4(),
        "offering_id": offering,
        "offering_version_id": uuid.uuid4(),
        "offering_name": "Spring Reset",
        "kind": "course",
        "billing": {"type": "one_time"},
        "buyer_email": "Robin.Client@example.com",
        "buyer_name": "Robin Client",
        "amount_minor": 9000,
        "currency": "USD",
        "paid_at": T0,
        "business_name": "Tide Coaching",
        **overrides,
    }
    return OrderPaidV1(**values)


def published(business: uuid.UUID, kind: str, name: str, **overrides: Any) -> OfferingPublishedV1:
    values: dict[str, Any] = {
        "business_id": business,
        "offering_id": uuid.uuid4(),
        "version_id": uuid.uuid4(),
        "version": 1,
        "name": name,
        "kind": kind,
        "visibility": "public",
        "price_minor": 0,
        "currency": "USD",
        "billing": {"type": "free"},
        "details": {"questions": ["What do you want?"]} if kind == "worksheet" else {},
        **overrides,
    }
    return OfferingPublishedV1(**values)


def email_step(subject: str, body: str, minutes: int = 0, delay_from: str = "previous") -> dict:
    return {
        "action": "email",
        "delay_minutes": minutes,
        "delay_from": delay_from,
        "email_subject": subject,
        "email_body_markdown": body,
    }


async def in_tx(harness: Notifications, work: Callable[[SequenceService], Awaitable[Any]]) -> Any:
    async with harness.sessionmaker() as session, session.begin():
        return await work(SequenceService(session))


async def create(harness: Notifications, business: uuid.UUID, **body: Any) -> schemas.SequenceOut:
    values = {"name": "Welcome", "stop_on_refund": False, **body}
    return await in_tx(harness, lambda s: s.create(business, schemas.SequenceIn(**values)))


async def catalog(harness: Notifications, *events: Any) -> None:
    for event in events:
        if isinstance(event, OfferingPublishedV1):
            await in_tx(harness, lambda s, e=event: s.offering_published(e))
        elif isinstance(event, OfferingArchivedV1):
            await in_tx(harness, lambda s, e=event: s.offering_archived(e))
        else:
            async with harness.sessionmaker() as session, session.begin():
                audience = AudienceService(session)
                if isinstance(event, GroupCreatedV1):
                    await audience.group_named(event)
                else:
                    await audience.group_deleted(event)


def runner(harness: Notifications, sessionmaker: Any = None, **kw: Any) -> SequenceRunner:
    return SequenceRunner(
        sessionmaker or harness.sessionmaker, harness.settings, EmailRenderer(), **kw
    )


async def step_runs(
    harness: Notifications, run_id: uuid.UUID | None = None
) -> list[SequenceStepRun]:
    async with harness.sessionmaker() as session:
        query = select(SequenceStepRun).order_by(SequenceStepRun.due_at, SequenceStepRun.position)
        if run_id is not None:
            query = query.where(SequenceStepRun.run_id == run_id)
        return list((await session.execute(query)).scalars())


async def runs(harness: Notifications) -> list[SequenceRun]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(SequenceRun))).scalars())


async def outbox_events(harness: Notifications) -> list[dict[str, Any]]:
    async with harness.sessionmaker() as session:
        rows = (await session.execute(select(outbox.c.name, outbox.c.payload))).all()
    return [{"name": n, **json.loads(p)} for n, p in rows]


async def email_rows(harness: Notifications) -> list[Email]:
    async with harness.sessionmaker() as session:
        query = select(Email).where(Email.template == "sequence_email").order_by(Email.subject)
        return list((await session.execute(query)).scalars())


@pytest.fixture
async def harness(make_notifications: Callable[..., Awaitable[Notifications]]) -> Notifications:
    """The database only: no worker, so only the test's runners run steps."""
    return await make_notifications(SmtpServer(free_port()))


# -- the coach's API ----------------------------------------------------------------------


@pytest.fixture
async def api(
    make_notifications: Callable[..., Awaitable[Notifications]],
    jwks_url: tuple[str, Issuer],
) -> AsyncIterator[tuple[httpx.AsyncClient, Issuer, Notifications]]:
    url, issuer = jwks_url
    harness = await make_notifications(SmtpServer(free_port()), jwks_url=url)
    app = build_app(harness.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://n") as http:
            yield http, issuer, harness


async def test_the_coach_builds_lists_edits_and_deletes_sequences(
    api: tuple[httpx.AsyncClient, Issuer, Notifications],
) -> None:
    http, issuer, harness = api
    business, other = uuid.uuid4(), uuid.uuid4()
    headers = issuer.headers({business: "owner"})
    url = f"{API}/businesses/{business}/sequences"
    worksheet = published(business, "worksheet", "Goals worksheet")
    group = GroupCreatedV1(business_id=business, group_id=uuid.uuid4(), group_name="Cohort A")
    await catalog(harness, worksheet, group)
    offering = uuid.uuid4()
    body = {
        "name": "Onboarding",
        "offering_id": str(offering),
        "stop_on_refund": True,
        "steps": [
            email_step("Welcome, {client_name}", "Glad you bought **{offering_name}**."),
            {
                "action": "assign_worksheet",
                "delay_minutes": 1440,
                "worksheet_offering_id": str(worksheet.offering_id),
            },
            {"action": "add_to_group", "delay_minutes": 0, "group_id": str(group.group_id)},
        ],
    }
    created = await http.post(url, json=body, headers=headers)
    assert created.status_code == 201, created.text
    sequence = created.json()
    assert [s["action"] for s in sequence["steps"]] == [
        "email",
        "assign_worksheet",
        "add_to_group",
    ]
    assert [s["target_name"] for s in sequence["steps"]] == [None, "Goals worksheet", "Cohort A"]
    assert sequence["runs"] == {"active": 0, "completed": 0, "stopped": 0}

    listed = (await http.get(url, headers=headers)).json()["items"]
    assert [s["id"] for s in listed] == [sequence["id"]]

    # One sequence per offering.
    again = await http.post(url, json={**body, "name": "Another"}, headers=headers)
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "offering_id"

    # Field errors name the step and the field.
    bad = {**body, "offering_id": None, "steps": [{"action": "email", "delay_minutes": 5}]}
    refused = await http.post(url, json=bad, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"].startswith("steps.0")
    negative = {**bad, "steps": [email_step("Hi", "Body", minutes=-1)]}
    assert (await http.post(url, json=negative, headers=headers)).status_code == 422
    unknown = {
        **bad,
        "steps": [
            {
                "action": "request_agreement",
                "delay_minutes": 0,
                "agreement_offering_id": str(worksheet.offering_id),
            }
        ],
    }
    wrong_kind = await http.post(url, json=unknown, headers=headers)
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["errors"][0]["field"] == "steps.0.agreement_offering_id"

    # Replacing keeps the ids of the steps sent back with theirs, reordered.
    first, _, third = sequence["steps"]
    edited = {
        **body,
        "steps": [
            {**body["steps"][2], "id": third["id"]},
            {**body["steps"][0], "id": first["id"], "delay_from": "start"},
        ],
    }
    put = await http.put(f"{url}/{sequence['id']}", json=edited, headers=headers)
    assert put.status_code == 200, put.text
    assert [s["id"] for s in put.json()["steps"]] == [third["id"], first["id"]]

    # Another business sees nothing.
    theirs = issuer.headers({other: "owner"})
    assert (
        await http.get(f"{API}/businesses/{other}/sequences/{sequence['id']}", headers=theirs)
    ).status_code == 404

    runs_page = await http.get(f"{url}/{sequence['id']}/runs", headers=headers)
    assert runs_page.status_code == 200 and runs_page.json()["total"] == 0

    deleted = await http.delete(f"{url}/{sequence['id']}", headers=headers)
    assert deleted.status_code == 204
    assert (await http.get(url, headers=headers)).json()["items"] == []
    # Unlinked: the offering can take a new sequence.
    assert (await http.post(url, json=body, headers=headers)).status_code == 201


# -- starting and running ---------------------------------------------------------------------


def test_due_times_count_from_the_start_or_the_previous_step() -> None:
    due = due_times(T0, [(10, "start"), (60, "previous"), (5, "start"), (0, "previous")])
    assert due == [
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=70),
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=5),
    ]


async def test_delays_are_honoured_with_a_controllable_clock(harness: Notifications) -> None:
    business, offering = uuid.uuid4(), uuid.uuid4()
    worksheet = published(business, "worksheet", "Goals worksheet")
    await catalog(harness, worksheet)
    await create(
        harness,
        business,
        offering_id=offering,
        steps=[
            email_step("Welcome {client_name}", "Hello", 0),
            email_step("An hour in", "How is {offering_name}?", 60),
            {
                "action": "assign_worksheet",
                "delay_minutes": 1440,
                "worksheet_offering_id": worksheet.offering_id,
            },
        ],
    )
    order = order_paid(business, offering)
    run_id = await in_tx(harness, lambda s: s.order_paid(order))
    assert run_id is not None
    # A second event for the same order starts nothing.
    again = order.model_copy(update={"id": uuid.uuid4()})
    assert await in_tx(harness, lambda s: s.order_paid(again)) is None
    assert [s.due_at for s in await step_runs(harness)] == [
        T0,
        T0 + timedelta(minutes=60),
        T0 + timedelta(minutes=60 + 1440),
    ]

    run = runner(harness)
    assert await run.run_due(T0 - timedelta(seconds=1)) == 0
    assert await run.run_due(T0) == 1
    [welcome] = await email_rows(harness)
    assert welcome.subject == "Welcome Robin Client"
    assert welcome.recipient == "robin.client@example.com"
    assert await run.run_due(T0 + timedelta(minutes=59)) == 0
    assert await run.run_due(T0 + timedelta(minutes=60)) == 1
    assert "How is Spring Reset?" in (await email_rows(harness))[0].text_body
    assert await run.run_due(T0 + timedelta(minutes=60 + 1439)) == 0
    assert await outbox_events(harness) == []
    assert await run.run_due(T0 + timedelta(minutes=60 + 1440)) == 1
    [event] = await outbox_events(harness)
    assert event["name"] == ACTION
    assert event["action"] == "assign_worksheet"
    assert event["offering_id"] == str(worksheet.offering_id)
    assert event["offering_version_id"] == str(worksheet.version_id)
    assert event["target_name"] == "Goals worksheet"
    assert event["details"] == {"questions": ["What do you want?"]}
    assert event["order_id"] == str(order.order_id)
    assert event["buyer_email"] == order.buyer_email
    assert event["run_id"] == str(run_id)

    assert [s.status for s in await step_runs(harness)] == ["done", "done", "done"]
    [finished] = await runs(harness)
    assert finished.status == "completed"
    assert await run.run_due(T0 + timedelta(days=30)) == 0


async def test_each_step_runs_once_with_two_runners_at_the_same_time(
    harness: Notifications,
) -> None:
    business, offering = uuid.uuid4(), uuid.uuid4()
    group = GroupCreatedV1(business_id=business, group_id=uuid.uuid4(), group_name="Cohort")
    await catalog(harness, group)
    await create(
        harness,
        business,
        offering_id=offering,
        steps=[
            email_step("Welcome", "Hi {client_name}"),
            {"action": "add_to_group", "delay_minutes": 0, "group_id": group.group_id},
        ],
    )
    orders = [order_paid(business, offering, buyer_email=f"b{n}@example.com") for n in range(30)]
    for order in orders:
        await in_tx(harness, lambda s, o=order: s.order_paid(o))
    # Two runners, each with its own engine (connections), like two workers.
    other_engine = create_engine(harness.settings.database_url)
    try:
        first = runner(harness, batch_size=7)
        second = runner(harness, create_sessionmaker(other_engine), batch_size=7)
        now = T0 + timedelta(minutes=1)
        taken = await asyncio.gather(first.run_due(now), second.run_due(now), first.run_due(now))
    finally:
        await other_engine.dispose()
    assert sum(taken) == 60, taken
    assert len(await email_rows(harness)) == 30
    assert len([e for e in await outbox_events(harness) if e["name"] == ACTION]) == 30
    assert {s.status for s in await step_runs(harness)} == {"done"}
    assert await runner(harness).run_due(now) == 0


class Crash(BaseException):
    """A worker killed mid-round: nothing after this point happens."""


class DyingRunner(SequenceRunner):
    async def _committing(self, session: Any, claimed: list[SequenceStepRun]) -> None:
        raise Crash


async def test_a_runner_that_dies_before_committing_leaves_the_step_for_later_once(
    harness: Notifications,
) -> None:
    business, offering = uuid.uuid4(), uuid.uuid4()
    await create(
        harness,
        business,
        offering_id=offering,
        steps=[email_step("First", "One"), email_step("Second", "Two", 60)],
    )
    await in_tx(harness, lambda s: s.order_paid(order_paid(business, offering)))

    dying = DyingRunner(harness.sessionmaker, harness.settings, EmailRenderer())
    with pytest.raises(Crash):
        await dying.run_due(T0)
    assert await email_rows(harness) == []
    assert [s.status for s in await step_runs(harness)] == ["pending", "pending"]

    # While a runner holds the claim (not committed), another skips the step.
    async with harness.sessionmaker() as holder, holder.begin():
        held = await SequenceRepository(holder).claim_due(T0, 10)
        assert len(held) == 1
        assert await runner(harness).run_due(T0) == 0
        await holder.rollback()  # that runner dies: its locks go with its connection

    assert await runner(harness).run_due(T0) == 1
    assert await runner(harness).run_due(T0) == 0
    # Between steps: the second one is not due yet; it runs once when it is.
    assert await runner(harness).run_due(T0 + timedelta(minutes=30)) == 0
    with pytest.raises(Crash):
        await dying.run_due(T0 + timedelta(minutes=60))
    assert [e.subject for e in await email_rows(harness)] == ["First"]
    assert await runner(harness).run_due(T0 + timedelta(minutes=61)) == 1
    assert await runner(harness).run_due(T0 + timedelta(minutes=62)) == 0
    assert [e.subject for e in await email_rows(harness)] == ["First", "Second"]


# -- stopping ---------------------------------------------------------------------------------


def refunded(order: OrderPaidV1, full: bool) -> OrderRefundedV1:
    return OrderRefundedV1(
        business_id=order.business_id,
        order_id=order.order_id,
        refund_id=uuid.uuid4(),
        amount_minor=1000,
        currency="USD",
        refunded_total_minor=9000 if full else 1000,
        full=full,
        revoke_access=False,
        buyer_email=order.buyer_email,
        offering_name=order.offering_name,
        refunded_at=T0,
    )


async def test_a_full_refund_stops_the_run_when_the_sequence_says_so(
    harness: Notifications,
) -> None:
    business = uuid.uuid4()
    stopping, keeping = uuid.uuid4(), uuid.uuid4()
    steps = [email_step("Now", "Now"), email_step("Later", "Later", 60)]
    await create(
        harness, business, name="Stops", offering_id=stopping, stop_on_refund=True, steps=steps
    )
    await create(
        harness, business, name="Keeps", offering_id=keeping, stop_on_refund=False, steps=steps
    )
    stop_order, keep_order = order_paid(business, stopping), order_paid(business, keeping)
    for order in (stop_order, keep_order):
        await in_tx(harness, lambda s, o=order: s.order_paid(o))
    assert await runner(harness).run_due(T0) == 2

    # A partial refund stops nothing.
    assert await in_tx(harness, lambda s: s.order_refunded(refunded(stop_order, full=False))) == []
    stopped = await in_tx(harness, lambda s: s.order_refunded(refunded(stop_order, full=True)))
    assert len(stopped) == 1
    assert await in_tx(harness, lambda s: s.order_refunded(refunded(keep_order, full=True))) == []

    assert await runner(harness).run_due(T0 + timedelta(hours=2)) == 1  # only "Keeps"
    by_run = {r.sequence_name: r for r in await runs(harness)}
    assert (by_run["Stops"].status, by_run["Stops"].stop_reason) == ("stopped", "refund")
    assert by_run["Keeps"].status == "completed"
    stop_steps = await step_runs(harness, by_run["Stops"].id)
    assert [s.status for s in stop_steps] == ["done", "stopped"]
    subjects = sorted(e.subject for e in await email_rows(harness))
    assert subjects == ["Later", "Now", "Now"]


async def test_a_refund_heard_before_the_order_starts_the_run_stopped(
    harness: Notifications,
) -> None:
    business, offering = uuid.uuid4(), uuid.uuid4()
    await create(
        harness, business, offering_id=offering, stop_on_refund=True, steps=[email_step("A", "B")]
    )
    order = order_paid(business, offering)
    await in_tx(harness, lambda s: s.order_refunded(refunded(order, full=True)))
    await in_tx(harness, lambda s: s.order_paid(order))
    [run] = await runs(harness)
    assert run.status == "stopped"
    assert await runner(harness).run_due(T0 + timedelta(days=1)) == 0


async def test_an_ended_subscription_stops_the_run_when_canceled_not_when_completed(
    harness: Notifications,
) -> None:
    business = uuid.uuid4()
    offering = uuid.uuid4()
    await create(
        harness,
        business,
        offering_id=offering,
        stop_on_subscription_end=True,
        steps=[email_step("Later", "Later", 60)],
    )
    completed_order, canceled_order = order_paid(business, offering), order_paid(business, offering)
    for order in (completed_order, canceled_order):
        await in_tx(harness, lambda s, o=order: s.order_paid(o))

    def ended(order: OrderPaidV1, reason: str) -> SubscriptionEndedV1:
        return SubscriptionEndedV1(
            business_id=business,
            subscription_id=uuid.uuid4(),
            order_id=order.order_id,
            offering_id=offering,
            offering_name="Plan",
            kind="course",
            buyer_email=order.buyer_email,
            buyer_name=order.buyer_name,
            reason=reason,
            revoke_access=reason != "completed",
            ended_at=T0,
        )

    assert (
        await in_tx(harness, lambda s: s.subscription_ended(ended(completed_order, "completed")))
        == []
    )
    assert (
        len(await in_tx(harness, lambda s: s.subscription_ended(ended(canceled_order, "canceled"))))
        == 1
    )
    assert await runner(harness).run_due(T0 + timedelta(hours=2)) == 1
    assert sorted(r.status for r in await runs(harness)) == ["completed", "stopped"]


async def test_a_step_whose_target_is_gone_is_skipped(harness: Notifications) -> None:
    business, offering = uuid.uuid4(), uuid.uuid4()
    worksheet = published(business, "worksheet", "Goals")
    group = GroupCreatedV1(business_id=business, group_id=uuid.uuid4(), group_name="Cohort")
    await catalog(harness, worksheet, group)
    await create(
        harness,
        business,
        offering_id=offering,
        steps=[
            {
                "action": "assign_worksheet",
                "delay_minutes": 0,
                "worksheet_offering_id": worksheet.offering_id,
            },
            {"action": "add_to_group", "delay_minutes": 0, "group_id": group.group_id},
        ],
    )
    await in_tx(harness, lambda s: s.order_paid(order_paid(business, offering)))
    await catalog(
        harness,
        OfferingArchivedV1(business_id=business, offering_id=worksheet.offering_id),
        GroupDeletedV1(business_id=business, group_id=group.group_id),
    )
    assert await runner(harness).run_due(T0) == 2
    steps = await step_runs(harness)
    assert [(s.status, s.last_error) for s in steps] == [
        ("skipped", "the offering was archived"),
        ("skipped", "the group was deleted"),
    ]
    assert await outbox_events(harness) == []


# -- the email: safe Markdown, delivered by the real worker -----------------------------------


def test_markdown_is_rendered_safely_and_names_are_text() -> None:
    rendered = render_step_email(
        EmailRenderer(),
        subject="Hi {client_name}\r\nBcc: x@example.com",
        body_markdown=(
            "# Welcome {client_name}\n\n<script>alert(1)</script>\n\n"
            "[bad](javascript:alert(1)) and [good](https://example.com) for **{offering_name}**"
        ),
        client_name="<img src=x onerror=alert(1)> *Eve*",
        offering_name="Yoga & <b>more</b>",
        business_name="Tide",
    )
    assert "\n" not in rendered.subject and rendered.subject.startswith("Hi <img")
    html = rendered.html_body
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt; *Eve*" in html
    assert "Yoga &amp; &lt;b&gt;more&lt;/b&gt;" in html
    assert 'href="https://example.com"' in html and "javascript:" not in html.split("[bad]")[0]
    assert 'href="javascript' not in html
    assert "<strong>" in html and "<h1" in html
    assert "Welcome <img src=x onerror=alert(1)> *Eve*" in rendered.text_body


async def test_two_workers_deliver_each_step_email_once_over_smtp(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> None:
    settings = {"sequence_poll_seconds": 0.05}
    first = await make_notifications(smtp_server, **settings)
    business, offering = uuid.uuid4(), uuid.uuid4()
    await create(
        first,
        business,
        offering_id=offering,
        steps=[
            email_step("Welcome {client_name}", "Hi **{client_name}** <script>x()</script>"),
            email_step("Day one", "Second step"),
        ],
    )
    await first.start_worker()
    second = await make_notifications(smtp_server, **settings)
    second.settings = first.settings
    await second.start_worker()
    order = order_paid(business, offering, paid_at=utcnow(), buyer_name="Ada <Lovelace>")
    await first.publish_all(order, order.model_copy(update={"id": uuid.uuid4()}))
    async with no_more_deliveries(smtp_server, settle=1.0):
        received = await first.wait_for_delivery(3)  # the receipt and the two steps
    subjects = [str(m.message["Subject"]) for m in received]
    assert {"Day one", "Welcome Ada <Lovelace>"} < set(subjects), subjects
    assert len(subjects) == 3  # and the receipt
    welcome = next(m for m in received if m.message["Subject"].startswith("Welcome"))
    text, html = parts(welcome.message)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Hi Ada <Lovelace>" in html_text(html)
    assert "Hi **Ada <Lovelace>**" in text
    async with first.sessionmaker() as session:
        count = (
            await session.execute(select(func.count()).select_from(SequenceStepRun))
        ).scalar_one()
    assert count == 2
