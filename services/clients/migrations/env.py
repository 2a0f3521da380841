from clients.config import ClientsSettings
from clients.models import Base
from kit.migrations import run_env

run_env(Base.metadata, lambda: ClientsSettings().database_url)
