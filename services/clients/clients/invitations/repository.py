"""Every query of invitations and the daily invitation quota."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import Invitation, InvitationQuota
from kit.db import insert_ignoring_conflicts


class InvitationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def invitation(
        self, business_id: uuid.UUID, invitation_id: uuid.UUID
    ) -> Invitation | None:
        result = await self.session.execute(
            select(Invitation).where(
                Invitation.business_id == business_id, Invitation.id == invitation_id
            )
        )
        return result.scalar_one_or_none()

    async def by_token_hash(self, token_hash: str) -> Invitation | None:
        result = await self.session.execute(
            select(Invitation).where(Invitation.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def pending_by_emails(
        self, business_id: uuid.UUID, emails: list[str]
    ) -> dict[str, Invitation]:
        found: dict[str, Invitation] = {}
        for start in range(0, len(emails), 1000):
            result = await self.session.execute(
                select(Invitation)
                .where(
                    Invitation.business_id == business_id,
                    Invitation.status == "pending",
                    Invitation.email.in_(emails[start : start + 1000]),
                )
                .order_by(Invitation.created_at)
            )
            found.update({i.email: i for i in result.scalars()})  # the newest wins
        return found

    async def insert_invitations(self, rows: list[dict[str, object]]) -> None:
        if rows:
            await self.session.execute(insert(Invitation), rows)

    async def reissue(self, rows: list[dict[str, object]]) -> None:
        """New token and expiry for pending invitations (bulk, by primary key)."""
        if rows:
            await self.session.execute(update(Invitation), rows)

    async def consume(
        self, token_hash: str, now: datetime, account_id: uuid.UUID | None
    ) -> uuid.UUID | None:
        """Accept atomically: of two concurrent accepts, exactly one gets the invitation."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.token_hash == token_hash,
                Invitation.status == "pending",
                Invitation.expires_at > now,
            )
            .values(status="accepted", accepted_at=now, accepted_account_id=account_id)
            .returning(Invitation.id)
        )
        return result.scalar_one_or_none()

    async def page(
        self, business_id: uuid.UUID, status: str | None, now: datetime, limit: int, offset: int
    ) -> tuple[list[Invitation], int]:
        conditions = [Invitation.business_id == business_id]
        if status == "pending":
            conditions += [Invitation.status == "pending", Invitation.expires_at > now]
        elif status == "expired":
            conditions += [Invitation.status == "pending", Invitation.expires_at <= now]
        elif status is not None:
            conditions.append(Invitation.status == status)
        total = (
            await self.session.execute(
                select(func.count()).select_from(Invitation).where(*conditions)
            )
        ).scalar_one()
        result = await self.session.execute(
            select(Invitation)
            .where(*conditions)
            .order_by(Invitation.created_at.desc(), Invitation.id)
            .limit(limit)
            .offset(offset)
        )
        return list(result.scalars()), int(total)

    # -- daily quota ----------------------------------------------------------------

    async def take_quota(
        self, business_id: uuid.UUID, day: date, count: int, cap: int
    ) -> int | None:
        """Count ``count`` more emails for today if the cap allows; the new total, or None."""
        await self.session.execute(
            insert_ignoring_conflicts(
                self.session.bind.dialect.name, InvitationQuota.__table__, ["business_id", "day"]
            ).values(business_id=business_id, day=day, sent=0)
        )
        result = await self.session.execute(
            update(InvitationQuota)
            .where(
                InvitationQuota.business_id == business_id,
                InvitationQuota.day == day,
                InvitationQuota.sent + count <= cap,
            )
            .values(sent=InvitationQuota.sent + count)
            .returning(InvitationQuota.sent)
        )
        return result.scalar_one_or_none()

    async def sent_on(self, business_id: uuid.UUID, day: date) -> int:
        result = await self.session.execute(
            select(InvitationQuota.sent).where(
                InvitationQuota.business_id == business_id, InvitationQuota.day == day
            )
        )
        return int(result.scalar_one_or_none() or 0)
