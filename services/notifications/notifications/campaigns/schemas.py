from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from kit.validation import clean_text

CampaignStatus = Literal["draft", "sent"]
AudienceKind = Literal["all", "group"]

# Control characters other than tab and line breaks have no place in an email body.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _body(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if _BODY_CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# One line each: the subject becomes a header, the code sits in a box.
Subject = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=20000), AfterValidator(_body)]
Code = Annotated[str, StringConstraints(max_length=64), AfterValidator(clean_text)]
DiscountCode = Annotated[Code | None, BeforeValidator(_blank_is_none)]


class Input(BaseModel):
    # Unknown fields are refused: nobody may slip in a status, counts or another business.
    model_config = ConfigDict(extra="forbid")


class AudienceIn(Input):
    """``{"kind": "all"}``: every active client; ``{"kind": "group", "group_id": ...}``:
    the active clients in that group."""

    # group_id's check runs even when it is left out.
    model_config = ConfigDict(validate_default=True)

    kind: AudienceKind
    group_id: uuid.UUID | None = None

    @field_validator("group_id", mode="after")
    @classmethod
    def _group_id_with_group_only(
        cls, value: uuid.UUID | None, info: ValidationInfo
    ) -> uuid.UUID | None:
        kind = info.data.get("kind")
        if kind == "group" and value is None:
            raise ValueError("a group audience needs a group_id")
        if kind == "all" and value is not None:
            raise ValueError("only a group audience has a group_id")
        return value


class CampaignCreate(Input):
    subject: Subject
    body_markdown: Body
    discount_code: DiscountCode = None
    audience: AudienceIn


class CampaignUpdate(Input):
    """Only the fields given change. ``discount_code: null`` removes the code; the others
    cannot be null (an explicit null is refused, since their type is not optional)."""

    subject: Subject = None  # type: ignore[assignment]
    body_markdown: Body = None  # type: ignore[assignment]
    discount_code: DiscountCode = None
    audience: AudienceIn = None  # type: ignore[assignment]


class AudienceOut(BaseModel):
    kind: AudienceKind
    group_id: uuid.UUID | None
    # The group's current name; null when it is not known (yet).
    group_name: str | None


class Counts(BaseModel):
    """From the campaign's emails (``queued`` includes those being sent), and the
    addresses left out at sending because they had unsubscribed."""

    recipients: int
    queued: int
    sent: int
    failed: int
    unsubscribed: int


class CampaignOut(BaseModel):
    id: uuid.UUID
    subject: str
    body_markdown: str
    discount_code: str | None
    audience: AudienceOut
    status: CampaignStatus
    created_at: datetime
    sent_at: datetime | None
    counts: Counts


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    total: int
    limit: int
    offset: int


class CampaignPreview(BaseModel):
    """The email as a sample recipient would get it, and who would get it now."""

    subject: str
    html: str
    text: str
    recipient_count: int
    unsubscribed_count: int
