from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore")
    service_name: ClassVar[str] = "catalog"

    database_url: str = "sqlite+aiosqlite:///var/catalog.db"
    port: int = 8103

    # The locale prices are written in ("$30.00 / month").
    price_locale: str = "en_US"
