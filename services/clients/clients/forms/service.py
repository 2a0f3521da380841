"""Agreements to sign and worksheets to fill, bought as entitlements.

What the buyer signs or answers is the entitlement's ``details``: the snapshot of the
offering version they bought, kept when the order was applied (``purchases``), never
what the catalog says now. So an agreement's text is the exact text that was sold, and
a signature records that text, its SHA-256, the version, the typed name and the time.

- Only the entitlement's own account reads or writes it; anyone else (another buyer,
  the business's own coach on these ``/me`` endpoints) gets 404.
- An agreement is signed once: the unique entitlement in ``agreement_signatures``
  settles a second or concurrent signature (409).
- A worksheet's answers are one row, replaced as the buyer saves again; one answer per
  question, each at most 5,000 characters. A worksheet without questions has one
  free-text question.
- A revoked (refunded) or ended entitlement can no longer be signed or answered (409);
  what was signed or answered stays readable.
- The first signature and the first save each add one timeline entry for the coach.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book.repository import BookRepository
from clients.book.service import timeline_row
from clients.forms import schemas
from clients.forms.repository import FormRepository
from clients.models import AgreementSignature, Business, Entitlement, WorksheetAnswers
from kit.db import utcnow
from kit.errors import Conflict, InvalidInput, NotFound
from kit.logging import get_logger

log = get_logger(__name__)

AGREEMENT = "agreement"
WORKSHEET = "worksheet"
# Statuses that still give access (past due: while Stripe retries the payment).
OPEN = ("active", "past_due")
FREE_TEXT_QUESTION = "Your answers"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def agreement_text(entitlement: Entitlement) -> str | None:
    text = (entitlement.details or {}).get("agreement_text")
    return text if isinstance(text, str) and text else None


def questions_of(entitlement: Entitlement) -> list[str]:
    """The worksheet's questions as bought; one free-text question when it has none."""
    questions = (entitlement.details or {}).get("questions")
    if isinstance(questions, list):
        found = [q for q in questions if isinstance(q, str) and q]
        if found:
            return found
    return [FREE_TEXT_QUESTION]


def signature_out(signature: AgreementSignature | None) -> schemas.SignatureOut | None:
    if signature is None:
        return None
    return schemas.SignatureOut(
        signed_name=signature.signed_name,
        signed_at=signature.signed_at,
        offering_version_id=signature.offering_version_id,
        text_sha256=signature.text_sha256,
    )


def answers_out(
    questions: list[str], saved: WorksheetAnswers | None
) -> list[schemas.QuestionAnswer]:
    if saved is not None:
        return [
            schemas.QuestionAnswer(
                question=str(a.get("question", "")), answer=str(a.get("answer", ""))
            )
            for a in saved.answers
            if isinstance(a, dict)
        ]
    return [schemas.QuestionAnswer(question=q, answer="") for q in questions]


