from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class ClientsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLIENTS_", extra="ignore")
    service_name: ClassVar[str] = "clients"

    database_url: str = "sqlite+aiosqlite:///var/clients.db"
    port: int = 8101

    # Ed25519 private key (PEM) that signs access tokens. When empty, one is
    # derived from SECRET_KEY so every process of the service signs alike.
    jwt_private_key: str = ""
    access_token_ttl_seconds: int = 900
    session_ttl_days: int = 30
    magic_link_ttl_minutes: int = 15
    password_reset_ttl_minutes: int = 60
    email_verification_ttl_hours: int = 48
    # An account made by a purchase has no password: the emailed link that sets one.
    account_claim_ttl_days: int = 7

    # Invitations: how long a link works, and how many invitation emails a
    # business may send per UTC day (a request that would exceed it is refused).
    invitation_ttl_days: int = 14
    invitation_daily_cap: int = 1000
    max_addresses_per_invitation_request: int = 10_000

    # Where the catalog api listens (appointments: an offering's duration, price and who
    # may book it, from its quote for the viewer).
    catalog_url: str = "http://127.0.0.1:8103"
    catalog_timeout_seconds: float = 10.0
    # A request for a paid appointment waits this long for its order to be paid.
    appointment_hold_minutes: int = 30
