"""The activity feed of a business: what was bought, what failed, what was refunded.

Entries are read from the orders and refunds tables (one UNION, newest first, paged
by a keyset cursor over (time, id), so new activity never shifts a page). Totals are
for the date range whatever kinds are shown: gross is what purchases paid in it,
refunded what refunds gave back in it, net the difference, per currency (never
added across currencies), and per UTC day, ISO week or month when asked.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import FieldError, InvalidInput
from payments.activity import schemas
from payments.activity.repository import ActivityRepository
from payments.models import PAID, InvoiceFailure, Order, Payment, Refund, Subscription

KINDS = ("purchase", "failure", "refund", "renewal", "payment_failed", "subscription_ended")


def encode_cursor(at: datetime, entry_id: uuid.UUID) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), str(entry_id)]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, id_text = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(id_text)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidInput(
            "cursor: not a cursor this feed gave",
            errors=[FieldError("cursor", "not a cursor this feed gave", "query")],
        ) from exc


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass
class ActivityService:
    session: AsyncSession

    def __post_init__(self) -> None:
        self.repo = ActivityRepository(self.session)

    async def feed(
        self,
        business_id: uuid.UUID,
        kinds: Sequence[str] | None,
        since: date | None,
        until: date | None,
        cursor: str | None,
        limit: int,
        period: str | None,
    ) -> schemas.ActivityPage:
        if since is not None and until is not None and since > until:
            raise InvalidInput(
                "to: before from",
                errors=[FieldError("to", "must not be before from", "query")],
            )
        wanted = [k for k in KINDS if not kinds or k in kinds]
        start = day_start(since) if since else None
        end = day_start(until + timedelta(days=1)) if until else None  # "to" is inclusive
        after = decode_cursor(cursor) if cursor else None
        rows = await self.repo.page(business_id, wanted, start, end, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]

        def ids(kind: str) -> set[uuid.UUID]:
            return {r.id for r in rows if r.kind == kind}

        refunds = await self.repo.refunds(ids("refund"))
        renewals = await self.repo.payments(ids("renewal"))
        failures = await self.repo.failures(ids("payment_failed"))
        ends = await self.repo.subscriptions(ids("subscription_ended"))
        order_ids = ids("purchase") | ids("failure")
        for found in (refunds, renewals, failures, ends):
            order_ids |= {item.order_id for item in found.values()}  # type: ignore[attr-defined]
        orders = await self.repo.orders(order_ids)
        items = []
        for row in rows:
            if row.kind == "refund":
                refund = refunds[row.id]
                items.append(refund_entry(refund, orders[refund.order_id]))
            elif row.kind == "renewal":
                payment = renewals[row.id]
                items.append(renewal_entry(payment, orders[payment.order_id]))
            elif row.kind == "payment_failed":
                failure = failures[row.id]
                items.append(payment_failed_entry(failure, orders[failure.order_id]))
            elif row.kind == "subscription_ended":
                ended = ends[row.id]
                items.append(ended_entry(ended, orders[ended.order_id]))
            else:
                items.append(order_entry(row.kind, row.at, orders[row.id]))
        next_cursor = encode_cursor(rows[-1].at, rows[-1].id) if more and rows else None
        summary, totals = await self._totals(business_id, start, end, period)
        return schemas.ActivityPage(
            items=items, limit=limit, next_cursor=next_cursor, summary=summary, totals=totals
        )

    async def _totals(
        self,
        business_id: uuid.UUID,
        start: datetime | None,
        end: datetime | None,
        period: str | None,
    ) -> tuple[list[schemas.CurrencyTotal], list[schemas.PeriodTotal]]:
        gross, refunded = await self.repo.sums(business_id, start, end, period)
        cells: dict[tuple[date | None, str], list[int]] = {}
        for bucket, currency, value in gross:
            cells.setdefault((bucket, currency), [0, 0])[0] += value
        for bucket, currency, value in refunded:
            cells.setdefault((bucket, currency), [0, 0])[1] += value
        by_currency: dict[str, list[int]] = {}
        for (_bucket, currency), (g, r) in cells.items():
            total = by_currency.setdefault(currency, [0, 0])
            total[0] += g
            total[1] += r
        summary = [
            schemas.CurrencyTotal(currency=c, gross_minor=g, refunded_minor=r, net_minor=g - r)
            for c, (g, r) in sorted(by_currency.items())
        ]
        totals = []
        if period is not None:
            for (bucket, currency), (g, r) in sorted(
                cells.items(), key=lambda item: (item[0][0] or date.min, item[0][1]), reverse=True
            ):
                assert bucket is not None
                totals.append(
                    schemas.PeriodTotal(
                        period=period,  # type: ignore[arg-type]
                        period_start=bucket,
                        currency=currency,
                        gross_minor=g,
                        refunded_minor=r,
                        net_minor=g - r,
                    )
                )
        return summary, totals


def order_entry(kind: str, at: datetime, order: Order) -> schemas.ActivityEntry:
    refundable = 0
    if kind == "purchase" and order.status == PAID:  # a free order has nothing to give back
        refundable = max(order.amount_minor - order.refunded_minor, 0)
    return schemas.ActivityEntry(
        id=order.id,
        kind=kind,  # type: ignore[arg-type]
        at=at,
        order_id=order.id,
        offering_name=order.offering_name,
        buyer_name=order.buyer_name,
        buyer_email=order.buyer_email,
        amount_minor=order.amount_minor,
        currency=order.currency,
        status=order.status,
        order_status=order.status,
        refunded_minor=order.refunded_minor,
        refundable_minor=refundable,
        discount_code=order.discount_code,
        failure_reason=order.failure_reason if kind == "failure" else None,
    )


def refund_entry(refund: Refund, order: Order) -> schemas.ActivityEntry:
    return schemas.ActivityEntry(
        id=refund.id,
        kind="refund",
        at=refund.created_at,
        order_id=order.id,
        offering_name=order.offering_name,
        buyer_name=order.buyer_name,
        buyer_email=order.buyer_email,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        status="refunded",
        order_status=order.status,
        refunded_minor=order.refunded_minor,
        refundable_minor=0,
        reason=refund.reason,
        origin=refund.origin,
        revoke_access=refund.revoke_access,
    )


def _order_fields(order: Order) -> dict[str, object]:
    return {
        "order_id": order.id,
        "offering_name": order.offering_name,
        "buyer_name": order.buyer_name,
        "buyer_email": order.buyer_email,
        "order_status": order.status,
        "refunded_minor": order.refunded_minor,
        "refundable_minor": 0,
    }


def renewal_entry(payment: Payment, order: Order) -> schemas.ActivityEntry:
    return schemas.ActivityEntry(
        id=payment.id,
        kind="renewal",
        at=payment.paid_at,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status="paid",
        subscription_id=payment.subscription_id,
        **_order_fields(order),  # type: ignore[arg-type]
    )


def payment_failed_entry(failure: InvoiceFailure, order: Order) -> schemas.ActivityEntry:
    return schemas.ActivityEntry(
        id=failure.id,
        kind="payment_failed",
        at=failure.failed_at,
        amount_minor=failure.amount_minor,
        currency=failure.currency,
        status="past_due",
        failure_reason=failure.failure_message,
        subscription_id=failure.subscription_id,
        **_order_fields(order),  # type: ignore[arg-type]
    )


def ended_entry(subscription: Subscription, order: Order) -> schemas.ActivityEntry:
    assert subscription.ended_at is not None
    return schemas.ActivityEntry(
        id=subscription.id,
        kind="subscription_ended",
        at=subscription.ended_at,
        amount_minor=subscription.amount_minor,
        currency=subscription.currency,
        status=subscription.status,
        subscription_id=subscription.id,
        installment=subscription.installments_paid,
        end_reason=subscription.end_reason,
        **_order_fields(order),  # type: ignore[arg-type]
    )
