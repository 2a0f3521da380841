"""Running due steps: each step of each run exactly once.

The worker's periodic job calls :meth:`SequenceRunner.run_due` with the current time
(tests pass their own clock). A round is one short transaction that claims up to
``batch_size`` pending step-runs due by ``now`` with ``SELECT … FOR UPDATE SKIP
LOCKED`` (another runner skips them) and, for each, writes its effect and its new
status together:

- ``email``: the email row, queued for the sender (its id derives from the step-run,
  so it can only ever be one row);
- ``assign_worksheet`` / ``request_agreement`` / ``add_to_group``: a
  ``notifications.sequence_action_requested.v1`` row in the outbox (its event id is
  the step-run's id; the clients service applies it once per (run, step)).

A runner that dies before its commit leaves nothing behind: the rows' locks go with
its connection and the steps are still pending, for the next round of any runner. A
step that fails (a target offering not heard of yet, say) is retried with backoff in
its own savepoint, without holding up the others, and is ``skipped`` after
``max_attempts`` (or at once when its target was archived or deleted).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.contracts.notifications import SequenceActionRequestedV1
from kit.db import utcnow
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.validation import normalize_email
from notifications import models
from notifications.config import NotificationsSettings
from notifications.emails.rendering import EmailRenderer, one_line
from notifications.emails.repository import EmailRepository
from notifications.emails.service import email_id
from notifications.models import (
    ACTION_EMAIL,
    ACTION_GROUP,
    FAILED,
    QUEUED,
    RUN_ACTIVE,
    STEP_DONE,
    STEP_SKIPPED,
    STEP_STOPPED,
    AudienceGroup,
    KnownOffering,
    SequenceRun,
    SequenceStepRun,
)
from notifications.sequences.rendering import TEMPLATE, render_step_email
from notifications.sequences.repository import SequenceRepository
from notifications.sequences.service import TARGET_KINDS, offering_details

log = get_logger(__name__)

# The emails of a sequence are "caused" by their step-run: event_id is its id.
SEQUENCE_EVENT_NAME = "notifications.sequence_step"
MAX_BACKOFF = timedelta(hours=1)


class NotYet(RuntimeError):
    """The step cannot run now (its target is not known yet): retried later."""


class Skip(RuntimeError):
    """The step can never run (its target is gone): skipped, with this reason."""


@dataclass
class SequenceRunner:
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: NotificationsSettings
    renderer: EmailRenderer
    batch_size: int = 50
    max_attempts: int = 10

    def __post_init__(self) -> None:
        self.outbox = Outbox(models.outbox)

    async def run_due(self, now: datetime) -> int:
        """Run every step due by ``now`` (rounds until one finds fewer than a batch).
        How many steps this call took (done, skipped, stopped or retried later)."""
        total = 0
        while True:
            taken = await self.run_round(now)
            total += taken
            if taken < self.batch_size:
                return total

    async def run_round(self, now: datetime) -> int:
        async with self.sessionmaker() as session, session.begin():
            repo = SequenceRepository(session)
            claimed = await repo.claim_due(now, self.batch_size)
            if not claimed:
                return 0
            runs = await repo.runs(s.run_id for s in claimed)
            offerings = await repo.offerings(
                s.target_offering_id for s in claimed if s.target_offering_id is not None
            )
            groups: dict[uuid.UUID, AudienceGroup] = {}
            for business_id in {s.business_id for s in claimed}:
                groups.update(
                    await repo.groups(
                        business_id,
                        (
                            s.group_id
                            for s in claimed
                            if s.business_id == business_id and s.group_id is not None
                        ),
                    )
                )
            for step in claimed:
                run = runs[step.run_id]
                try:
                    # Only the effect in the savepoint: the step-run row (an ORM object)
                    # changes after it, so a rolled back savepoint never expires it.
                    async with session.begin_nested():
                        status, result_id = await self._execute(
                            session, step, run, offerings, groups
                        )
                except Skip as exc:
                    self._finish(step, STEP_SKIPPED, now, error=str(exc))
                    log.warning("sequence_step_skipped", step_run_id=str(step.id), reason=str(exc))
                except Exception as exc:  # retried: one bad step never blocks the others
                    self._failed(step, now, f"{type(exc).__name__}: {exc}")
                else:
                    step.result_id = result_id
                    self._finish(step, status, now)
                    log.info(
                        "sequence_step_ran",
                        step_run_id=str(step.id),
                        run_id=str(run.id),
                        action=step.action,
                        status=status,
                    )
            await session.flush()
            await repo.complete_finished_runs(runs)
            await self._committing(session, claimed)
            return len(claimed)

    async def _committing(self, session: AsyncSession, claimed: list[SequenceStepRun]) -> None:
        """Called just before a round commits (tests make a runner die here)."""

    # -- one step ---------------------------------------------------------------------------

    async def _execute(
        self,
        session: AsyncSession,
        step: SequenceStepRun,
        run: SequenceRun,
        offerings: dict[uuid.UUID, KnownOffering],
        groups: dict[uuid.UUID, AudienceGroup],
    ) -> tuple[str, uuid.UUID | None]:
        """Write the step's effect; its new status and what it made."""
        if run.status != RUN_ACTIVE:
            return STEP_STOPPED, None
        if step.action == ACTION_EMAIL:
            return STEP_DONE, await self._email(session, step, run)
        event = self._action_event(step, run, offerings, groups)
        await self.outbox.enqueue(session, event)
        return STEP_DONE, event.id

    async def _email(
        self, session: AsyncSession, step: SequenceStepRun, run: SequenceRun
    ) -> uuid.UUID:
        rendered = render_step_email(
            self.renderer,
            subject=step.email_subject or "",
            body_markdown=step.email_body_markdown or "",
            client_name=run.buyer_name,
            offering_name=run.offering_name,
            business_name=run.business_name or "",
        )
        status, last_error = QUEUED, None
        try:
            address = normalize_email(run.buyer_email)
        except ValueError as exc:
            # Kept (as failed), so the email log shows what happened.
            address = one_line(run.buyer_email, 320)
            status, last_error = FAILED, f"invalid recipient address: {exc}"[:500]
        row_id = email_id(step.id, TEMPLATE, address)
        wall_clock = utcnow()
        created = await EmailRepository(session).insert_if_absent(
            {
                "id": row_id,
                "business_id": run.business_id,
                "event_id": step.id,
                "event_name": SEQUENCE_EVENT_NAME,
                "template": TEMPLATE,
                "recipient": address,
                "subject": rendered.subject,
                "text_body": rendered.text_body,
                "html_body": rendered.html_body,
                "status": status,
                "attempts": 0,
                "last_error": last_error,
                # Wall-clock time: the sender takes it at once, whatever clock ran the step.
                "next_attempt_at": wall_clock,
                "created_at": wall_clock,
            }
        )
        if not created:
            log.error("sequence_email_exists", email_id=str(row_id))  # never expected
        return row_id

    def _action_event(
        self,
        step: SequenceStepRun,
        run: SequenceRun,
        offerings: dict[uuid.UUID, KnownOffering],
        groups: dict[uuid.UUID, AudienceGroup],
    ) -> SequenceActionRequestedV1:
        common = {
            "id": step.id,
            "business_id": run.business_id,
            "sequence_id": run.sequence_id,
            "sequence_name": run.sequence_name,
            "run_id": run.id,
            "step_id": step.step_id,
            "action": step.action,
            "order_id": run.order_id,
            "buyer_account_id": run.buyer_account_id,
            "buyer_email": run.buyer_email,
            "buyer_name": run.buyer_name,
        }
        if step.action == ACTION_GROUP:
            assert step.group_id is not None
            group = groups.get(step.group_id)
            if group is not None and group.deleted:
                raise Skip("the group was deleted")
            name = group.name if group is not None and group.name else ""
            return SequenceActionRequestedV1(**common, group_id=step.group_id, target_name=name)
        assert step.target_offering_id is not None
        offering = offerings.get(step.target_offering_id)
        if offering is not None and offering.archived:
            raise Skip("the offering was archived")
        if offering is None or offering.version_id is None:
            raise NotYet("the offering is not known yet")
        if offering.kind != TARGET_KINDS.get(step.action):
            raise Skip(f"the offering is a {offering.kind}")
        return SequenceActionRequestedV1(
            **common,
            offering_id=offering.offering_id,
            offering_version_id=offering.version_id,
            target_name=offering.name or "",
            details=offering_details(offering),
        )

    # -- outcomes ---------------------------------------------------------------------------

    @staticmethod
    def _finish(
        step: SequenceStepRun, status: str, now: datetime, error: str | None = None
    ) -> None:
        step.status = status
        step.done_at = now
        step.last_error = error
        step.retry_at = None

    def _failed(self, step: SequenceStepRun, now: datetime, error: str) -> None:
        step.attempts += 1
        if step.attempts >= self.max_attempts:
            self._finish(step, STEP_SKIPPED, now, error=error[:500])
            log.error("sequence_step_given_up", step_run_id=str(step.id), error=error)
            return
        step.last_error = error[:500]
        step.retry_at = now + min(timedelta(minutes=2**step.attempts), MAX_BACKOFF)
        log.warning("sequence_step_failed", step_run_id=str(step.id), error=error)
