"""Sequences: what a coach builds, how an order starts a run and what stops one.

Nothing here commits: the API's request or the consumer's event transaction does.

- A sequence is linked to at most one offering (``sequences.offering_id`` is unique
  among live sequences; deleting a sequence unlinks it). Its steps are replaced as a
  whole on each save; a step sent back with its ``id`` keeps it.
- ``payments.order_paid.v1`` for a linked offering starts one run per (sequence, order)
  (unique, so a second event for the order starts nothing). The run copies each step
  with its due time: ``delay_from`` "start" counts from the run's start (the order's
  ``paid_at``), "previous" from the previous step's due time.
- A full refund (``stop_on_refund``) or a subscription that ended because it was
  canceled or its payments failed (``stop_on_subscription_end``) stops the order's
  active runs: their pending steps become ``stopped``. A stop heard before the order's
  run started is remembered, so a late order_paid starts the run stopped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.catalog import OfferingArchivedV1, OfferingPublishedV1
from kit.contracts.payments import OrderPaidV1, OrderRefundedV1, SubscriptionEndedV1
from kit.db import utcnow
from kit.errors import InvalidInput, NotFound
from kit.logging import get_logger
from notifications.emails.rendering import one_line
from notifications.models import (
    ACTION_AGREEMENT,
    ACTION_EMAIL,
    ACTION_GROUP,
    ACTION_WORKSHEET,
    RUN_ACTIVE,
    SEQ_START,
    STEP_PENDING,
    STOP_REFUND,
    STOP_SUBSCRIPTION_END,
    KnownOffering,
    Sequence,
    SequenceStep,
    SequenceStepRun,
)
from notifications.sequences import schemas
from notifications.sequences.repository import SequenceRepository

log = get_logger(__name__)

# Fixed forever: step-run ids (and so email and event ids) derive from it.
STEP_RUN_NAMESPACE = uuid.UUID("0b7f4b1e-52d4-4a3c-9a8e-6d1f0c2e9b57")
# Target offering kinds of the two offering actions.
TARGET_KINDS = {ACTION_WORKSHEET: "worksheet", ACTION_AGREEMENT: "agreement"}
ENDING_REASONS = ("canceled", "payment_failed")


def step_run_id(run_id: uuid.UUID, step_id: uuid.UUID) -> uuid.UUID:
    """The id of a run's step: its email's event id and its action event's id."""
    return uuid.uuid5(STEP_RUN_NAMESPACE, f"{run_id}/{step_id}")


