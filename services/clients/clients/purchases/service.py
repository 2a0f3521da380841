"""The effects of a paid order on the buyer, and the buyer's view of what they bought.

``payments.order_paid.v1`` is applied in the consumer's transaction, once per
order (the ``purchases_applied`` primary key; the inbox already drops a
redelivered event, this also drops a second event for the same order):

1. the buyer's account: by id, else by email; a new one (no password) gets a
   claim link by email (identity's ``account_for_purchase``);
2. the account becomes a client of the business through the client book's one
   way in (source ``purchased``); already a client: nothing new;
3. a ``purchased`` timeline entry naming the offering and the amount;
4. what the kind of offering gives: engagement credits, a group place (through
   the groups domain, so ``clients.group_member_added.v1`` goes out), or an
   entitlement row for the other kinds.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book.service import ClientBook, timeline_row
from clients.groups.service import GroupService
from clients.identity.service import IdentityService
from clients.models import Business, Credit
from clients.purchases import schemas
from clients.purchases.repository import PurchaseRepository
from kit.contracts.payments import OrderPaidV1, OrderRefundedV1
from kit.db import utcnow
from kit.errors import NotFound
from kit.logging import get_logger
from kit.money import amount

log = get_logger(__name__)

ENGAGEMENT = "engagement"
GROUP = "group"


class OrderNotAppliedYet(RuntimeError):
    """A refund for an order whose effects are not applied yet: retried."""


def refund_summary(event: OrderRefundedV1, revoking: bool) -> str:
    text = f"Refunded {amount(event.amount_minor, event.currency)} of {event.offering_name}"
    if not event.full:
        text += f" ({amount(event.refunded_total_minor, event.currency)} refunded in all)"
    if revoking:
        text += "; access revoked"
    return text[:300]


class UnknownBusiness(RuntimeError):
    """The order names a business this service does not have: retried, then dead-lettered."""


def purchase_summary(event: OrderPaidV1) -> str:
    if event.amount_minor <= 0:
        text = f"Got {event.offering_name} for free"
    else:
        text = f"Bought {event.offering_name} for {amount(event.amount_minor, event.currency)}"
    if event.discount_code and event.discount_minor > 0:
        text += (
            f" (discount {event.discount_code}: {amount(event.discount_minor, event.currency)} off)"
        )
    return text


def _credits(details: dict[str, Any]) -> tuple[int, int | None]:
    """(credits, expiry days) of an engagement's details; at least one credit."""
    total = details.get("credits")
    days = details.get("credit_expiry_days")
    count = total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else 1
    expiry = days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else None
    return count, expiry


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
        if event.business_id is None:
            raise UnknownBusiness(f"order {event.order_id} names no business")
        business = await self.book.repo.business(event.business_id)
        if business is None:
            raise UnknownBusiness(f"order {event.order_id}: no business {event.business_id}")
        account = await self.identity.account_for_purchase(
            event.buyer_account_id, event.buyer_email, event.buyer_name, business=business
        )
        created = await self.book.add_clients(business, [account], source="purchased", notify=False)
        client_id = created.get(account.id)
        if client_id is None:
            existing = await self.book.repo.clients_of_accounts(business.id, [account.id])
            client_id = existing[account.id].id
        now = utcnow()
        if not await self.repo.claim_order(
            {
                "order_id": event.order_id,
                "business_id": business.id,
                "account_id": account.id,
                "client_id": client_id,
                "event_id": event.id,
                "offering_id": event.offering_id,
                "kind": event.kind[:20],
                "applied_at": now,
            }
        ):
            log.info("order_already_applied", order_id=str(event.order_id))
            return False
        await self.book.repo.add_timeline(
            [timeline_row(business.id, client_id, "purchased", purchase_summary(event), now)]
        )
        if event.kind == ENGAGEMENT:
            await self._add_credits(event, business, account.id, client_id, now)
        elif event.kind == GROUP:
            await self._join_group(event, business, account.id, client_id, now)
        else:
            await self._entitle(event, business, account.id, client_id, now)
        log.info(
            "order_applied",
            order_id=str(event.order_id),
            business_id=str(business.id),
            account_id=str(account.id),
            kind=event.kind,
        )
        return True

    async def _add_credits(
        self,
        event: OrderPaidV1,
        business: Business,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        now: datetime,
    ) -> None:
        total, expiry_days = _credits(event.details)
        await self.repo.add_credit(
            {
                "id": uuid.uuid4(),
                "business_id": business.id,
                "account_id": account_id,
                "client_id": client_id,
                "order_id": event.order_id,
                "offering_id": event.offering_id,
                "offering_name": event.offering_name[:200],
                "total": total,
                "remaining": total,
                # Counted from the payment, not from when this event happened to arrive.
                "expires_at": event.paid_at + timedelta(days=expiry_days) if expiry_days else None,
                "created_at": now,
            }
        )

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
        await self.repo.add_entitlement(
            {
                "id": uuid.uuid4(),
                "business_id": business.id,
                "account_id": account_id,
                "client_id": client_id,
                "order_id": event.order_id,
                "offering_id": event.offering_id,
                "offering_version_id": event.offering_version_id,
                "kind": event.kind[:20],
                "offering_name": event.offering_name[:200],
                "status": status,
                "created_at": now,
            }
        )

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
            if applied.group_id is not None:
                # A group deleted since took the place with it (NotFound): nothing to do.
                with contextlib.suppress(NotFound):
                    await self.groups.remove_members(
                        applied.business_id,
                        applied.group_id,
                        [applied.client_id],
                        f"a refund of {event.offering_name}",
                    )
        log.info(
            "order_refund_applied",
            order_id=str(event.order_id),
            refund_id=str(event.refund_id),
            revoked=revoked,
        )
        return bool(revoked)

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
        for entitlement, business in await self.repo.entitlements_of(account_id):
            of(business).entitlements.append(
                schemas.EntitlementOut(
                    id=entitlement.id,
                    order_id=entitlement.order_id,
                    offering_id=entitlement.offering_id,
                    offering_name=entitlement.offering_name,
                    kind=entitlement.kind,
                    status=entitlement.status,
                    purchased_at=entitlement.created_at,
                )
            )
        return schemas.MyPurchases(items=sorted(groups.values(), key=lambda b: b.business_name))
