"""The effects of a paid order on the buyer, and the buyer's view of what they bought.

``payments.order_paid.v1`` is applied in the consumer's transaction, once per
order (the ``purchases_applied`` primary key; the inbox already drops a
redelivered event, this also drops a second event for the same order):

1. the buyer's account: by id, else by email; a new one (no password) gets a
   claim link by email (identity's ``accounts_for_purchases``);
2. the account becomes a client of the business through the client book's one
   way in (source ``purchased``); already a client: nothing new;
3. a ``purchased`` timeline entry naming the offering and the amount;
4. what the kind of offering gives: engagement credits, a group place (through
   the groups domain, so ``clients.group_member_added.v1`` goes out), or an
   entitlement row for the other kinds.

A recurring or payment plan order is the same order_paid (its first invoice) with
``subscription_id`` set; its later events are applied once per natural key
(``subscription_events_applied``), never per event id, and wait (are retried) until
the order's order_paid is applied:

- renewed (once per invoice): a timeline entry; an engagement gets a new credit
  batch, other kinds get their past-due entitlement active again;
- payment failed (once per invoice and attempt): a timeline entry, the entitlement
  ``past_due`` (access kept while Stripe retries);
- ended (once per subscription): a timeline entry; with ``revoke_access`` the
  entitlement ``ended`` and the group place the order made removed. Credits given
  stay: they were paid for.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clients.appointments.service import AppointmentService
from clients.book.service import ClientBook, timeline_row
from clients.groups.service import GroupService
from clients.identity.service import IdentityService
from clients.models import Business, Credit, PurchaseApplied
from clients.purchases import schemas
from clients.purchases.repository import PurchaseRepository
from kit.contracts.payments import (
    OrderPaidV1,
    OrderRefundedV1,
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from kit.db import utcnow
from kit.errors import NotFound
from kit.logging import get_logger
from kit.money import amount

log = get_logger(__name__)

ENGAGEMENT = "engagement"
GROUP = "group"
APPOINTMENT = "appointment"
RECURRING = "recurring"
PAYMENT_PLAN = "payment_plan"
FORM_KINDS = ("agreement", "worksheet")


class OrderNotAppliedYet(RuntimeError):
    """A refund or subscription event for an order whose effects are not applied yet:
    retried."""


def refund_summary(event: OrderRefundedV1, revoking: bool) -> str:
    text = f"Refunded {amount(event.amount_minor, event.currency)} of {event.offering_name}"
    if not event.full:
        text += f" ({amount(event.refunded_total_minor, event.currency)} refunded in all)"
    if revoking:
        text += "; access revoked"
    return text[:300]


class UnknownBusiness(RuntimeError):
    """The order names a business this service does not have: retried, then dead-lettered."""


def billing_type(
    billing: dict[str, Any], subscription_id: uuid.UUID | None, installments_total: int | None
) -> str:
    """free | one_time | recurring | payment_plan, from the order's billing (and, when an
    event carries none, from whether it has a subscription and installments)."""
    kind = billing.get("type")
    if kind in ("free", "one_time", RECURRING, PAYMENT_PLAN):
        return str(kind)
    if subscription_id is None:
        return "one_time"
    return PAYMENT_PLAN if installments_total else RECURRING


def every(billing: dict[str, Any]) -> str:
    """How often it is charged, as read: "every month", "every 2 weeks"."""
    interval = str(billing.get("interval") or "month")
    count = billing.get("interval_count")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 1:
        return f"every {interval}"
    return f"every {count} {interval}s"


def purchase_summary(event: OrderPaidV1) -> str:
    billing = billing_type(event.billing, event.subscription_id, event.installments_total)
    money = amount(event.amount_minor, event.currency)
    if event.amount_minor <= 0:
        text = f"Got {event.offering_name} for free"
    elif event.subscription_id is not None and billing == RECURRING:
        text = f"Subscribed to {event.offering_name} for {money} {every(event.billing)}"
    elif event.subscription_id is not None and billing == PAYMENT_PLAN:
        total = event.installments_total or event.billing.get("installments") or "?"
        text = f"Started payment plan {event.offering_name}: installment 1 of {total}, {money}"
    else:
        text = f"Bought {event.offering_name} for {money}"
    if event.discount_code and event.discount_minor > 0:
        text += (
            f" (discount {event.discount_code}: {amount(event.discount_minor, event.currency)} off)"
        )
    return text[:300]


def renewal_summary(event: SubscriptionRenewedV1) -> str:
    money = amount(event.amount_minor, event.currency)
    if event.installments_total or event.billing.get("type") == PAYMENT_PLAN:
        total = event.installments_total or event.billing.get("installments") or "?"
        text = f"Paid installment {event.installment} of {total} of {event.offering_name} ({money})"
        if event.completed:
            text += ": payment plan completed"
    else:
        text = f"Renewed {event.offering_name} for {money}"
    return text[:300]


def payment_failed_summary(event: SubscriptionPaymentFailedV1) -> str:
    text = f"Payment for {event.offering_name} failed ({amount(event.amount_minor, event.currency)}"
    if event.attempt > 1:
        text += f", attempt {event.attempt}"
    return (text + ")")[:300]


def ended_summary(event: SubscriptionEndedV1, billing: str) -> str:
    name = event.offering_name
    if event.reason == "completed":
        text = f"Payment plan {name} completed"
    else:
        what = f"Payment plan {name}" if billing == PAYMENT_PLAN else f"Subscription to {name}"
        why = "payment failed" if event.reason == "payment_failed" else event.reason
        text = f"{what} ended ({why})"
    text += "; access ended" if event.revoke_access else "; access kept"
    return text[:300]


def _credits(details: dict[str, Any]) -> tuple[int, int | None]:
    """(credits, expiry days) of an engagement's details; at least one credit."""
    total = details.get("credits")
    days = details.get("credit_expiry_days")
    count = total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else 1
    expiry = days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else None
    return count, expiry


