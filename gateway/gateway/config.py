from __future__ import annotations

from typing import ClassVar

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    service_name: ClassVar[str] = "gateway"

    port: int = 8000
    # Where each service's api listens (inside the cluster; never public). Several
    # replicas: their base URLs comma-separated, taken in turn (gateway.upstream).
    clients_url: str = "http://127.0.0.1:8101"
    notifications_url: str = "http://127.0.0.1:8102"
    catalog_url: str = "http://127.0.0.1:8103"
    payments_url: str = "http://127.0.0.1:8104"
    upstream_timeout_seconds: float = 15.0
    upstream_pool_size: int = 200
    max_body_bytes: int = 1_048_576
    # Stripe's webhook posts (one event each; Stripe's own events stay far below this).
    webhook_max_body_bytes: int = 262_144

    # Stripe.js for the card form on checkout pages; its origin is allowed by those
    # pages' Content-Security-Policy only. `make run` points it at localstripe's mock.
    stripe_js_url: str = "https://js.stripe.com/v3/"

    # Cookies are Secure unless told otherwise when the public URL is https.
    cookie_secure: bool | None = None
    session_cookie: str = "clientele_session"
    csrf_cookie: str = "clientele_csrf"

    # Client address: how many proxies in front of us append to X-Forwarded-For.
    trusted_proxy_count: int = 0
    # limits storage URI: memory:// per process; redis://host:6379 to share across replicas.
    rate_limit_storage: str = "memory://"
    rate_limit_signup: str = "10/hour"
    rate_limit_login: str = "10/minute"
    rate_limit_magic_link: str = "5/15minutes"
    rate_limit_password_reset: str = "5/15minutes"
    rate_limit_checkout: str = "30/10minutes"

    # Anonymous public catalog reads (see gateway.cache): seconds an answer may be
    # kept at most (a safety net; catalog events clear it), 0 disables the cache.
    # Invalidation listens on the shared AMQP_URL / BROKER_NAMESPACE.
    public_cache_seconds: float = 60.0
    public_cache_max_entries: int = 2000
    public_cache_max_entry_bytes: int = 512 * 1024

    # Development: the SMTP sink's HTTP API behind /dev/mail (only in dev mode).
    dev_mail_url: str = "http://127.0.0.1:8025"

    @field_validator("clients_url", "notifications_url", "catalog_url", "payments_url")
    @classmethod
    def _some_url(cls, value: str) -> str:
        if not _split_urls(value):
            raise ValueError("needs at least one base URL (several: comma-separated)")
        return value

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.public_base_url.startswith("https://")

    def upstreams(self) -> dict[str, str]:
        """Each service's setting, normalised (a comma-separated list when replicated)."""
        return {name: ",".join(urls) for name, urls in self.upstream_replicas().items()}

    def upstream_replicas(self) -> dict[str, tuple[str, ...]]:
        """Each service's api base URLs, one per replica."""
        settings = {
            "clients": self.clients_url,
            "notifications": self.notifications_url,
            "catalog": self.catalog_url,
            "payments": self.payments_url,
        }
        return {name: _split_urls(value) for name, value in settings.items()}


def _split_urls(value: str) -> tuple[str, ...]:
    return tuple(url.strip().rstrip("/") for url in value.split(",") if url.strip())
