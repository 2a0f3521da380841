from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.support import infra

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return infra.postgres_admin_url()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return infra.amqp_url()


@pytest.fixture(scope="session", autouse=True)
def _stop_containers() -> Iterator[None]:
    yield
    infra.stop_containers()


@pytest.fixture
async def fresh_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own for one test."""
    name = infra.unique_name("t")
    url = await infra.create_database(postgres_admin_url, name)
    yield url
    await infra.drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def migrated_templates(postgres_admin_url: str) -> Iterator[infra.MigratedTemplates]:
    templates = infra.MigratedTemplates(postgres_admin_url, ROOT)
    yield templates
    templates.drop_all()


@pytest.fixture
async def service_database(
    postgres_admin_url: str, migrated_templates: infra.MigratedTemplates
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """``await service_database("clients")``: a migrated database of its own for this test."""
    created: list[str] = []

    async def make(service: str) -> str:
        name, url = await migrated_templates.clone(service)
        created.append(name)
        return url

    yield make
    for name in created:
        await infra.drop_database(postgres_admin_url, name)


@pytest.fixture
async def broker_namespace(amqp_url: str) -> AsyncIterator[infra.BrokerNamespace]:
    namespace = infra.BrokerNamespace(prefix=f"{infra.unique_name('t')}.")
    yield namespace
    await namespace.delete_all(amqp_url)
