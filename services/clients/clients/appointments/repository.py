"""Every query of the appointments domain. Each one names the business (or the
requester's account), so nothing crosses from one business to another."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import (
    Account,
    Appointment,
    AppointmentSchedule,
    BlockedTime,
    Business,
    Credit,
    Entitlement,
)
from kit.db import insert_ignoring_conflicts

# The longest appointment plus buffer the catalog allows (1440 + 240 minutes): how far
# before a range an appointment may start and still reach into it.
LONGEST = timedelta(minutes=1440 + 240)


class AppointmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    # -- businesses --------------------------------------------------------------

    async def business(self, business_id: uuid.UUID) -> Business | None:
        return await self.session.get(Business, business_id)

    async def business_by_slug(self, slug: str) -> Business | None:
        result = await self.session.execute(select(Business).where(Business.slug == slug))
        return result.scalar_one_or_none()

    async def businesses(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Business]:
        if not ids:
            return {}
        result = await self.session.execute(select(Business).where(Business.id.in_(list(ids))))
        return {b.id: b for b in result.scalars()}

    # -- the schedule ------------------------------------------------------------

    async def schedule(self, business_id: uuid.UUID) -> AppointmentSchedule | None:
        return await self.session.get(AppointmentSchedule, business_id)

    async def schedules(
        self, business_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, AppointmentSchedule]:
        if not business_ids:
            return {}
        result = await self.session.execute(
            select(AppointmentSchedule).where(
                AppointmentSchedule.business_id.in_(list(business_ids))
            )
        )
        return {s.business_id: s for s in result.scalars()}

    async def lock_schedule(self, business_id: uuid.UUID, defaults: dict[str, object]) -> None:
        """Take the business's schedule row FOR UPDATE (made with ``defaults`` first when
        the business never set one): every change that could make two confirmed
        appointments overlap holds it, so they happen one at a time."""
        await self.session.execute(
            insert_ignoring_conflicts(
                self.dialect,
                AppointmentSchedule.__table__,  # type: ignore[arg-type]
                ["business_id"],
            ),
            [{"business_id": business_id, **defaults}],
        )
        await self.session.execute(
            select(AppointmentSchedule.business_id)
            .where(AppointmentSchedule.business_id == business_id)
            .with_for_update()
        )

    async def add(self, row: object) -> None:
        self.session.add(row)
        await self.session.flush()

    # -- blocked times -----------------------------------------------------------

    async def blocked_times(
        self,
        business_id: uuid.UUID,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[BlockedTime]:
        query = select(BlockedTime).where(BlockedTime.business_id == business_id)
        if start is not None:
            query = query.where(BlockedTime.ends_at > start)
        if end is not None:
            query = query.where(BlockedTime.starts_at < end)
        result = await self.session.execute(query.order_by(BlockedTime.starts_at, BlockedTime.id))
        return list(result.scalars())

    async def blocked_time(
        self, business_id: uuid.UUID, blocked_id: uuid.UUID
    ) -> BlockedTime | None:
        result = await self.session.execute(
            select(BlockedTime).where(
                BlockedTime.business_id == business_id, BlockedTime.id == blocked_id
            )
        )
        return result.scalar_one_or_none()

    async def delete(self, row: object) -> None:
        await self.session.delete(row)
        await self.session.flush()

    # -- appointments ------------------------------------------------------------

    async def claim(self, row: dict[str, object]) -> bool:
        """Insert a new appointment unless one with its (business, Idempotency-Key)
        exists (made before, or by a concurrent request that committed first)."""
        statement = insert_ignoring_conflicts(
            self.dialect,
            Appointment.__table__,  # type: ignore[arg-type]
            ["business_id", "idempotency_key"],
        ).returning(Appointment.__table__.c.id)
        result = await self.session.execute(statement, [row])
        return result.first() is not None

    async def by_key(self, business_id: uuid.UUID, key: str) -> Appointment | None:
        result = await self.session.execute(
            select(Appointment).where(
                Appointment.business_id == business_id, Appointment.idempotency_key == key
            )
        )
        return result.scalar_one_or_none()

    async def appointment(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID, *, lock: bool = False
    ) -> Appointment | None:
        query = select(Appointment).where(
            Appointment.business_id == business_id, Appointment.id == appointment_id
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def appointment_of_account(
        self, account_id: uuid.UUID, appointment_id: uuid.UUID, *, lock: bool = False
    ) -> Appointment | None:
        query = select(Appointment).where(
            Appointment.account_id == account_id, Appointment.id == appointment_id
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def confirmed_between(
        self,
        business_id: uuid.UUID,
        start: datetime,
        end: datetime,
        *,
        excluding: uuid.UUID | None = None,
    ) -> list[Appointment]:
        """Confirmed appointments of the business whose time or buffer reaches into
        ``[start, end)`` (filtered exactly by the caller)."""
        query = select(Appointment).where(
            Appointment.business_id == business_id,
            Appointment.status == "confirmed",
            Appointment.starts_at < end,
            Appointment.ends_at > start - LONGEST,
        )
        if excluding is not None:
            query = query.where(Appointment.id != excluding)
        return list((await self.session.execute(query)).scalars())

    async def listing(
        self,
        business_id: uuid.UUID,
        start: datetime,
        end: datetime,
        statuses: Sequence[str],
    ) -> list[tuple[Appointment, Account | None]]:
        result = await self.session.execute(
            select(Appointment, Account)
            .outerjoin(Account, Account.id == Appointment.account_id)
            .where(
                Appointment.business_id == business_id,
                Appointment.status.in_(list(statuses)),
                Appointment.starts_at >= start,
                Appointment.starts_at < end,
            )
            .order_by(Appointment.starts_at, Appointment.id)
        )
        return [(a, acc) for a, acc in result.all()]

    async def of_account(
        self, account_id: uuid.UUID, now: datetime
    ) -> list[tuple[Appointment, Account | None]]:
        """The account's appointments in every business (an unpaid request only while it
        is held), soonest first."""
        result = await self.session.execute(
            select(Appointment, Account)
            .outerjoin(Account, Account.id == Appointment.account_id)
            .where(
                Appointment.account_id == account_id,
                or_(
                    Appointment.status != "awaiting_payment",
                    Appointment.hold_expires_at > now,
                ),
            )
            .order_by(Appointment.starts_at, Appointment.id)
        )
        return [(a, acc) for a, acc in result.all()]

    async def account(self, account_id: uuid.UUID | None) -> Account | None:
        if account_id is None:
            return None
        return await self.session.get(Account, account_id)

    async def for_order(
        self, business_id: uuid.UUID, appointment_id: uuid.UUID
    ) -> Appointment | None:
        """The appointment an order pays for, locked."""
        return await self.appointment(business_id, appointment_id, lock=True)

    # -- credits and entitlements ------------------------------------------------

    async def usable_credits(
        self, business_id: uuid.UUID, account_id: uuid.UUID, now: datetime
    ) -> list[Credit]:
        """The account's credits in the business with sessions left that have not
        expired: the one expiring first first (never-expiring last), then the oldest."""
        result = await self.session.execute(
            select(Credit)
            .where(
                Credit.business_id == business_id,
                Credit.account_id == account_id,
                Credit.remaining > 0,
                or_(Credit.expires_at.is_(None), Credit.expires_at > now),
            )
            .order_by(Credit.expires_at.is_(None), Credit.expires_at, Credit.created_at, Credit.id)
        )
        return list(result.scalars())

    async def take_credit(self, credit_id: uuid.UUID) -> bool:
        """One session off the credit, if it still has one (a concurrent booking may
        have taken the last): the row's lock orders the two."""
        result = await self.session.execute(
            update(Credit)
            .where(Credit.id == credit_id, Credit.remaining > 0)
            .values(remaining=Credit.remaining - 1)
            .returning(Credit.id)
        )
        return result.first() is not None

    async def claim_credit_return(
        self, appointment_id: uuid.UUID, now: datetime
    ) -> uuid.UUID | None:
        """Mark the appointment's credit returned, once: its credit id, or None when it
        had none or it was returned already."""
        result = await self.session.execute(
            update(Appointment)
            .where(
                Appointment.id == appointment_id,
                Appointment.credit_id.is_not(None),
                Appointment.credit_returned_at.is_(None),
            )
            .values(credit_returned_at=now)
            .returning(Appointment.credit_id)
        )
        return result.scalar_one_or_none()

    async def give_back_credit(self, credit_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Credit)
            .where(Credit.id == credit_id, Credit.remaining < Credit.total)
            .values(remaining=Credit.remaining + 1)
        )

    async def credit(self, credit_id: uuid.UUID | None) -> Credit | None:
        if credit_id is None:
            return None
        return await self.session.get(Credit, credit_id)

    async def has_entitlement(
        self, business_id: uuid.UUID, account_id: uuid.UUID, offering_id: uuid.UUID
    ) -> bool:
        result = await self.session.execute(
            select(Entitlement.id)
            .where(
                and_(
                    Entitlement.business_id == business_id,
                    Entitlement.account_id == account_id,
                    Entitlement.offering_id == offering_id,
                    Entitlement.status == "active",
                )
            )
            .limit(1)
        )
        return result.first() is not None
