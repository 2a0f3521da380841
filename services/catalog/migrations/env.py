from catalog.config import CatalogSettings
from catalog.models import Base
from kit.migrations import run_env

run_env(Base.metadata, lambda: CatalogSettings().database_url)
