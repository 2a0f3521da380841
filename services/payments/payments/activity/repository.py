"""Every query of the activity feed: one UNION over orders, invoice payments, failures,
subscription ends and refunds, keyset-paged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from payments.models import (
    FAILED,
    INVOICE,
    PAID,
    REFUNDED,
    InvoiceFailure,
    Order,
    Payment,
    Refund,
    Subscription,
)

SOLD = (PAID, REFUNDED)
# Ends the feed shows (a subscription that never started, or was stopped by a refund,
# is already there as a failure or a refund).
ANNOUNCED_ENDS = ("canceled", "payment_failed", "completed")
PERIODS = {"day": "day", "week": "week", "month": "month"}


class ActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    async def page(
        self,
        business_id: uuid.UUID,
        kinds: Sequence[str],
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Any]:
        """Rows (id, kind, at) newest first, after the cursor's (at, id)."""
        parts = []
        if "purchase" in kinds:
            parts.append(
                select(
                    Order.id.label("id"),
                    literal_column("'purchase'", String).label("kind"),
                    Order.paid_at.label("at"),
                ).where(
                    Order.business_id == business_id,
                    Order.status.in_(SOLD),
                    Order.paid_at.is_not(None),
                    *_between(Order.paid_at, start, end),
                )
            )
        if "failure" in kinds:
            parts.append(
                select(
                    Order.id.label("id"),
                    literal_column("'failure'", String).label("kind"),
                    Order.updated_at.label("at"),
                ).where(
                    Order.business_id == business_id,
                    Order.status == FAILED,
                    *_between(Order.updated_at, start, end),
                )
            )
        if "refund" in kinds:
            parts.append(
                select(
                    Refund.id.label("id"),
                    literal_column("'refund'", String).label("kind"),
                    Refund.created_at.label("at"),
                ).where(
                    Refund.business_id == business_id,
                    *_between(Refund.created_at, start, end),
                )
            )
        if "renewal" in kinds:
            # Every paid invoice after the first (which is the order's own purchase).
            parts.append(
                select(
                    Payment.id.label("id"),
                    literal_column("'renewal'", String).label("kind"),
                    Payment.paid_at.label("at"),
                )
                .join(Order, Order.id == Payment.order_id)
                .where(*self._renewals(business_id), *_between(Payment.paid_at, start, end))
            )
        if "payment_failed" in kinds:
            parts.append(
                select(
                    InvoiceFailure.id.label("id"),
                    literal_column("'payment_failed'", String).label("kind"),
                    InvoiceFailure.failed_at.label("at"),
                ).where(
                    InvoiceFailure.business_id == business_id,
                    *_between(InvoiceFailure.failed_at, start, end),
                )
            )
        if "subscription_ended" in kinds:
            parts.append(
                select(
                    Subscription.id.label("id"),
                    literal_column("'subscription_ended'", String).label("kind"),
                    Subscription.ended_at.label("at"),
                ).where(
                    Subscription.business_id == business_id,
                    Subscription.ended_at.is_not(None),
                    Subscription.end_reason.in_(ANNOUNCED_ENDS),
                    *_between(Subscription.ended_at, start, end),
                )
            )
        if not parts:
            return []
        entries = union_all(*parts).subquery("entries")
        query = select(entries.c.id, entries.c.kind, entries.c.at)
        if after is not None:
            at, entry_id = after
            query = query.where(
                or_(entries.c.at < at, and_(entries.c.at == at, entries.c.id < entry_id))
            )
        query = query.order_by(entries.c.at.desc(), entries.c.id.desc()).limit(limit)
        return list((await self.session.execute(query)).all())

    async def orders(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Order]:
        if not ids:
            return {}
        rows = await self.session.execute(select(Order).where(Order.id.in_(ids)))
        return {o.id: o for o in rows.scalars()}

    @staticmethod
    def _renewals(business_id: uuid.UUID) -> list[Any]:
        # The first invoice's payment row is written with the order's own paid_at.
        return [
            Payment.business_id == business_id,
            Payment.kind == INVOICE,
            Order.paid_at.is_not(None),
            Payment.paid_at > Order.paid_at,
        ]

    async def payments(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Payment]:
        if not ids:
            return {}
        rows = await self.session.execute(select(Payment).where(Payment.id.in_(ids)))
        return {p.id: p for p in rows.scalars()}

    async def failures(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, InvoiceFailure]:
        if not ids:
            return {}
        rows = await self.session.execute(select(InvoiceFailure).where(InvoiceFailure.id.in_(ids)))
        return {f.id: f for f in rows.scalars()}

    async def subscriptions(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Subscription]:
        if not ids:
            return {}
        rows = await self.session.execute(select(Subscription).where(Subscription.id.in_(ids)))
        return {s.id: s for s in rows.scalars()}

    async def refunds(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Refund]:
        if not ids:
            return {}
        rows = await self.session.execute(select(Refund).where(Refund.id.in_(ids)))
        return {r.id: r for r in rows.scalars()}

    async def sums(
        self,
        business_id: uuid.UUID,
        start: datetime | None,
        end: datetime | None,
        period: str | None,
    ) -> tuple[list[tuple[date | None, str, int]], list[tuple[date | None, str, int]]]:
        """(gross, refunded) rows of (period start or None, currency, sum of minor units)."""
        gross_bucket = self._bucket(Order.paid_at, period)
        gross = (
            select(gross_bucket, Order.currency, func.sum(Order.amount_minor))
            .where(
                Order.business_id == business_id,
                Order.status.in_(SOLD),
                Order.paid_at.is_not(None),
                *_between(Order.paid_at, start, end),
            )
            .group_by(*_keys(gross_bucket, period), Order.currency)
        )
        renewal_bucket = self._bucket(Payment.paid_at, period)
        renewals = (
            select(renewal_bucket, Payment.currency, func.sum(Payment.amount_minor))
            .join(Order, Order.id == Payment.order_id)
            .where(*self._renewals(business_id), *_between(Payment.paid_at, start, end))
            .group_by(*_keys(renewal_bucket, period), Payment.currency)
        )
        refund_bucket = self._bucket(Refund.created_at, period)
        refunded = (
            select(refund_bucket, Refund.currency, func.sum(Refund.amount_minor))
            .where(Refund.business_id == business_id, *_between(Refund.created_at, start, end))
            .group_by(*_keys(refund_bucket, period), Refund.currency)
        )
        sold = [*(await self.session.execute(gross)).all()]
        sold += (await self.session.execute(renewals)).all()
        return (
            [(_day(b), c, int(s or 0)) for b, c, s in sold],
            [(_day(b), c, int(s or 0)) for b, c, s in (await self.session.execute(refunded)).all()],
        )

    def _bucket(self, column: Any, period: str | None) -> ColumnElement[Any]:
        """The start of the UTC day, ISO week (Monday) or month a timestamp falls in."""
        # Constants are written into the SQL (``period`` is one of three words): the
        # same expression in SELECT and GROUP BY must not be two different parameters.
        if period is None:
            return literal_column("NULL").label("bucket")
        if self.dialect == "postgresql":
            unit = literal_column(f"'{PERIODS[period]}'")
            return func.date_trunc(unit, func.timezone(literal_column("'UTC'"), column)).label(
                "bucket"
            )
        # SQLite keeps UTC timestamps as text: date() and strftime() read them.
        if period == "day":
            return func.date(column).label("bucket")
        if period == "week":
            return func.date(
                column, literal_column("'weekday 0'"), literal_column("'-6 days'")
            ).label("bucket")
        return func.strftime(literal_column("'%Y-%m-01'"), column).label("bucket")


def _keys(bucket: ColumnElement[Any], period: str | None) -> list[ColumnElement[Any]]:
    return [] if period is None else [bucket]


def _between(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
