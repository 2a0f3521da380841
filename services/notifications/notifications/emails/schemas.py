from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

EmailStatus = Literal["queued", "sending", "sent", "failed"]


class EmailOut(BaseModel):
    """An email as the log shows it: never its body (it may hold a login link)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    template: str
    recipient: str
    subject: str
    status: EmailStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class EmailPage(BaseModel):
    items: list[EmailOut]
    total: int
    limit: int
    offset: int
