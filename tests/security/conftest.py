"""One running system for the whole security package, with two businesses in it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import unique_ip
from tests.security.world import Business, build_business
from tests.support import infra
from tests.support.stack import MailSink, SystemStack
from tests.support.system import running_stack

# Limits high enough for the measurements here (the limits themselves are tested in e2e).
RELAXED_LIMITS = {
    f"GATEWAY_RATE_LIMIT_{kind}": "10000/minute"
    for kind in ("SIGNUP", "LOGIN", "MAGIC_LINK", "PASSWORD_RESET", "CHECKOUT")
}


@pytest.fixture(scope="package")
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
        tmp_path_factory.mktemp("security"),
        extra_env={"GATEWAY_TRUSTED_PROXY_COUNT": "1", **RELAXED_LIMITS},
    )


@pytest.fixture(scope="package")
def mail(system: SystemStack) -> MailSink:
    return MailSink(system.mail_url)


@pytest.fixture(scope="package")
def businesses(system: SystemStack, mail: MailSink) -> tuple[Business, Business]:
    """A (the attacker's side) and B (the victim's side, with a paid subscription too)."""
    return (
        build_business(system, mail, "alpha"),
        build_business(system, mail, "beta", subscription=True),
    )


@pytest.fixture
def http(system: SystemStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as client:
        yield client