@dataclass
class FormService:
    session: AsyncSession
    repo: FormRepository = field(init=False)
    book: BookRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = FormRepository(self.session)
        self.book = BookRepository(self.session)

    async def _mine(
        self, account_id: uuid.UUID, entitlement_id: uuid.UUID, kind: str
    ) -> tuple[Entitlement, Business]:
        found = await self.repo.entitlement(entitlement_id)
        if found is None or found[0].account_id != account_id or found[0].kind != kind:
            raise NotFound(f"No such {kind}.")
        return found

    @staticmethod
    def _open(entitlement: Entitlement, what: str) -> None:
        if entitlement.status not in OPEN:
            raise Conflict(
                f"This {what} is no longer available: access to it ended ({entitlement.status}).",
                reason="access_ended",
            )

    # -- agreements -------------------------------------------------------------------

    async def agreement(
        self, account_id: uuid.UUID, entitlement_id: uuid.UUID
    ) -> schemas.AgreementOut:
        entitlement, business = await self._mine(account_id, entitlement_id, AGREEMENT)
        return self._agreement_out(entitlement, business, await self.repo.signature(entitlement.id))

    @staticmethod
    def _agreement_out(
        entitlement: Entitlement, business: Business, signature: AgreementSignature | None
    ) -> schemas.AgreementOut:
        text = agreement_text(entitlement)
        return schemas.AgreementOut(
            entitlement_id=entitlement.id,
            business_id=business.id,
            business_name=business.name,
            offering_id=entitlement.offering_id,
            offering_name=entitlement.offering_name,
            offering_version_id=entitlement.offering_version_id,
            text=text,
            text_sha256=text_sha256(text) if text else None,
            status=entitlement.status,
            can_sign=signature is None and text is not None and entitlement.status in OPEN,
            signature=signature_out(signature),
            signed_text=signature.text if signature else None,
        )

    async def sign(
        self, account_id: uuid.UUID, entitlement_id: uuid.UUID, body: schemas.SignIn
    ) -> schemas.AgreementOut:
        entitlement, business = await self._mine(account_id, entitlement_id, AGREEMENT)
        if await self.repo.signature(entitlement.id) is not None:
            raise Conflict("This agreement is signed already.", reason="already_signed")
        self._open(entitlement, AGREEMENT)
        text = agreement_text(entitlement)
        if text is None:
            raise Conflict(
                "The text of this agreement was not kept with the purchase; "
                "ask your coach for a new one.",
                reason="agreement_text_unknown",
            )
        now = utcnow()
        signed = await self.repo.add_signature(
            {
                "id": uuid.uuid4(),
                "entitlement_id": entitlement.id,
                "business_id": entitlement.business_id,
                "account_id": account_id,
                "signed_name": body.name,
                "signed_at": now,
                "offering_version_id": entitlement.offering_version_id,
                "text_sha256": text_sha256(text),
                "text": text,
            }
        )
        if not signed:  # a concurrent signature got there first
            raise Conflict("This agreement is signed already.", reason="already_signed")
        await self.book.add_timeline(
            [
                timeline_row(
                    entitlement.business_id,
                    entitlement.client_id,
                    "agreement_signed",
                    f"Signed agreement {entitlement.offering_name}",
                    now,
                )
            ]
        )
        log.info("agreement_signed", entitlement_id=str(entitlement.id))
        return self._agreement_out(entitlement, business, await self.repo.signature(entitlement.id))

    # -- worksheets -------------------------------------------------------------------

    async def worksheet(
        self, account_id: uuid.UUID, entitlement_id: uuid.UUID
    ) -> schemas.WorksheetOut:
        entitlement, business = await self._mine(account_id, entitlement_id, WORKSHEET)
        return self._worksheet_out(entitlement, business, await self.repo.answers(entitlement.id))

    @staticmethod
    def _worksheet_out(
        entitlement: Entitlement, business: Business, saved: WorksheetAnswers | None
    ) -> schemas.WorksheetOut:
        questions = questions_of(entitlement)
        return schemas.WorksheetOut(
            entitlement_id=entitlement.id,
            business_id=business.id,
            business_name=business.name,
            offering_id=entitlement.offering_id,
            offering_name=entitlement.offering_name,
            offering_version_id=entitlement.offering_version_id,
            questions=questions,
            answers=answers_out(questions, saved),
            submitted_at=saved.submitted_at if saved else None,
            updated_at=saved.updated_at if saved else None,
            status=entitlement.status,
            can_edit=entitlement.status in OPEN,
        )

    async def save_answers(
        self, account_id: uuid.UUID, entitlement_id: uuid.UUID, body: schemas.AnswersIn
    ) -> schemas.WorksheetOut:
        entitlement, business = await self._mine(account_id, entitlement_id, WORKSHEET)
        questions = questions_of(entitlement)
        if len(body.answers) != len(questions):
            raise InvalidInput.for_field(
                "answers",
                f"give one answer per question: {len(questions)} expected, "
                f"{len(body.answers)} given",
            )
        if not any(body.answers):
            raise InvalidInput.for_field("answers", "answer at least one question")
        self._open(entitlement, WORKSHEET)
        now = utcnow()
        answers: list[dict[str, Any]] = [
            {"question": q, "answer": a} for q, a in zip(questions, body.answers, strict=True)
        ]
        first = await self.repo.save_answers(
            {
                "id": uuid.uuid4(),
                "entitlement_id": entitlement.id,
                "business_id": entitlement.business_id,
                "account_id": account_id,
                "answers": answers,
                "submitted_at": now,
                "updated_at": now,
            },
            now,
        )
        if first:
            await self.book.add_timeline(
                [
                    timeline_row(
                        entitlement.business_id,
                        entitlement.client_id,
                        "worksheet_submitted",
                        f"Submitted worksheet {entitlement.offering_name}",
                        now,
                    )
                ]
            )
        log.info("worksheet_saved", entitlement_id=str(entitlement.id), first=first)
        return self._worksheet_out(entitlement, business, await self.repo.answers(entitlement.id))

    # -- lists --------------------------------------------------------------------------

    async def mine(self, account_id: uuid.UUID) -> schemas.MyForms:
        return schemas.MyForms(
            items=[
                schemas.FormSummary(
                    entitlement_id=entitlement.id,
                    business_id=business.id,
                    business_name=business.name,
                    offering_name=entitlement.offering_name,
                    kind=entitlement.kind,
                    status=entitlement.status,
                    signed_name=signature.signed_name if signature else None,
                    signed_at=signature.signed_at if signature else None,
                    submitted_at=saved.submitted_at if saved else None,
                    updated_at=saved.updated_at if saved else None,
                )
                for entitlement, business, signature, saved in await self.repo.forms_of_account(
                    account_id
                )
            ]
        )

    async def of_client(self, business_id: uuid.UUID, client_id: uuid.UUID) -> schemas.ClientForms:
        """A client's agreements and worksheets, for the business's coach."""
        if await self.book.client(business_id, client_id) is None:
            raise NotFound("No such client.")
        agreements, worksheets = [], []
        for entitlement, _business, signature, saved in await self.repo.forms_of_client(
            business_id, client_id
        ):
            if entitlement.kind == AGREEMENT:
                agreements.append(
                    schemas.ClientAgreement(
                        entitlement_id=entitlement.id,
                        offering_name=entitlement.offering_name,
                        offering_version_id=entitlement.offering_version_id,
                        status=entitlement.status,
                        signature=signature_out(signature),
                        signed_text=signature.text if signature else None,
                    )
                )
            else:
                worksheets.append(
                    schemas.ClientWorksheet(
                        entitlement_id=entitlement.id,
                        offering_name=entitlement.offering_name,
                        offering_version_id=entitlement.offering_version_id,
                        status=entitlement.status,
                        answers=answers_out([], saved) if saved else [],
                        submitted_at=saved.submitted_at if saved else None,
                        updated_at=saved.updated_at if saved else None,
                    )
                )
        return schemas.ClientForms(agreements=agreements, worksheets=worksheets)
