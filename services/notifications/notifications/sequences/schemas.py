"""Input and output of the sequences API (input refuses unknown fields)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from kit.validation import clean_text
from notifications.campaigns.schemas import Body

DelayFrom = Literal["start", "previous"]
Action = Literal["email", "assign_worksheet", "request_agreement", "add_to_group"]
StepStatus = Literal["pending", "done", "skipped", "stopped"]
RunStatus = Literal["active", "completed", "stopped"]

# Two years: a longer wait is a typo.
MAX_DELAY_MINUTES = 2 * 366 * 24 * 60
MAX_STEPS = 50

Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]
Subject = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]

# Which target field each action needs (the others must be left out).
TARGETS: dict[str, str | None] = {
    "email": None,
    "assign_worksheet": "worksheet_offering_id",
    "request_agreement": "agreement_offering_id",
    "add_to_group": "group_id",
}


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepIn(Input):
    """One step. ``delay_from`` "start": ``delay_minutes`` after the run started (the
    order was paid); "previous": after the previous step was due."""

    id: uuid.UUID | None = None  # keep an existing step's id when editing
    delay_minutes: int = Field(ge=0, le=MAX_DELAY_MINUTES)
    delay_from: DelayFrom = "previous"
    action: Action
    email_subject: Subject | None = None
    email_body_markdown: Body | None = None
    worksheet_offering_id: uuid.UUID | None = None
    agreement_offering_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _fields_of_the_action(self) -> StepIn:
        if self.action == "email":
            if self.email_subject is None:
                raise ValueError("an email step needs email_subject")
            if self.email_body_markdown is None:
                raise ValueError("an email step needs email_body_markdown")
        elif self.email_subject is not None or self.email_body_markdown is not None:
            raise ValueError("only an email step has email_subject and email_body_markdown")
        wanted = TARGETS[self.action]
        for name in ("worksheet_offering_id", "agreement_offering_id", "group_id"):
            given = getattr(self, name) is not None
            if name == wanted and not given:
                raise ValueError(f"a {self.action} step needs {name}")
            if name != wanted and given:
                raise ValueError(f"a {self.action} step has no {name}")
        return self

    @property
    def target_offering_id(self) -> uuid.UUID | None:
        return self.worksheet_offering_id or self.agreement_offering_id


class SequenceIn(Input):
    name: Name
    offering_id: uuid.UUID | None = None
    stop_on_refund: bool = False
    stop_on_subscription_end: bool = False
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)


class StepOut(BaseModel):
    id: uuid.UUID
    position: int
    delay_minutes: int
    delay_from: DelayFrom
    action: Action
    email_subject: str | None
    email_body_markdown: str | None
    worksheet_offering_id: uuid.UUID | None
    agreement_offering_id: uuid.UUID | None
    group_id: uuid.UUID | None
    # The target's name as this service knows it (offerings and groups read models).
    target_name: str | None


class RunCounts(BaseModel):
    active: int = 0
    completed: int = 0
    stopped: int = 0


class SequenceOut(BaseModel):
    id: uuid.UUID
    name: str
    offering_id: uuid.UUID | None
    offering_name: str | None
    stop_on_refund: bool
    stop_on_subscription_end: bool
    steps: list[StepOut]
    runs: RunCounts
    created_at: datetime
    updated_at: datetime


class SequenceList(BaseModel):
    items: list[SequenceOut]


class StepRunOut(BaseModel):
    step_id: uuid.UUID
    position: int
    action: Action
    label: str
    due_at: datetime
    status: StepStatus
    # pending and due_at passed: the runner takes it on its next round.
    overdue: bool
    done_at: datetime | None
    attempts: int
    last_error: str | None


class RunOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    client_name: str
    client_email: str
    client_account_id: uuid.UUID | None
    started_at: datetime
    status: RunStatus
    stopped_at: datetime | None
    stop_reason: str | None
    steps: list[StepRunOut]


class RunPage(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int
