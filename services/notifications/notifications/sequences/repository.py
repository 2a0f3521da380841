"""Every query of the sequences domain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import insert_ignoring_conflicts, upsert
from notifications.models import (
    RUN_ACTIVE,
    RUN_COMPLETED,
    RUN_STOPPED,
    STEP_PENDING,
    STEP_STOPPED,
    AudienceGroup,
    KnownOffering,
    Sequence,
    SequenceOrderStop,
    SequenceRun,
    SequenceStep,
    SequenceStepRun,
)


class SequenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    # -- sequences ------------------------------------------------------------------------

    async def sequences(self, business_id: uuid.UUID) -> list[Sequence]:
        result = await self.session.execute(
            select(Sequence)
            .where(Sequence.business_id == business_id, Sequence.deleted_at.is_(None))
            .order_by(Sequence.created_at.desc(), Sequence.id)
        )
        return list(result.scalars())

    async def sequence(
        self, business_id: uuid.UUID, sequence_id: uuid.UUID, *, lock: bool = False
    ) -> Sequence | None:
        query = select(Sequence).where(
            Sequence.id == sequence_id,
            Sequence.business_id == business_id,
            Sequence.deleted_at.is_(None),
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def sequence_for_offering(self, offering_id: uuid.UUID) -> Sequence | None:
        query = select(Sequence).where(
            Sequence.offering_id == offering_id, Sequence.deleted_at.is_(None)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def steps(self, sequence_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[SequenceStep]]:
        ids = list(sequence_ids)
        found: dict[uuid.UUID, list[SequenceStep]] = {i: [] for i in ids}
        if not ids:
            return found
        result = await self.session.execute(
            select(SequenceStep)
            .where(SequenceStep.sequence_id.in_(ids))
            .order_by(SequenceStep.sequence_id, SequenceStep.position)
        )
        for step in result.scalars():
            found[step.sequence_id].append(step)
        return found

    def add(self, row: Any) -> None:
        self.session.add(row)

    async def flush(self) -> None:
        await self.session.flush()

    async def replace_steps(self, sequence_id: uuid.UUID, rows: list[dict[str, Any]]) -> None:
        await self.session.execute(
            delete(SequenceStep).where(SequenceStep.sequence_id == sequence_id)
        )
        if rows:
            await self.session.execute(SequenceStep.__table__.insert(), rows)  # type: ignore[attr-defined]

    async def run_counts(
        self, sequence_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, int]]:
        ids = list(sequence_ids)
        counts: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
        if not ids:
            return counts
        result = await self.session.execute(
            select(SequenceRun.sequence_id, SequenceRun.status, func.count())
            .where(SequenceRun.sequence_id.in_(ids))
            .group_by(SequenceRun.sequence_id, SequenceRun.status)
        )
        for sequence_id, status, count in result.all():
            counts[sequence_id][status] = int(count)
        return counts

    # -- read models: offerings (catalog events) and group names (audience) --------------

    async def offering_published(
        self,
        *,
        offering_id: uuid.UUID,
        business_id: uuid.UUID,
        version_id: uuid.UUID,
        version: int,
        name: str,
        kind: str,
        details: dict[str, Any],
    ) -> None:
        """The newest version wins (a late event for an older version changes nothing)."""
        table = KnownOffering.__table__
        c = table.c

        def changes(new: Any) -> dict[str, Any]:
            newer = c.version <= new.version
            return {
                "version_id": case((newer, new.version_id), else_=c.version_id),
                "version": case((newer, new.version), else_=c.version),
                "name": case((newer, new.name), else_=c.name),
                "kind": case((newer, new.kind), else_=c.kind),
                "details": case((newer, new.details), else_=c.details),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
            {
                "offering_id": offering_id,
                "business_id": business_id,
                "version_id": version_id,
                "version": version,
                "name": name,
                "kind": kind,
                "details": json.dumps(details),
                "archived": False,
            },
            ["offering_id"],
            changes,
        )

    async def offering_archived(
        self, *, offering_id: uuid.UUID, business_id: uuid.UUID, occurred_at: datetime
    ) -> None:
        """Archived for good (a tombstone, even before its publication is heard of)."""
        table = KnownOffering.__table__
        c = table.c
        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
            {
                "offering_id": offering_id,
                "business_id": business_id,
                "version": 0,
                "details": "{}",
                "archived": True,
                "archived_at": occurred_at,
            },
            ["offering_id"],
            lambda new: {
                "archived": True,
                "archived_at": func.coalesce(c.archived_at, new.archived_at),
            },
        )

    async def offerings(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, KnownOffering]:
        wanted = list({i for i in ids if i is not None})
        if not wanted:
            return {}
        result = await self.session.execute(
            select(KnownOffering).where(KnownOffering.offering_id.in_(wanted))
        )
        return {o.offering_id: o for o in result.scalars()}

    async def groups(
        self, business_id: uuid.UUID, ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, AudienceGroup]:
        wanted = list({i for i in ids if i is not None})
        if not wanted:
            return {}
        result = await self.session.execute(
            select(AudienceGroup).where(
                AudienceGroup.business_id == business_id, AudienceGroup.group_id.in_(wanted)
            )
        )
        return {g.group_id: g for g in result.scalars()}

    # -- runs -------------------------------------------------------------------------------

    async def insert_run(self, row: dict[str, Any]) -> bool:
        """False when the (sequence, order) run exists already."""
        statement = insert_ignoring_conflicts(
            self._dialect,
            SequenceRun.__table__,  # type: ignore[arg-type]
            index_elements=["sequence_id", "order_id"],
        )
        result = await self.session.execute(statement.values(**row))
        return bool(getattr(result, "rowcount", 0))

    async def insert_step_runs(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            statement = insert_ignoring_conflicts(
                self._dialect,
                SequenceStepRun.__table__,  # type: ignore[arg-type]
            )
            await self.session.execute(statement, rows)

    async def runs_page(
        self, sequence_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[SequenceRun], int]:
        total = (
            await self.session.execute(
                select(func.count()).where(SequenceRun.sequence_id == sequence_id)
            )
        ).scalar_one()
        result = await self.session.execute(
            select(SequenceRun)
            .where(SequenceRun.sequence_id == sequence_id)
            .order_by(SequenceRun.started_at.desc(), SequenceRun.id)
            .limit(limit)
            .offset(offset)
        )
        return list(result.scalars()), int(total)

    async def step_runs(
        self, run_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, list[SequenceStepRun]]:
        ids = list(run_ids)
        found: dict[uuid.UUID, list[SequenceStepRun]] = {i: [] for i in ids}
        if not ids:
            return found
        result = await self.session.execute(
            select(SequenceStepRun)
            .where(SequenceStepRun.run_id.in_(ids))
            .order_by(SequenceStepRun.run_id, SequenceStepRun.position)
        )
        for row in result.scalars():
            found[row.run_id].append(row)
        return found

    # -- stopping ---------------------------------------------------------------------------

    async def remember_stop(
        self, order_id: uuid.UUID, cause: str, business_id: uuid.UUID | None, at: datetime
    ) -> None:
        statement = insert_ignoring_conflicts(
            self._dialect,
            SequenceOrderStop.__table__,  # type: ignore[arg-type]
        )
        await self.session.execute(
            statement.values(
                order_id=order_id, cause=cause, business_id=business_id, occurred_at=at
            )
        )

    async def stops_of(self, order_id: uuid.UUID) -> set[str]:
        result = await self.session.execute(
            select(SequenceOrderStop.cause).where(SequenceOrderStop.order_id == order_id)
        )
        return set(result.scalars())

    async def stop_runs(
        self, order_id: uuid.UUID, sequence_flag: Any, reason: str, now: datetime
    ) -> list[uuid.UUID]:
        """Stop the order's active runs whose sequence says so (``sequence_flag``, a column
        of ``sequences``): their pending step-runs become stopped. The ids stopped."""
        wanted = (
            select(SequenceRun.id)
            .join(Sequence, Sequence.id == SequenceRun.sequence_id)
            .where(
                SequenceRun.order_id == order_id,
                SequenceRun.status == RUN_ACTIVE,
                sequence_flag.is_(True),
            )
        )
        run_ids = list((await self.session.execute(wanted)).scalars())
        if run_ids:
            await self.stop_run_ids(run_ids, reason, now)
        return run_ids

    async def stop_run_ids(self, run_ids: list[uuid.UUID], reason: str, now: datetime) -> None:
        # Rows a runner holds are waited for; a step it finished is no longer pending then.
        await self.session.execute(
            update(SequenceStepRun)
            .where(SequenceStepRun.run_id.in_(run_ids), SequenceStepRun.status == STEP_PENDING)
            .values(status=STEP_STOPPED, done_at=now, last_error=None)
        )
        await self.session.execute(
            update(SequenceRun)
            .where(SequenceRun.id.in_(run_ids), SequenceRun.status == RUN_ACTIVE)
            .values(status=RUN_STOPPED, stopped_at=now, stop_reason=reason)
        )

    async def active_runs_of(self, sequence_id: uuid.UUID) -> list[uuid.UUID]:
        result = await self.session.execute(
            select(SequenceRun.id).where(
                SequenceRun.sequence_id == sequence_id, SequenceRun.status == RUN_ACTIVE
            )
        )
        return list(result.scalars())

    # -- the runner -------------------------------------------------------------------------

    async def claim_due(self, now: datetime, limit: int) -> list[SequenceStepRun]:
        """Pending step-runs due by ``now``, locked for this transaction (others skip them)."""
        result = await self.session.execute(
            select(SequenceStepRun)
            .where(
                SequenceStepRun.status == STEP_PENDING,
                SequenceStepRun.due_at <= now,
                or_(SequenceStepRun.retry_at.is_(None), SequenceStepRun.retry_at <= now),
            )
            .order_by(SequenceStepRun.due_at, SequenceStepRun.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(result.scalars())

    async def runs(self, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, SequenceRun]:
        ids = list(set(run_ids))
        if not ids:
            return {}
        result = await self.session.execute(select(SequenceRun).where(SequenceRun.id.in_(ids)))
        return {r.id: r for r in result.scalars()}

    async def complete_finished_runs(self, run_ids: Iterable[uuid.UUID]) -> None:
        """Runs with no pending step left are completed."""
        ids = list(set(run_ids))
        if not ids:
            return
        pending = (
            select(SequenceStepRun.id)
            .where(
                and_(SequenceStepRun.run_id == SequenceRun.id),
                SequenceStepRun.status == STEP_PENDING,
            )
            .exists()
        )
        await self.session.execute(
            update(SequenceRun)
            .where(SequenceRun.id.in_(ids), SequenceRun.status == RUN_ACTIVE, ~pending)
            .values(status=RUN_COMPLETED)
        )
