"""Input and output of forms: agreements to sign and worksheets to fill."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from clients.identity.schemas import Input
from kit.validation import Name

MAX_ANSWER = 5000
# Line breaks and tabs are part of an answer; other control characters are not.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_answer(value: str) -> str:
    """Free text of several lines: NFC, line breaks as \\n, trimmed; may be empty."""
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Answer = Annotated[str, StringConstraints(max_length=MAX_ANSWER), AfterValidator(clean_answer)]


class SignIn(Input):
    """The buyer's full name, typed: that is the signature."""

    name: Name


class AnswersIn(Input):
    """One answer per question, in the worksheet's order (an answer may be empty, not all)."""

    answers: list[Answer] = Field(min_length=1, max_length=50)


class SignatureOut(BaseModel):
    signed_name: str
    signed_at: datetime
    offering_version_id: uuid.UUID
    text_sha256: str


class AgreementOut(BaseModel):
    entitlement_id: uuid.UUID
    business_id: uuid.UUID
    business_name: str
    offering_id: uuid.UUID
    offering_name: str
    # The version bought: the text is that version's, whatever the offering says now.
    offering_version_id: uuid.UUID
    text: str | None  # None: bought before the text was kept here (cannot be signed)
    text_sha256: str | None
    status: str  # the entitlement's
    can_sign: bool
    signature: SignatureOut | None
    # What was signed (the same as text, kept with the signature).
    signed_text: str | None = None


class QuestionAnswer(BaseModel):
    question: str
    answer: str


class WorksheetOut(BaseModel):
    entitlement_id: uuid.UUID
    business_id: uuid.UUID
    business_name: str
    offering_id: uuid.UUID
    offering_name: str
    offering_version_id: uuid.UUID
    questions: list[str]
    # Saved answers, one per question (empty strings until saved).
    answers: list[QuestionAnswer]
    submitted_at: datetime | None
    updated_at: datetime | None
    status: str
    can_edit: bool


class FormSummary(BaseModel):
    """An agreement or worksheet the caller bought, and whether it is signed / answered."""

    entitlement_id: uuid.UUID
    business_id: uuid.UUID
    business_name: str
    offering_name: str
    kind: str  # agreement | worksheet
    status: str
    signed_name: str | None = None
    signed_at: datetime | None = None
    submitted_at: datetime | None = None
    updated_at: datetime | None = None


class MyForms(BaseModel):
    items: list[FormSummary]


class ClientAgreement(BaseModel):
    entitlement_id: uuid.UUID
    offering_name: str
    offering_version_id: uuid.UUID
    status: str
    signature: SignatureOut | None
    signed_text: str | None


class ClientWorksheet(BaseModel):
    entitlement_id: uuid.UUID
    offering_name: str
    offering_version_id: uuid.UUID
    status: str
    answers: list[QuestionAnswer]
    submitted_at: datetime | None
    updated_at: datetime | None


class ClientForms(BaseModel):
    """A client's agreements (signed or not) and worksheets (answered or not), for the coach."""

    agreements: list[ClientAgreement]
    worksheets: list[ClientWorksheet]
