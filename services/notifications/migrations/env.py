from kit.migrations import run_env
from notifications.config import NotificationsSettings
from notifications.models import Base

run_env(Base.metadata, lambda: NotificationsSettings().database_url)
