from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import infra
from tests.support.stack import MailSink, SystemStack
from tests.support.system import running_stack


@pytest.fixture(scope="module")
def system(
    postgres_admin_url: str,
    amqp_url: str,
    migrated_templates: infra.MigratedTemplates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SystemStack]:
    yield from running_stack(
        postgres_admin_url,
        amqp_url,
        migrated_templates,
        tmp_path_factory.mktemp("system"),
        # Behind one trusted proxy: tests choose their client address with X-Forwarded-For.
        extra_env={"GATEWAY_TRUSTED_PROXY_COUNT": "1", "GATEWAY_RATE_LIMIT_LOGIN": "10/minute"},
    )


@pytest.fixture(scope="module")
def mail(system: SystemStack) -> MailSink:
    return MailSink(system.mail_url)
