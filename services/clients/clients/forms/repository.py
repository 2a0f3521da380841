"""Every query of forms: agreements to sign and worksheets to fill."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import AgreementSignature, Business, Entitlement, WorksheetAnswers
from kit.db import insert_ignoring_conflicts

FORM_KINDS = ("agreement", "worksheet")

FormRow = tuple[Entitlement, Business, AgreementSignature | None, WorksheetAnswers | None]


class FormRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    async def entitlement(self, entitlement_id: uuid.UUID) -> tuple[Entitlement, Business] | None:
        result = await self.session.execute(
            select(Entitlement, Business)
            .join(Business, Business.id == Entitlement.business_id)
            .where(Entitlement.id == entitlement_id)
        )
        row = result.first()
        return (row[0], row[1]) if row else None

    async def signature(self, entitlement_id: uuid.UUID) -> AgreementSignature | None:
        result = await self.session.execute(
            select(AgreementSignature).where(AgreementSignature.entitlement_id == entitlement_id)
        )
        return result.scalar_one_or_none()

    async def add_signature(self, values: dict[str, Any]) -> bool:
        """Record the signature; False when the agreement was signed already (the unique
        entitlement settles two signatures at once: one wins)."""
        statement = insert_ignoring_conflicts(
            self._dialect,
            AgreementSignature.__table__,  # type: ignore[arg-type]
            ["entitlement_id"],
        ).returning(AgreementSignature.__table__.c.id)
        return (await self.session.execute(statement, [values])).first() is not None

    async def answers(self, entitlement_id: uuid.UUID) -> WorksheetAnswers | None:
        result = await self.session.execute(
            select(WorksheetAnswers).where(WorksheetAnswers.entitlement_id == entitlement_id)
        )
        return result.scalar_one_or_none()

    async def save_answers(self, values: dict[str, Any], now: datetime) -> bool:
        """Insert the answers, or replace the saved ones. True when this was the first save."""
        statement = insert_ignoring_conflicts(
            self._dialect,
            WorksheetAnswers.__table__,  # type: ignore[arg-type]
            ["entitlement_id"],
        ).returning(WorksheetAnswers.__table__.c.id)
        if (await self.session.execute(statement, [values])).first() is not None:
            return True
        await self.session.execute(
            update(WorksheetAnswers)
            .where(WorksheetAnswers.entitlement_id == values["entitlement_id"])
            .values(answers=values["answers"], updated_at=now)
        )
        return False

    async def _forms(self, *where: Any) -> Sequence[FormRow]:
        result = await self.session.execute(
            select(Entitlement, Business, AgreementSignature, WorksheetAnswers)
            .join(Business, Business.id == Entitlement.business_id)
            .outerjoin(AgreementSignature, AgreementSignature.entitlement_id == Entitlement.id)
            .outerjoin(WorksheetAnswers, WorksheetAnswers.entitlement_id == Entitlement.id)
            .where(Entitlement.kind.in_(FORM_KINDS), *where)
            .order_by(Entitlement.created_at.desc(), Entitlement.id)
        )
        return [(e, b, s, a) for e, b, s, a in result.all()]

    async def forms_of_account(self, account_id: uuid.UUID) -> Sequence[FormRow]:
        """The account's agreements and worksheets in every business, newest first."""
        return await self._forms(Entitlement.account_id == account_id)

    async def forms_of_client(
        self, business_id: uuid.UUID, client_id: uuid.UUID
    ) -> Sequence[FormRow]:
        return await self._forms(
            Entitlement.business_id == business_id, Entitlement.client_id == client_id
        )
