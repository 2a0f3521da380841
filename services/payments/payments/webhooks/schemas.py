from __future__ import annotations

from pydantic import BaseModel


class WebhookReceived(BaseModel):
    received: bool = True
