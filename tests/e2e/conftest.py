from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
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


def unique_ip() -> dict[str, str]:
    """A client address of its own, so rate limits of one test never touch another."""
    n = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"}


@pytest.fixture
def http(system: SystemStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=20) as client:
        yield client