def run_id_for(sequence_id: uuid.UUID, order_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(STEP_RUN_NAMESPACE, f"run/{sequence_id}/{order_id}")


def due_times(started_at: datetime, steps: list[tuple[int, str]]) -> list[datetime]:
    """Each step's due time from (delay_minutes, delay_from) in order: "start" counts
    from ``started_at``, "previous" from the previous step's due time (the first step's
    previous is the start)."""
    due: list[datetime] = []
    previous = started_at
    for minutes, delay_from in steps:
        base = started_at if delay_from == SEQ_START else previous
        previous = base + timedelta(minutes=minutes)
        due.append(previous)
    return due


def step_label(action: str, subject: str | None, target_name: str | None) -> str:
    if action == ACTION_EMAIL:
        return f"Email: {subject or ''}".strip()
    what = {
        ACTION_WORKSHEET: "Assign worksheet",
        ACTION_AGREEMENT: "Request agreement",
        ACTION_GROUP: "Add to group",
    }.get(action, action)
    return f"{what}: {target_name}" if target_name else what


@dataclass
class SequenceService:
    session: AsyncSession
    repo: SequenceRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = SequenceRepository(self.session)

    # -- the coach's API --------------------------------------------------------------------

    async def listing(self, business_id: uuid.UUID) -> schemas.SequenceList:
        sequences = await self.repo.sequences(business_id)
        return schemas.SequenceList(items=await self._out(business_id, sequences))

    async def get(self, business_id: uuid.UUID, sequence_id: uuid.UUID) -> schemas.SequenceOut:
        sequence = await self._sequence(business_id, sequence_id)
        [out] = await self._out(business_id, [sequence])
        return out

    async def create(self, business_id: uuid.UUID, body: schemas.SequenceIn) -> schemas.SequenceOut:
        await self._check_targets(business_id, body)
        now = utcnow()
        sequence = Sequence(
            id=uuid.uuid4(),
            business_id=business_id,
            name=body.name,
            offering_id=body.offering_id,
            stop_on_refund=body.stop_on_refund,
            stop_on_subscription_end=body.stop_on_subscription_end,
            created_at=now,
            updated_at=now,
        )
        await self._link(sequence, body.offering_id)
        self.repo.add(sequence)
        await self._flush_linked(body.offering_id)
        await self.repo.replace_steps(sequence.id, self._step_rows(sequence.id, body, set()))
        log.info("sequence_created", sequence_id=str(sequence.id), business_id=str(business_id))
        return await self.get(business_id, sequence.id)

    async def update(
        self, business_id: uuid.UUID, sequence_id: uuid.UUID, body: schemas.SequenceIn
    ) -> schemas.SequenceOut:
        """Replace the sequence and its steps. Runs already started keep the steps they
        started with (their copies); runs that start from now on get these."""
        sequence = await self._sequence(business_id, sequence_id, lock=True)
        await self._check_targets(business_id, body)
        if body.offering_id != sequence.offering_id:
            await self._link(sequence, body.offering_id)
        sequence.name = body.name
        sequence.offering_id = body.offering_id
        sequence.stop_on_refund = body.stop_on_refund
        sequence.stop_on_subscription_end = body.stop_on_subscription_end
        sequence.updated_at = utcnow()
        await self._flush_linked(body.offering_id)
        existing = {s.id for s in (await self.repo.steps([sequence.id]))[sequence.id]}
        await self.repo.replace_steps(sequence.id, self._step_rows(sequence.id, body, existing))
        return await self.get(business_id, sequence.id)

    async def delete(self, business_id: uuid.UUID, sequence_id: uuid.UUID) -> None:
        """Hide and unlink the sequence and stop its active runs (their history stays)."""
        sequence = await self._sequence(business_id, sequence_id, lock=True)
        now = utcnow()
        sequence.deleted_at = now
        sequence.offering_id = None
        await self.repo.flush()
        runs = await self.repo.active_runs_of(sequence.id)
        if runs:
            await self.repo.stop_run_ids(runs, "sequence_deleted", now)

    async def runs(
        self, business_id: uuid.UUID, sequence_id: uuid.UUID, limit: int, offset: int
    ) -> schemas.RunPage:
        sequence = await self._sequence(business_id, sequence_id)
        runs, total = await self.repo.runs_page(sequence.id, limit, offset)
        steps = await self.repo.step_runs(r.id for r in runs)
        all_steps = [s for group in steps.values() for s in group]
        names = await self._target_names(business_id, all_steps)
        now = utcnow()
        items = [
            schemas.RunOut(
                id=run.id,
                order_id=run.order_id,
                client_name=run.buyer_name,
                client_email=run.buyer_email,
                client_account_id=run.buyer_account_id,
                started_at=run.started_at,
                status=run.status,
                stopped_at=run.stopped_at,
                stop_reason=run.stop_reason,
                steps=[
                    schemas.StepRunOut(
                        step_id=s.step_id,
                        position=s.position,
                        action=s.action,
                        label=step_label(s.action, s.email_subject, _name_of(s, names)),
                        due_at=s.due_at,
                        status=s.status,
                        overdue=s.status == STEP_PENDING and s.due_at <= now,
                        done_at=s.done_at,
                        attempts=s.attempts,
                        last_error=s.last_error,
                    )
                    for s in steps[run.id]
                ],
            )
            for run in runs
        ]
        return schemas.RunPage(items=items, total=total, limit=limit, offset=offset)

    async def _sequence(
        self, business_id: uuid.UUID, sequence_id: uuid.UUID, lock: bool = False
    ) -> Sequence:
        sequence = await self.repo.sequence(business_id, sequence_id, lock=lock)
        if sequence is None:
            raise NotFound("no such sequence")
        return sequence

    async def _link(self, sequence: Sequence, offering_id: uuid.UUID | None) -> None:
        if offering_id is None:
            return
        other = await self.repo.sequence_for_offering(offering_id)
        if other is not None and other.id != sequence.id:
            raise _offering_taken()
        known = (await self.repo.offerings([offering_id])).get(offering_id)
        if known is not None and known.business_id != sequence.business_id:
            raise InvalidInput.for_field("offering_id", "not an offering of this business")

    async def _flush_linked(self, offering_id: uuid.UUID | None) -> None:
        # Two coaches linking one offering at the same moment: the unique column decides.
        try:
            async with self.session.begin_nested():
                await self.repo.flush()
        except IntegrityError as exc:
            if offering_id is None:
                raise
            raise _offering_taken() from exc

    async def _check_targets(self, business_id: uuid.UUID, body: schemas.SequenceIn) -> None:
        """Worksheet and agreement steps name a published offering of that kind of this
        business; group steps a group of this business (as this service has heard)."""
        offerings = await self.repo.offerings(
            s.target_offering_id for s in body.steps if s.target_offering_id
        )
        groups = await self.repo.groups(business_id, (s.group_id for s in body.steps if s.group_id))
        for index, step in enumerate(body.steps):
            if step.target_offering_id is not None:
                name = TARGETS_FIELD[step.action]
                known = offerings.get(step.target_offering_id)
                kind = TARGET_KINDS[step.action]
                if (
                    known is None
                    or known.business_id != business_id
                    or known.kind != kind
                    or known.archived
                ):
                    raise InvalidInput.for_field(
                        f"steps.{index}.{name}", f"not a published {kind} of this business"
                    )
            if step.group_id is not None:
                group = groups.get(step.group_id)
                if group is None or group.deleted:
                    raise InvalidInput.for_field(
                        f"steps.{index}.group_id", "not a group of this business"
                    )

    @staticmethod
    def _step_rows(
        sequence_id: uuid.UUID, body: schemas.SequenceIn, existing: set[uuid.UUID]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        used: set[uuid.UUID] = set()
        for position, step in enumerate(body.steps, start=1):
            step_id = step.id if step.id in existing and step.id not in used else uuid.uuid4()
            used.add(step_id)
            rows.append(
                {
                    "id": step_id,
                    "sequence_id": sequence_id,
                    "position": position,
                    "delay_minutes": step.delay_minutes,
                    "delay_from": step.delay_from,
                    "action": step.action,
                    "email_subject": step.email_subject,
                    "email_body_markdown": step.email_body_markdown,
                    "target_offering_id": step.target_offering_id,
                    "group_id": step.group_id,
                }
            )
        return rows

    async def _out(
        self, business_id: uuid.UUID, sequences: list[Sequence]
    ) -> list[schemas.SequenceOut]:
        steps = await self.repo.steps(s.id for s in sequences)
        counts = await self.repo.run_counts(s.id for s in sequences)
        every_step = [s for group in steps.values() for s in group]
        names = await self._target_names(business_id, every_step)
        linked = await self.repo.offerings(s.offering_id for s in sequences if s.offering_id)
        return [
            schemas.SequenceOut(
                id=s.id,
                name=s.name,
                offering_id=s.offering_id,
                offering_name=linked[s.offering_id].name if s.offering_id in linked else None,
                stop_on_refund=s.stop_on_refund,
                stop_on_subscription_end=s.stop_on_subscription_end,
                steps=[_step_out(step, names) for step in steps[s.id]],
                runs=schemas.RunCounts(**counts[s.id]),
                created_at=s.created_at,
                updated_at=s.updated_at,
            )
            for s in sequences
        ]

    async def _target_names(
        self, business_id: uuid.UUID, steps: Sequence_[SequenceStep | SequenceStepRun]
    ) -> dict[uuid.UUID, str]:
        offerings = await self.repo.offerings(
            s.target_offering_id for s in steps if s.target_offering_id
        )
        groups = await self.repo.groups(business_id, (s.group_id for s in steps if s.group_id))
        names = {i: o.name for i, o in offerings.items() if o.name}
        names.update({i: g.name for i, g in groups.items() if g.name})
        return names

    # -- events: starting and stopping runs -----------------------------------------------

    async def order_paid(self, event: OrderPaidV1) -> uuid.UUID | None:
        """Start the run of the sequence linked to the order's offering (once per order).
        The run's id, or None when no sequence is linked or it was started already."""
        sequence = await self.repo.sequence_for_offering(event.offering_id)
        if sequence is None or sequence.business_id != event.business_id:
            return None
        steps = (await self.repo.steps([sequence.id]))[sequence.id]
        run_id = run_id_for(sequence.id, event.order_id)
        started_at = event.paid_at
        inserted = await self.repo.insert_run(
            {
                "id": run_id,
                "business_id": sequence.business_id,
                "sequence_id": sequence.id,
                "sequence_name": sequence.name,
                "order_id": event.order_id,
                "offering_id": event.offering_id,
                "offering_name": one_line(event.offering_name) or "your purchase",
                "buyer_account_id": event.buyer_account_id,
                "buyer_email": event.buyer_email[:320],
                "buyer_name": one_line(event.buyer_name),
                "business_name": one_line(event.business_name) if event.business_name else None,
                "started_at": started_at,
                "status": RUN_ACTIVE,
                "created_at": utcnow(),
            }
        )
        if not inserted:
            log.info("sequence_run_exists", order_id=str(event.order_id))
            return None
        due = due_times(started_at, [(s.delay_minutes, s.delay_from) for s in steps])
        await self.repo.insert_step_runs(
            [
                {
                    "id": step_run_id(run_id, step.id),
                    "run_id": run_id,
                    "step_id": step.id,
                    "business_id": sequence.business_id,
                    "position": step.position,
                    "action": step.action,
                    "delay_minutes": step.delay_minutes,
                    "delay_from": step.delay_from,
                    "email_subject": step.email_subject,
                    "email_body_markdown": step.email_body_markdown,
                    "target_offering_id": step.target_offering_id,
                    "group_id": step.group_id,
                    "due_at": due_at,
                    "status": STEP_PENDING,
                    "attempts": 0,
                }
                for step, due_at in zip(steps, due, strict=True)
            ]
        )
        log.info(
            "sequence_run_started",
            run_id=str(run_id),
            sequence_id=str(sequence.id),
            order_id=str(event.order_id),
        )
        # A refund or an ended subscription heard before this order_paid.
        stops = await self.repo.stops_of(event.order_id)
        if STOP_REFUND in stops and sequence.stop_on_refund:
            await self.repo.stop_run_ids([run_id], STOP_REFUND, utcnow())
        elif STOP_SUBSCRIPTION_END in stops and sequence.stop_on_subscription_end:
            await self.repo.stop_run_ids([run_id], STOP_SUBSCRIPTION_END, utcnow())
        elif not steps:
            await self.repo.complete_finished_runs([run_id])
        return run_id

    async def order_refunded(self, event: OrderRefundedV1) -> list[uuid.UUID]:
        """A full refund stops the order's runs whose sequence says so."""
        if not event.full:
            return []
        return await self._stop(event.order_id, STOP_REFUND, event.business_id, event.occurred_at)

    async def subscription_ended(self, event: SubscriptionEndedV1) -> list[uuid.UUID]:
        """Canceled or given up after failed payments (not a completed plan)."""
        if event.reason not in ENDING_REASONS:
            return []
        return await self._stop(
            event.order_id, STOP_SUBSCRIPTION_END, event.business_id, event.occurred_at
        )

    async def _stop(
        self, order_id: uuid.UUID, cause: str, business_id: uuid.UUID | None, at: datetime
    ) -> list[uuid.UUID]:
        await self.repo.remember_stop(order_id, cause, business_id, at)
        flag = (
            Sequence.stop_on_refund if cause == STOP_REFUND else Sequence.stop_on_subscription_end
        )
        stopped = await self.repo.stop_runs(order_id, flag, cause, utcnow())
        if stopped:
            log.info(
                "sequence_runs_stopped", order_id=str(order_id), cause=cause, runs=len(stopped)
            )
        return stopped

    # -- events: the offerings read model --------------------------------------------------

    async def offering_published(self, event: OfferingPublishedV1) -> None:
        if event.business_id is None:
            return
        await self.repo.offering_published(
            offering_id=event.offering_id,
            business_id=event.business_id,
            version_id=event.version_id,
            version=event.version,
            name=one_line(event.offering_name),
            kind=event.kind[:20],
            details=dict(event.details),
        )

    async def offering_archived(self, event: OfferingArchivedV1) -> None:
        if event.business_id is None:
            return
        await self.repo.offering_archived(
            offering_id=event.offering_id,
            business_id=event.business_id,
            occurred_at=event.occurred_at,
        )


TARGETS_FIELD = {
    ACTION_WORKSHEET: "worksheet_offering_id",
    ACTION_AGREEMENT: "agreement_offering_id",
}


def _offering_taken() -> InvalidInput:
    return InvalidInput.for_field("offering_id", "another sequence is linked to this offering")


def _name_of(step: SequenceStep | SequenceStepRun, names: dict[uuid.UUID, str]) -> str | None:
    target = _target(step)
    return names.get(target) if target is not None else None


def _target(step: SequenceStep | SequenceStepRun) -> uuid.UUID | None:
    return step.target_offering_id or step.group_id


def _step_out(step: SequenceStep, names: dict[uuid.UUID, str]) -> schemas.StepOut:
    target = _target(step)
    return schemas.StepOut(
        id=step.id,
        position=step.position,
        delay_minutes=step.delay_minutes,
        delay_from=step.delay_from,
        action=step.action,
        email_subject=step.email_subject,
        email_body_markdown=step.email_body_markdown,
        worksheet_offering_id=step.target_offering_id if step.action == ACTION_WORKSHEET else None,
        agreement_offering_id=step.target_offering_id if step.action == ACTION_AGREEMENT else None,
        group_id=step.group_id,
        target_name=names.get(target) if target else None,
    )


def offering_details(offering: KnownOffering) -> dict[str, Any]:
    try:
        details = json.loads(offering.details or "{}")
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}
