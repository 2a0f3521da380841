from kit.migrations import run_env
from payments.config import PaymentsSettings
from payments.models import Base

run_env(Base.metadata, lambda: PaymentsSettings().database_url)
