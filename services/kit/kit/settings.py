"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix``
(``CLIENTS_``, ``NOTIFICATIONS_``...). Settings that are the same for the
whole system (broker, public URL, dev mode, secret) are read without a
prefix, so one environment configures every process.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-insecure-secret-change-me"


class InsecureSettingsError(RuntimeError):
    """A default secret was left in place outside dev mode."""


def shared(default: Any, env: str, **kwargs: Any) -> Any:
    """A field read from an unprefixed variable (the same for all services)."""
    return Field(default, validation_alias=AliasChoices(env), **kwargs)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
    )

    service_name: ClassVar[str] = "service"
    # Fields holding secrets that must not keep their dev default outside dev mode.
    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    dev_mode: bool = shared(False, "CLIENTELE_DEV")
    secret_key: str = shared(DEV_SECRET, "SECRET_KEY", min_length=16)
    amqp_url: str = shared("amqp://guest:guest@localhost:5672/", "AMQP_URL")
    # Prefix for exchange and queue names; tests use it to isolate runs on one broker.
    broker_namespace: str = shared("", "BROKER_NAMESPACE")
    public_base_url: str = shared("http://localhost:8000", "PUBLIC_BASE_URL")
    log_level: str = shared("INFO", "LOG_LEVEL")
    log_format: str = shared("json", "LOG_FORMAT")  # json | console

    # JWT verification (every service checks tokens itself).
    jwks_url: str = shared("http://localhost:8101/api/v1/clients/.well-known/jwks.json", "JWKS_URL")
    jwt_issuer: str = shared("clientele", "JWT_ISSUER")
    jwt_audience: str = shared("clientele", "JWT_AUDIENCE")

    # Per service (prefixed).
    database_url: str = "sqlite+aiosqlite:///var/service.db"
    host: str = "127.0.0.1"
    port: int = 8100
    db_pool_size: int = 10
    outbox_batch_size: int = 500
    outbox_poll_interval: float = 0.1
    consumer_prefetch: int = 200
    consumer_batch_size: int = 100
    delivery_limit: int = 5
    # The worker's Prometheus endpoint (<SERVICE>_METRICS_PORT); 0 = none. Apis serve
    # /metrics on their own port.
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 (a container's scrape target)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.dev_mode:
            return self
        for name in self.secret_fields:
            if getattr(self, name) == DEV_SECRET:
                raise InsecureSettingsError(
                    f"{self.service_name}: {name} still has its development default; "
                    "set SECRET_KEY (or set CLIENTELE_DEV=1 for local development only)"
                )
        return self

    @property
    def public_base(self) -> str:
        return self.public_base_url.rstrip("/")

    def public_url(self, path: str) -> str:
        """An absolute link for emails: always from configuration, never from a request."""
        return f"{self.public_base}/{path.lstrip('/')}"
