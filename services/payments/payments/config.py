from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore")
    service_name: ClassVar[str] = "payments"

    database_url: str = "sqlite+aiosqlite:///var/payments.db"
    port: int = 8104

    # Stripe. An empty api base means the real Stripe; locally it is localstripe's address.
    stripe_api_key: str = ""
    stripe_publishable_key: str = ""
    stripe_api_base: str = ""
    # Empty refuses every webhook (nothing unsigned is ever accepted).
    stripe_webhook_secret: str = ""
    stripe_js_url: str = "https://js.stripe.com/v3/"
    # Seconds a webhook's signature timestamp may be away from now.
    stripe_webhook_tolerance_seconds: int = 300

    # Where the catalog api listens (quotes: the authoritative price).
    catalog_url: str = "http://127.0.0.1:8103"
    catalog_timeout_seconds: float = 10.0

    # Orders still pending with a PaymentIntent older than this are re-read from Stripe.
    reconcile_after_seconds: int = 600
    reconcile_interval_seconds: float = 60.0
    # How often an idle worker looks for stored Stripe events: one indexed query, and
    # the wait is part of every purchase's time to "paid" (0.5 s was half the budget).
    stripe_events_poll_interval: float = 0.1
    stripe_events_max_attempts: int = 20
