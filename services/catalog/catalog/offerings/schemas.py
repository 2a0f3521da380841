"""Offering input and output.

Field-level rules are here (so FastAPI answers 422 naming the field);
rules that tie fields together (details per kind, free means price 0,
visibility "groups" needs groups) are in :func:`problems`, which the service
runs on every create and edit, and which names the field too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_serializer,
)

from catalog.money import MAX_PRICE_MINOR, normalize_currency
from kit.errors import FieldError
from kit.validation import Name, clean_text

Kind = Literal["appointment", "engagement", "course", "group", "worksheet", "agreement", "package"]
Visibility = Literal["public", "unlisted", "established_only", "groups"]
Interval = Literal["week", "month", "year"]
OfferingName = Annotated[Name, StringConstraints(max_length=120)]
Currency = Annotated[str, StringConstraints(max_length=3), AfterValidator(normalize_currency)]
PriceMinor = Annotated[int, Field(strict=True, ge=0, le=MAX_PRICE_MINOR)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- billing ------------------------------------------------------------------------


class FreeBilling(_Strict):
    type: Literal["free"]


class OneTimeBilling(_Strict):
    type: Literal["one_time"]


class RecurringBilling(_Strict):
    type: Literal["recurring"]
    interval: Interval
    interval_count: int = Field(1, strict=True, ge=1, le=52)


class PaymentPlanBilling(_Strict):
    """``price_minor`` is the amount of one installment."""

    type: Literal["payment_plan"]
    installments: int = Field(strict=True, ge=2, le=60)
    interval: Interval
    interval_count: int = Field(1, strict=True, ge=1, le=52)


Billing = Annotated[
    FreeBilling | OneTimeBilling | RecurringBilling | PaymentPlanBilling,
    Field(discriminator="type"),
]


# -- details per kind ---------------------------------------------------------------


class AppointmentDetails(_Strict):
    """``buffer_minutes``: time kept free after each appointment (no other appointment
    may start in it). ``new_clients_can_self_book`` false: only someone holding an
    applicable credit or an active entitlement of this offering may request it.
    Both are left out of the stored details while at their default, so details
    stored before they existed read the same."""

    duration_minutes: int = Field(strict=True, ge=5, le=1440)
    buffer_minutes: int = Field(0, strict=True, ge=0, le=240)
    new_clients_can_self_book: bool = Field(True, strict=True)

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("buffer_minutes") == 0:
            data.pop("buffer_minutes", None)
        if data.get("new_clients_can_self_book") is True:
            data.pop("new_clients_can_self_book", None)
        return data


class EngagementDetails(_Strict):
    """``appointment_offering_ids``: the appointment offerings its credits may book;
    empty (left out of the stored details) means any appointment offering of the
    business."""

    credits: int = Field(strict=True, ge=1, le=500)
    credit_expiry_days: int | None = Field(None, strict=True, ge=1, le=3650)
    appointment_offering_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)

    @model_serializer(mode="wrap")
    def _without_empty(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("appointment_offering_ids"):
            data.pop("appointment_offering_ids", None)
        else:
            data["appointment_offering_ids"] = list(dict.fromkeys(data["appointment_offering_ids"]))
        return data


class GroupDetails(_Strict):
    group_id: uuid.UUID


class AgreementDetails(_Strict):
    agreement_text: str = Field(min_length=1, max_length=50_000)


class PackageDetails(_Strict):
    includes: list[Annotated[Name, StringConstraints(max_length=200)]] = Field(max_length=50)


Question = Annotated[str, StringConstraints(max_length=500), AfterValidator(clean_text)]


class WorksheetDetails(_Strict):
    """The questions the buyer answers, in order. Optional: a worksheet without questions
    (every worksheet made before there were questions) gets one free-text answer."""

    questions: list[Question] | None = Field(None, min_length=1, max_length=50)

    @model_serializer(mode="wrap")
    def _without_empty(self, handler: Any) -> dict[str, Any]:
        # A worksheet without questions keeps its details as they always were: {}.
        data: dict[str, Any] = handler(self)
        if data.get("questions") is None:
            data.pop("questions", None)
        return data


class NoDetails(_Strict):
    pass


DETAILS: dict[str, type[BaseModel]] = {
    "appointment": AppointmentDetails,
    "engagement": EngagementDetails,
    "course": NoDetails,
    "group": GroupDetails,
    "worksheet": WorksheetDetails,
    "agreement": AgreementDetails,
    "package": PackageDetails,
}


# -- input --------------------------------------------------------------------------


class OfferingIn(_Strict):
    name: OfferingName
    description: str = Field("", max_length=5000)
    kind: Kind
    details: dict[str, Any] = Field(default_factory=dict)
    billing: Billing
    price_minor: PriceMinor
    currency: Currency
    visibility: Visibility = "public"
    group_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    capacity: int | None = Field(None, strict=True, ge=1, le=1_000_000)


class OfferingPatch(_Strict):
    """Only the fields given change; the result must be a valid offering."""

    name: OfferingName | None = None
    description: str | None = Field(None, max_length=5000)
    kind: Kind | None = None
    details: dict[str, Any] | None = None
    billing: Billing | None = None
    price_minor: PriceMinor | None = None
    currency: Currency | None = None
    visibility: Visibility | None = None
    group_ids: list[uuid.UUID] | None = Field(None, max_length=100)
    capacity: int | None = Field(None, strict=True, ge=1, le=1_000_000)

    def changes(self) -> dict[str, Any]:
        dumped = self.model_dump(mode="json")
        return {name: dumped[name] for name in self.model_fields_set}


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    found = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        name = f"{prefix}.{path}" if prefix and path else (prefix or path or "body")
        message = str(err["msg"])
        if err["type"] == "extra_forbidden":
            message = "unknown field; it cannot be set here"
        found.append(FieldError(name, message))
    return found


def problems(offering: OfferingIn) -> tuple[list[FieldError], dict[str, Any]]:
    """Rules across fields; returns the errors and the cleaned details."""
    errors: list[FieldError] = []
    details: dict[str, Any] = {}
    try:
        details = DETAILS[offering.kind].model_validate(offering.details).model_dump(mode="json")
    except ValidationError as exc:
        errors.extend(field_errors(exc, "details"))
    if offering.billing.type == "free":
        if offering.price_minor != 0:
            errors.append(FieldError("price_minor", "must be 0 for a free offering"))
    elif offering.price_minor < 1:
        errors.append(FieldError("price_minor", "must be at least 1 unless billing is free"))
    if offering.visibility == "groups" and not offering.group_ids:
        errors.append(FieldError("group_ids", "name at least one group for visibility 'groups'"))
    if offering.visibility != "groups" and offering.group_ids:
        errors.append(FieldError("group_ids", "only offerings visible to groups name groups"))
    return errors, details


# -- output -------------------------------------------------------------------------


class VersionFields(BaseModel):
    name: str
    description: str
    kind: str
    details: dict[str, Any]
    billing: dict[str, Any]
    price_minor: int
    currency: str
    visibility: str
    group_ids: list[uuid.UUID]
    capacity: int | None
    # What a buyer reads ("$30.00 / month"), so no client has to format prices itself.
    price_label: str


class OfferingOut(VersionFields):
    id: uuid.UUID
    business_id: uuid.UUID
    status: str
    version: int
    version_id: uuid.UUID
    spots_left: int | None
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


class OfferingList(BaseModel):
    items: list[OfferingOut]


class OfferingVersionOut(VersionFields):
    id: uuid.UUID
    offering_id: uuid.UUID
    business_id: uuid.UUID
    version: int
    created_at: datetime
    published_at: datetime | None


class VersionList(BaseModel):
    items: list[OfferingVersionOut]
