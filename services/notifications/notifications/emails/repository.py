"""Every query of the emails domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from kit.db import insert_ignoring_conflicts
from notifications.models import (
    BULK_TEMPLATES,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    Email,
    KnownBusiness,
)


@dataclass(frozen=True)
class ClaimedEmail:
    """A row the sender holds a lease on (``lease`` is its ``locked_until``)."""

    id: uuid.UUID
    template: str
    recipient: str
    subject: str
    text_body: str
    html_body: str
    attempts: int
    lease: datetime
    extra_headers: str | None = None
    attachments: str | None = None


class EmailRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    # -- queueing -------------------------------------------------------------

    async def insert_if_absent(self, row: dict[str, Any]) -> bool:
        """False when this email (same event, template, recipient) is already there."""
        statement = insert_ignoring_conflicts(self._dialect, Email.__table__)  # type: ignore[arg-type]
        result = await self.session.execute(statement.values(**row))
        return bool(getattr(result, "rowcount", 0))

    async def insert_many_if_absent(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many emails in few statements (batched multi-row VALUES); existing ones are kept."""
        if not rows:
            return
        statement = insert_ignoring_conflicts(self._dialect, Email.__table__)  # type: ignore[arg-type]
        await self.session.execute(statement, list(rows))

    async def counts_by_status(
        self, business_id: uuid.UUID, template: str, event_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, int]]:
        """{event id: {status: count}} of one template's emails for these events."""
        if not event_ids:
            return {}
        result = await self.session.execute(
            select(Email.event_id, Email.status, func.count())
            .where(
                Email.business_id == business_id,
                Email.template == template,
                Email.event_id.in_(list(event_ids)),
            )
            .group_by(Email.event_id, Email.status)
        )
        counts: dict[uuid.UUID, dict[str, int]] = {}
        for event_id, status, count in result.all():
            counts.setdefault(event_id, {})[status] = int(count)
        return counts

    # -- known businesses -----------------------------------------------------

    async def insert_business_if_absent(self, business: dict[str, Any]) -> bool:
        # Insert-only: a late duplicate of the creation event must not undo a later change.
        statement = insert_ignoring_conflicts(self._dialect, KnownBusiness.__table__)  # type: ignore[arg-type]
        result = await self.session.execute(statement.values(**business))
        return bool(getattr(result, "rowcount", 0))

    async def business_by_id(self, business_id: uuid.UUID) -> KnownBusiness | None:
        return await self.session.get(KnownBusiness, business_id)

    # -- the sender -----------------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease: datetime) -> list[ClaimedEmail]:
        """Take up to ``limit`` due rows for sending until ``lease``.

        Due: queued and its time has come, or 'sending' with a lapsed lease (its
        sender died). SKIP LOCKED lets concurrent senders take disjoint rows.
        Transactional emails go first, then bulk ones (campaigns), oldest first.
        """
        due = (
            select(Email.id)
            .where(
                or_(
                    and_(Email.status == QUEUED, Email.next_attempt_at <= now),
                    and_(Email.status == SENDING, Email.locked_until < now),
                )
            )
            .order_by(case((Email.template.in_(BULK_TEMPLATES), 1), else_=0), Email.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list((await self.session.execute(due)).scalars())
        if not ids:
            return []
        result = await self.session.execute(
            update(Email)
            .where(Email.id.in_(ids))
            .values(status=SENDING, locked_until=lease, attempts=Email.attempts + 1)
            .returning(
                Email.id,
                Email.template,
                Email.recipient,
                Email.subject,
                Email.text_body,
                Email.html_body,
                Email.attempts,
                Email.extra_headers,
                Email.attachments,
            )
            .execution_options(synchronize_session=False)
        )
        claimed = {row.id: ClaimedEmail(**row._asdict(), lease=lease) for row in result.all()}
        return [claimed[email_id] for email_id in ids if email_id in claimed]

    def _held(self, email: ClaimedEmail) -> Any:
        # Every write by the sender checks it still holds the lease: a sender that lost
        # its row to another (after a long stall) must not overwrite that one's outcome.
        return and_(
            Email.id == email.id, Email.status == SENDING, Email.locked_until == email.lease
        )

    async def _update_held(self, email: ClaimedEmail, **values: Any) -> bool:
        result = await self.session.execute(
            update(Email)
            .where(self._held(email))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def mark_sent(self, email: ClaimedEmail, sent_at: datetime, message_id: str) -> bool:
        return await self._update_held(
            email, status=SENT, sent_at=sent_at, message_id=message_id, locked_until=None
        )

    async def reschedule(self, email: ClaimedEmail, next_attempt_at: datetime, error: str) -> bool:
        return await self._update_held(
            email,
            status=QUEUED,
            next_attempt_at=next_attempt_at,
            last_error=error,
            locked_until=None,
        )

    async def mark_failed(self, email: ClaimedEmail, error: str) -> bool:
        return await self._update_held(email, status=FAILED, last_error=error, locked_until=None)

    async def release(self, emails: Sequence[ClaimedEmail]) -> None:
        """Give back rows that were claimed but not tried: the claim did not count."""
        for email in emails:
            await self._update_held(
                email, status=QUEUED, attempts=Email.attempts - 1, locked_until=None
            )

    # -- the email log --------------------------------------------------------

    async def page_for_business(
        self, business_id: uuid.UUID, status: str | None, limit: int, offset: int
    ) -> tuple[list[Email], int]:
        """One page of a business's emails, newest first, and how many there are in all."""
        conditions = [Email.business_id == business_id]
        if status is not None:
            conditions.append(Email.status == status)
        total = await self.session.execute(
            select(func.count()).select_from(Email).where(*conditions)
        )
        # The log never needs the bodies (and they hold links with tokens): leave them.
        rows = await self.session.execute(
            select(Email)
            .options(
                load_only(
                    Email.id,
                    Email.template,
                    Email.recipient,
                    Email.subject,
                    Email.status,
                    Email.attempts,
                    Email.last_error,
                    Email.created_at,
                    Email.sent_at,
                    raiseload=True,
                )
            )
            .where(*conditions)
            .order_by(Email.created_at.desc(), Email.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), int(total.scalar_one())
