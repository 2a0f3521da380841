"""Discount codes: create, list, delete, and what a code takes off a price.

Codes match case-insensitively and are unique per business among live codes
(a deleted code's name can be used again). Redemptions are counted in their
own table; payments records them when a purchase uses a code.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.discounts import schemas
from catalog.discounts.repository import DiscountRepository
from catalog.models import DiscountCode
from catalog.offerings.repository import OfferingRepository
from catalog.refusals import discount_refused
from kit.db import utcnow
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.money import amount

DISCOUNT_UNKNOWN = "discount_unknown"
DISCOUNT_EXPIRED = "discount_expired"
DISCOUNT_EXHAUSTED = "discount_exhausted"
DISCOUNT_NOT_FOR_OFFERING = "discount_not_for_offering"
DISCOUNT_PER_CLIENT_LIMIT = "discount_per_client_limit"


def code_key(code: str) -> str:
    return code.strip().casefold()


def amount_off(code: DiscountCode, price_minor: int) -> int:
    """What the code takes off ``price_minor`` (never more than the price)."""
    if code.percent_off is not None:
        off = (price_minor * code.percent_off + 50) // 100  # half up, in minor units
    else:
        off = code.amount_off_minor or 0
    return min(off, price_minor)


def _out(code: DiscountCode, redemptions: int) -> schemas.DiscountCodeOut:
    return schemas.DiscountCodeOut(
        id=code.id,
        business_id=code.business_id,
        code=code.code,
        percent_off=code.percent_off,
        amount_off_minor=code.amount_off_minor,
        currency=code.currency,
        expires_at=code.expires_at,
        max_redemptions=code.max_redemptions,
        max_per_client=code.max_per_client,
        offering_ids=[uuid.UUID(str(o)) for o in code.offering_ids],
        redemptions=redemptions,
        created_at=code.created_at,
        label=(
            f"{code.percent_off}% off"
            if code.percent_off
            else f"{amount(code.amount_off_minor or 0, code.currency or 'USD')} off"
        ),
    )


@dataclass
class DiscountService:
    session: AsyncSession
    repo: DiscountRepository = field(init=False)
    offerings: OfferingRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = DiscountRepository(self.session)
        self.offerings = OfferingRepository(self.session)

    async def list(self, business_id: uuid.UUID) -> schemas.DiscountCodeList:
        rows = await self.repo.codes_with_counts(business_id)
        return schemas.DiscountCodeList(items=[_out(c, n) for c, n in rows])

    async def create(
        self, business_id: uuid.UUID, body: schemas.DiscountCodeIn
    ) -> schemas.DiscountCodeOut:
        now = utcnow()
        errors: list[FieldError] = []
        if (body.percent_off is None) == (body.amount_off_minor is None):
            errors.append(
                FieldError("percent_off", "give either percent_off or amount_off_minor, not both")
            )
        if body.amount_off_minor is not None and body.currency is None:
            errors.append(FieldError("currency", "an amount off needs its currency"))
        if body.percent_off is not None and body.currency is not None:
            errors.append(FieldError("currency", "a percentage off has no currency"))
        if body.expires_at is not None and body.expires_at <= now:
            errors.append(FieldError("expires_at", "must be in the future"))
        wanted = list(dict.fromkeys(body.offering_ids))
        known = await self.offerings.existing_ids(business_id, wanted)
        unknown = [str(o) for o in wanted if o not in known]
        if unknown:
            errors.append(
                FieldError("offering_ids", f"not offerings of this business: {', '.join(unknown)}")
            )
        if errors:
            raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
        code = DiscountCode(
            id=uuid.uuid4(),
            business_id=business_id,
            code=body.code,
            code_key=code_key(body.code),
            percent_off=body.percent_off,
            amount_off_minor=body.amount_off_minor,
            currency=body.currency,
            expires_at=body.expires_at,
            max_redemptions=body.max_redemptions,
            max_per_client=body.max_per_client,
            offering_ids=[str(o) for o in wanted],
            created_at=now,
        )
        if not await self.repo.insert(code):
            raise Conflict(f"There is already a code “{body.code}”.", field="code")
        return _out(code, 0)

    async def delete(self, business_id: uuid.UUID, code_id: uuid.UUID) -> None:
        code = await self.repo.code(business_id, code_id)
        if code is None:
            raise NotFound("No such discount code.")
        await self.repo.mark_deleted(code, utcnow())

    async def applicable(
        self,
        business_id: uuid.UUID,
        code_text: str,
        *,
        offering_id: uuid.UUID,
        currency: str,
        account_id: uuid.UUID | None,
        now: datetime | None = None,
    ) -> DiscountCode:
        """The business's live code for ``code_text`` if it applies to this purchase;
        otherwise a 422 refusal naming ``discount_code`` with the reason."""
        now = now or utcnow()
        # Text no code can be (a NUL byte even fails in PostgreSQL) is simply unknown.
        well_formed = re.fullmatch(schemas.CODE_PATTERN, code_text) is not None
        code = await self.repo.by_key(business_id, code_key(code_text)) if well_formed else None
        if code is None:
            raise discount_refused(DISCOUNT_UNKNOWN, "There is no such discount code.")
        if code.expires_at is not None and code.expires_at <= now:
            raise discount_refused(DISCOUNT_EXPIRED, "This discount code has expired.")
        offerings = {str(o) for o in code.offering_ids}
        if (offerings and str(offering_id) not in offerings) or (
            code.currency is not None and code.currency != currency
        ):
            raise discount_refused(
                DISCOUNT_NOT_FOR_OFFERING, "This discount code does not apply to this offering."
            )
        if (
            code.max_redemptions is not None
            and await self.repo.redemptions(business_id, code.id) >= code.max_redemptions
        ):
            raise discount_refused(DISCOUNT_EXHAUSTED, "This discount code has been used up.")
        if code.max_per_client is not None and account_id is not None:
            used = await self.repo.redemptions(business_id, code.id, account_id)
            if used >= code.max_per_client:
                raise discount_refused(
                    DISCOUNT_PER_CLIENT_LIMIT, "You have already used this discount code."
                )
        return code
