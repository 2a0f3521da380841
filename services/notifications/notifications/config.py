from __future__ import annotations

import re
from email.utils import parseaddr
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings, shared

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")
    service_name: ClassVar[str] = "notifications"

    database_url: str = "sqlite+aiosqlite:///var/notifications.db"
    port: int = 8102

    # The mail server (the same for every process that sends mail, hence unprefixed).
    smtp_host: str = shared("localhost", "SMTP_HOST")
    smtp_port: int = shared(1025, "SMTP_PORT")
    smtp_username: str = shared("", "SMTP_USERNAME")
    smtp_password: SecretStr = shared(SecretStr(""), "SMTP_PASSWORD")
    smtp_starttls: bool = shared(False, "SMTP_STARTTLS")
    smtp_timeout: float = shared(10.0, "SMTP_TIMEOUT")
    mail_from: str = shared("Clientele <no-reply@clientele.localhost>", "MAIL_FROM")

    # Delivery: a refused or failed attempt is retried with exponential backoff.
    email_max_attempts: int = 30
    email_retry_base_seconds: float = 2.0
    email_retry_max_seconds: float = 600
    sender_batch_size: int = 50
    sender_poll_interval: float = 0.2
    # How long a claimed email stays reserved for the sender that claimed it: a sender that
    # died is replaced after this long (its claimed, unsent emails are then sent by another).
    sender_lease_seconds: float = Field(120, gt=0)

    # Sequences: how often the worker looks for due steps, and how many it takes a round.
    sequence_poll_seconds: float = Field(5.0, gt=0)
    sequence_batch_size: int = Field(50, ge=1)

    # How receipts write amounts and dates ("$120.00", "March 1, 2026").
    price_locale: str = "en_US"

    @field_validator("mail_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        # It becomes the From header and the envelope sender: one plain address, one line.
        if _CONTROL.search(value) or "@" not in parseaddr(value)[1]:
            raise ValueError("MAIL_FROM must be one address, e.g. 'Clientele <no-reply@host>'")
        return value

    @property
    def mail_from_address(self) -> str:
        """The addr-spec of MAIL_FROM, used as the envelope sender."""
        return parseaddr(self.mail_from)[1]
