"""A quote: what this viewer would pay for an offering's newest version today.

Refusals carry a ``reason``: ``not_found`` / ``not_published`` (404),
``login_required``, ``not_a_client``, ``not_in_group``, ``sold_out`` (403), and
the discount reasons (422 naming ``discount_code``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.discounts.service import DiscountService, amount_off
from catalog.eligibility.service import NOT_FOUND, SOLD_OUT, Eligibility, refusal
from catalog.offerings.repository import OfferingRepository
from catalog.offerings.service import spots_left
from catalog.quotes import schemas
from catalog.refusals import refused
from kit.auth import Principal

DETAILS = {
    "not_found": "No such offering.",
    "not_published": "This offering is not on sale.",
    "login_required": "Log in to buy this offering.",
    "not_a_client": "This offering is for established clients.",
    "not_in_group": "This offering is for members of a group.",
    "sold_out": "This offering is sold out.",
}


@dataclass
class QuoteService:
    session: AsyncSession
    offerings: OfferingRepository = field(init=False)
    eligibility: Eligibility = field(init=False)
    discounts: DiscountService = field(init=False)

    def __post_init__(self) -> None:
        self.offerings = OfferingRepository(self.session)
        self.eligibility = Eligibility(self.session)
        self.discounts = DiscountService(self.session)

    async def quote(self, body: schemas.QuoteIn, viewer: Principal | None) -> schemas.QuoteOut:
        found = await self.offerings.offering_anywhere(body.offering_id)
        if found is None:
            raise refused(NOT_FOUND, DETAILS[NOT_FOUND])
        offering, version = found
        business_id = offering.business_id  # everything below is within this business
        standing = await self.eligibility.standing(business_id, viewer)
        reason = refusal(offering.status, version.visibility, version.group_ids, standing)
        if reason is not None:
            raise refused(reason, DETAILS[reason], login_status=403)
        if spots_left(offering, version) == 0:
            raise refused(SOLD_OUT, DETAILS[SOLD_OUT])
        discount = None
        code_text = (body.discount_code or "").strip()
        if code_text:
            code = await self.discounts.applicable(
                business_id,
                code_text,
                offering_id=offering.id,
                currency=version.currency,
                account_id=None if viewer is None else viewer.account_id,
            )
            discount = schemas.DiscountOut(
                code=code.code, amount_off_minor=amount_off(code, version.price_minor)
            )
        known = (await self.eligibility.repo.businesses([business_id])).get(business_id)
        return schemas.QuoteOut(
            offering_id=offering.id,
            business_id=business_id,
            business_name=None if known is None else known.name,
            version_id=version.id,
            version=version.version,
            name=version.name,
            kind=version.kind,
            details=dict(version.details),
            billing=dict(version.billing),
            currency=version.currency,
            price_minor=version.price_minor,
            discount=discount,
            total_minor=version.price_minor - (discount.amount_off_minor if discount else 0),
        )
