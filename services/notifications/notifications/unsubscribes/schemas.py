from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from notifications.unsubscribes.tokens import MAX_TOKEN_LENGTH


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class UnsubscribeStatus(BaseModel):
    # Null when the business is not known here (its creation event has not arrived).
    business_name: str | None
    email: str
    unsubscribed: bool