def _appointment_offering_ids(details: dict[str, Any]) -> list[str] | None:
    named = details.get("appointment_offering_ids")
    if not isinstance(named, list) or not named:
        return None
    return [str(i) for i in named]


def credit_out(credit: Credit, now: datetime) -> schemas.CreditOut:
    expired = credit.expires_at is not None and credit.expires_at <= now
    return schemas.CreditOut(
        id=credit.id,
        order_id=credit.order_id,
        offering_id=credit.offering_id,
        offering_name=credit.offering_name,
        total=credit.total,
        remaining=credit.remaining,
        expires_at=credit.expires_at,
        expired=expired,
        label=f"{credit.remaining} of {credit.total} left",
        purchased_at=credit.created_at,
    )


@dataclass
class PurchaseService:
    session: AsyncSession
    identity: IdentityService
    repo: PurchaseRepository = field(init=False)
    book: ClientBook = field(init=False)
    groups: GroupService = field(init=False)

    def __post_init__(self) -> None:
        self.repo = PurchaseRepository(self.session)
        self.book = ClientBook(self.session, self.identity.outbox)
        self.groups = GroupService(self.session, self.identity.outbox)

    # -- applying an order ----------------------------------------------------------

    async def order_paid(self, event: OrderPaidV1) -> bool:
        """Apply the order's effects. False when they already were (nothing changes)."""
        return await self.orders_paid([event]) == 1

    async def orders_paid(self, events: list[OrderPaidV1]) -> int:
        """Apply many orders at once (a consumer batch), each exactly as ``order_paid``
        alone would, but with one query per step for the batch instead of one per
        order: buyers' accounts, clients, the once-per-order claims, timeline, credits
        and entitlements. The number of orders applied now."""
        by_business: dict[uuid.UUID, list[OrderPaidV1]] = {}
        for event in events:
            if event.business_id is None:
                raise UnknownBusiness(f"order {event.order_id} names no business")
            by_business.setdefault(event.business_id, []).append(event)
        applied = 0
        for business_id, batch in by_business.items():
            business = await self.book.repo.business(business_id)
            if business is None:
                raise UnknownBusiness(f"order {batch[0].order_id}: no business {business_id}")
            applied += await self._apply_orders(business, batch)
        return applied

    async def _apply_orders(self, business: Business, events: list[OrderPaidV1]) -> int:
        accounts = await self.identity.accounts_for_purchases(
            [(e.buyer_account_id, e.buyer_email, e.buyer_name) for e in events], business=business
        )
        distinct = list({a.id: a for a in accounts}.values())
        client_of = await self.book.add_clients(
            business, distinct, source="purchased", notify=False
        )
        already = [a.id for a in distinct if a.id not in client_of]
        if already:
            existing = await self.book.repo.clients_of_accounts(business.id, already)
            client_of.update({account_id: c.id for account_id, c in existing.items()})
        now = utcnow()
        claimed = await self.repo.claim_orders(
            [
                {
                    "order_id": event.order_id,
                    "business_id": business.id,
                    "account_id": account.id,
                    "client_id": client_of[account.id],
                    "event_id": event.id,
                    "offering_id": event.offering_id,
                    "kind": event.kind[:20],
                    "applied_at": now,
                    "billing_type": billing_type(
                        event.billing, event.subscription_id, event.installments_total
                    ),
                    "subscription_id": event.subscription_id,
                }
                for event, account in zip(events, accounts, strict=True)
            ]
        )
        timeline, credits, entitlements = [], [], []
        groups: list[tuple[OrderPaidV1, uuid.UUID, uuid.UUID]] = []
        appointments: list[tuple[OrderPaidV1, Any, uuid.UUID]] = []
        for event, account in zip(events, accounts, strict=True):
            if event.order_id not in claimed:
                log.info("order_already_applied", order_id=str(event.order_id))
                continue
            claimed.discard(event.order_id)  # the same order twice in a batch: once
            client_id = client_of[account.id]
            timeline.append(
                timeline_row(business.id, client_id, "purchased", purchase_summary(event), now)
            )
            if event.kind == ENGAGEMENT:
                credits.append(self._credit_row(event, business.id, account.id, client_id, now))
            elif event.kind == GROUP:
                groups.append((event, account.id, client_id))
            else:
                entitlements.append(
                    self._entitlement_row(event, business.id, account.id, client_id, now)
                )
            if event.kind == APPOINTMENT and event.appointment_id is not None:
                # Bought from the booking page: the held request becomes a request.
                appointments.append((event, account, client_id))
            log.info(
                "order_applied",
                order_id=str(event.order_id),
                business_id=str(business.id),
                account_id=str(account.id),
                kind=event.kind,
            )
        await self.book.repo.add_timeline(timeline)
        await self.repo.add_credits(credits)
        await self.repo.add_entitlements(entitlements)
        for event, account_id, client_id in groups:
            await self._join_group(event, business, account_id, client_id, now)
        if appointments:
            await AppointmentService(
                self.session, self.identity.outbox, self.identity.settings
            ).orders_paid(business, appointments)
        return len(timeline)

    async def _add_credits(
        self,
        event: OrderPaidV1 | SubscriptionRenewedV1,
        business_id: uuid.UUID,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
        invoice_id: str | None = None,
    ) -> None:
        await self.repo.add_credits(
            [self._credit_row(event, business_id, account_id, client_id, now, invoice_id)]
        )

    @staticmethod
    def _credit_row(
        event: OrderPaidV1 | SubscriptionRenewedV1,
        business_id: uuid.UUID,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
        invoice_id: str | None = None,
    ) -> dict[str, object]:
        total, expiry_days = _credits(event.details)
        return {
            "id": uuid.uuid4(),
            "business_id": business_id,
            "account_id": account_id,
            "client_id": client_id,
            "order_id": event.order_id,
            "invoice_id": invoice_id,
            "offering_id": event.offering_id,
            "offering_name": event.offering_name[:200],
            "total": total,
            "remaining": total,
            # Counted from the payment, not from when this event happened to arrive.
            "expires_at": event.paid_at + timedelta(days=expiry_days) if expiry_days else None,
            "created_at": now,
            # Which appointment offerings the credits book (none named: any).
            "appointment_offering_ids": _appointment_offering_ids(event.details),
        }

    async def _join_group(
        self,
        event: OrderPaidV1,
        business: Business,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
    ) -> None:
        try:
            group_id = uuid.UUID(str(event.details.get("group_id")))
        except ValueError:
            group_id = None
        if group_id is not None:
            try:
                change = await self.groups.add_members(
                    business.id, group_id, [client_id], f"buying {event.offering_name}"
                )
                if change.changed:  # the order made this place (and a refund may take it)
                    await self.repo.set_group(event.order_id, group_id)
                return
            except NotFound:
                pass
        # The group was deleted after the sale (or never named): keep what was bought
        # visible to the buyer and the coach instead of dropping it.
        log.error("purchased_group_missing", order_id=str(event.order_id), group_id=str(group_id))
        await self.book.repo.add_timeline(
            [
                timeline_row(
                    business.id,
                    client_id,
                    "group_missing",
                    f"Bought a place in a group that no longer exists ({event.offering_name})",
                    now,
                )
            ]
        )
        await self._entitle(event, business, account_id, client_id, now, status="group_missing")

    async def _entitle(
        self,
        event: OrderPaidV1,
        business: Business,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
        status: str = "active",
    ) -> None:
        await self.repo.add_entitlements(
            [self._entitlement_row(event, business.id, account_id, client_id, now, status)]
        )

    @staticmethod
    def _entitlement_row(
        event: OrderPaidV1,
        business_id: uuid.UUID,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
        status: str = "active",
    ) -> dict[str, object]:
        return {
            "id": uuid.uuid4(),
            "business_id": business_id,
            "account_id": account_id,
            "client_id": client_id,
            "order_id": event.order_id,
            "offering_id": event.offering_id,
            "offering_version_id": event.offering_version_id,
            "kind": event.kind[:20],
            "offering_name": event.offering_name[:200],
            "status": status,
            "created_at": now,
            # What the buyer signs or answers is the version they bought (clients.forms).
            "details": dict(event.details) if event.kind in FORM_KINDS else None,
        }

    # -- refunds -----------------------------------------------------------------------

    async def order_refunded(self, event: OrderRefundedV1) -> bool:
        """A ``refunded`` timeline entry; with ``revoke_access`` on a full refund, take
        back what the order gave, once: credits left go to 0, the entitlement is
        ``revoked``, the group place the order made is removed (through the groups
        domain: ``clients.group_member_removed.v1``; nothing else is touched). True when
        this call revoked."""
        applied = await self.repo.applied(event.order_id)
        if applied is None:
            # Its order_paid is not applied yet (or went to the DLQ): retry, never guess.
            raise OrderNotAppliedYet(f"order {event.order_id} is not applied")
        if event.business_id is not None and applied.business_id != event.business_id:
            log.error("refund_business_mismatch", order_id=str(event.order_id))
            return False
        now = utcnow()
        revoking = event.revoke_access and event.full
        revoked = revoking and await self.repo.claim_revoke(event.order_id, now)
        await self.book.repo.add_timeline(
            [
                timeline_row(
                    applied.business_id,
                    applied.client_id,
                    "refunded",
                    refund_summary(event, revoking),
                    now,
                )
            ]
        )
        if revoked:
            await self.repo.revoke_credits(event.order_id)
            await self.repo.revoke_entitlements(event.order_id)
            await self._release_group(applied, f"a refund of {event.offering_name}", now)
        log.info(
            "order_refund_applied",
            order_id=str(event.order_id),
            refund_id=str(event.refund_id),
            revoked=revoked,
        )
        return bool(revoked)

    async def _release_group(self, applied: PurchaseApplied, reason: str, now: datetime) -> None:
        """Remove the group place the order made, once, whichever of a refund or the end of
        its subscription takes it (through the groups domain:
        ``clients.group_member_removed.v1``)."""
        group_id = await self.repo.release_group(applied.order_id, now)
        if group_id is None:
            return
        # A group deleted since took the place with it (NotFound): nothing to do.
        with contextlib.suppress(NotFound):
            await self.groups.remove_members(
                applied.business_id, group_id, [applied.client_id], reason
            )

    # -- subscriptions and payment plans ---------------------------------------------

    async def _subscription_order(
        self,
        event: SubscriptionRenewedV1 | SubscriptionPaymentFailedV1 | SubscriptionEndedV1,
    ) -> PurchaseApplied | None:
        """The applied order the event is about; None (logged, nothing changes) when the
        event names another business or another subscription than the order has."""
        applied = await self.repo.applied(event.order_id)
        if applied is None:
            # Its order_paid is not applied yet (or went to the DLQ): retry, never guess.
            raise OrderNotAppliedYet(f"order {event.order_id} is not applied")
        if applied.business_id != event.business_id:
            log.error("subscription_business_mismatch", order_id=str(event.order_id))
            return None
        if applied.subscription_id is not None and applied.subscription_id != event.subscription_id:
            log.error("subscription_mismatch", order_id=str(event.order_id))
            return None
        return applied

    async def _claim(
        self,
        event: SubscriptionRenewedV1 | SubscriptionPaymentFailedV1 | SubscriptionEndedV1,
        applied: PurchaseApplied,
        effect: str,
        now: datetime,
        invoice_id: str = "",
        attempt: int = 0,
    ) -> bool:
        claimed = await self.repo.claim_subscription_event(
            {
                "subscription_id": event.subscription_id,
                "effect": effect,
                "invoice_id": invoice_id,
                "attempt": attempt,
                "order_id": applied.order_id,
                "business_id": applied.business_id,
                "event_id": event.id,
                "applied_at": now,
            }
        )
        if not claimed:
            log.info(
                "subscription_event_already_applied",
                effect=effect,
                subscription_id=str(event.subscription_id),
                invoice_id=invoice_id or None,
            )
        return claimed

    async def _timeline(
        self, applied: PurchaseApplied, kind: str, summary: str, now: datetime
    ) -> None:
        await self.book.repo.add_timeline(
            [timeline_row(applied.business_id, applied.client_id, kind, summary, now)]
        )

    async def subscription_renewed(self, event: SubscriptionRenewedV1) -> bool:
        """A later invoice was paid: the new period's credits (engagement), or access
        back from past due (other kinds). False when nothing changed."""
        applied = await self._subscription_order(event)
        if applied is None:
            return False
        now = utcnow()
        if not await self._claim(event, applied, "renewed", now, invoice_id=event.invoice_id):
            return False
        await self._timeline(applied, "renewed", renewal_summary(event), now)
        if applied.kind == ENGAGEMENT:
            await self._add_credits(
                event,
                applied.business_id,
                applied.account_id,
                applied.client_id,
                now,
                invoice_id=event.invoice_id,
            )
        else:
            await self.repo.set_entitlement_status(event.order_id, "active", when=("past_due",))
        log.info(
            "subscription_renewal_applied",
            order_id=str(event.order_id),
            invoice_id=event.invoice_id,
            installment=event.installment,
        )
        return True

    async def subscription_payment_failed(self, event: SubscriptionPaymentFailedV1) -> bool:
        """A charge failed: the entitlement is past due (access kept while Stripe
        retries). False when nothing changed."""
        applied = await self._subscription_order(event)
        if applied is None:
            return False
        now = utcnow()
        if not await self._claim(
            event,
            applied,
            "payment_failed",
            now,
            invoice_id=event.invoice_id,
            attempt=event.attempt,
        ):
            return False
        await self._timeline(applied, "payment_failed", payment_failed_summary(event), now)
        # Events can arrive out of order: an invoice already paid is not past due.
        if not await self.repo.subscription_event_applied(
            event.subscription_id, "renewed", event.invoice_id
        ):
            await self.repo.set_entitlement_status(event.order_id, "past_due", when=("active",))
        log.info(
            "subscription_payment_failure_applied",
            order_id=str(event.order_id),
            invoice_id=event.invoice_id,
            attempt=event.attempt,
        )
        return True

    async def subscription_ended(self, event: SubscriptionEndedV1) -> bool:
        """The subscription is over: with ``revoke_access`` its entitlement ends and the
        group place the order made is removed; credits given stay (they were paid for).
        A completed plan keeps its access. False when nothing changed."""
        applied = await self._subscription_order(event)
        if applied is None:
            return False
        now = utcnow()
        if not await self._claim(event, applied, "ended", now):
            return False
        billing = billing_type(event.billing, event.subscription_id, None)
        if applied.billing_type in (RECURRING, PAYMENT_PLAN):
            billing = applied.billing_type
        await self._timeline(applied, "subscription_ended", ended_summary(event, billing), now)
        if event.revoke_access:
            await self.repo.set_entitlement_status(
                event.order_id, "ended", when=("active", "past_due", "group_missing")
            )
            await self._release_group(applied, f"the end of {event.offering_name}", now)
        log.info(
            "subscription_end_applied",
            order_id=str(event.order_id),
            reason=event.reason,
            revoked=event.revoke_access,
        )
        return True

    # -- the buyer's view -----------------------------------------------------------

    async def mine(self, account_id: uuid.UUID) -> schemas.MyPurchases:
        now = utcnow()
        groups: dict[uuid.UUID, schemas.BusinessPurchases] = {}

        def of(business: Business) -> schemas.BusinessPurchases:
            if business.id not in groups:
                groups[business.id] = schemas.BusinessPurchases(
                    business_id=business.id,
                    business_name=business.name,
                    business_slug=business.slug,
                    credits=[],
                    entitlements=[],
                )
            return groups[business.id]

        for credit, business in await self.repo.credits_of(account_id):
            of(business).credits.append(credit_out(credit, now))
        for entitlement, business, billing in await self.repo.entitlements_of(account_id):
            of(business).entitlements.append(
                schemas.EntitlementOut(
                    id=entitlement.id,
                    order_id=entitlement.order_id,
                    offering_id=entitlement.offering_id,
                    offering_name=entitlement.offering_name,
                    kind=entitlement.kind,
                    status=entitlement.status,
                    billing_type=billing or "one_time",
                    purchased_at=entitlement.created_at,
                )
            )
        return schemas.MyPurchases(items=sorted(groups.values(), key=lambda b: b.business_name))
