"""Where the real PostgreSQL and RabbitMQ come from.

``DATABASE_URL`` / ``AMQP_URL`` when set; otherwise testcontainers when a
Docker engine answers; otherwise the test run stops with a message naming
what is missing. Nothing ever passes silently without its service.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

_containers: list[Any] = []


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _missing(what: str, variable: str) -> None:
    pytest.exit(
        f"\n{what} is required by the tests and none was found: set {variable} "
        f"(e.g. by running .ci/run) or start a Docker engine for testcontainers.",
        returncode=3,
    )


LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


async def _postgres_answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


async def _rabbitmq_answers(url: str) -> bool:
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=3)
    except Exception:
        return False
    await connection.close()
    return True


def postgres_admin_url() -> str:
    """A URL (asyncpg driver) of a PostgreSQL server where tests may create databases.

    DATABASE_URL, else a local server on the default port, else testcontainers.
    """
    url = os.environ.get("DATABASE_URL")
    if not url and run(_postgres_answers(LOCAL_POSTGRES)):
        url = os.environ["DATABASE_URL"] = LOCAL_POSTGRES
    if not url:
        if not _docker_available():
            _missing("PostgreSQL", "DATABASE_URL")
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:15-alpine", driver="asyncpg").start()
        _containers.append(container)
        url = container.get_connection_url()
        os.environ["DATABASE_URL"] = url
    parsed = make_url(url).set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def amqp_url() -> str:
    url = os.environ.get("AMQP_URL")
    if not url and run(_rabbitmq_answers(LOCAL_RABBITMQ)):
        url = os.environ["AMQP_URL"] = LOCAL_RABBITMQ
    if not url:
        if not _docker_available():
            _missing("RabbitMQ", "AMQP_URL")
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        _containers.append(container)
        url = (
            f"amqp://guest:guest@{container.get_container_host_ip()}:"
            f"{container.get_exposed_port(5672)}/"
        )
        os.environ["AMQP_URL"] = url
    return url


def stop_containers() -> None:
    for container in _containers:
        container.stop()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        template_sql = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{template_sql}')
    finally:
        await conn.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass
class BrokerNamespace:
    """A prefix for exchanges and queues, so tests never share broker state."""

    prefix: str
    services: set[str] = field(default_factory=set)

    async def delete_all(self, url: str) -> None:
        import aio_pika

        from kit.messaging import Topology

        topology = Topology(self.prefix)
        connection = await aio_pika.connect(url)
        try:
            for service in self.services:
                for queue in (topology.queue(service), topology.dead_letter_queue(service)):
                    channel = await connection.channel()
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(queue)
            for exchange in (topology.events_exchange, topology.dead_letter_exchange):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(exchange)
        finally:
            await connection.close()


def close_all_broker_connections() -> None:
    """Drop every client connection of the broker (what a broker restart does to clients)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        for container in _containers:
            if "rabbitmq" in type(container).__name__.lower():
                container.exec(["rabbitmqctl", "close_all_connections", "test"])
                return
        pytest.fail("rabbitmqctl is needed to close the broker's connections; it was not found")
    subprocess.run([ctl, "close_all_connections", "test"], check=True, capture_output=True)


def run(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even where a loop already runs
    in this thread (Playwright's sync API keeps one there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


SERVICE_DIRS = {
    "clients": "services/clients",
    "notifications": "services/notifications",
    "catalog": "services/catalog",
    "payments": "services/payments",
}


class MigratedTemplates:
    """One migrated template database per service per test run; tests clone it (fast)."""

    def __init__(self, admin_url: str, root: Any) -> None:
        self.admin_url = admin_url
        self.root = root
        self.templates: dict[str, str] = {}

    def template_for(self, service: str) -> str:
        if service not in self.templates:
            from kit.migrations import upgrade

            name = unique_name(f"tmpl_{service}")
            url = run(create_database(self.admin_url, name))
            # Alembic's env runs its own event loop: give it a thread of its own.
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(upgrade, self.root / SERVICE_DIRS[service], url).result()
            self.templates[service] = name
        return self.templates[service]

    async def clone(self, service: str) -> tuple[str, str]:
        template = await asyncio.to_thread(self.template_for, service)
        name = unique_name(f"t_{service}")
        return name, await create_database(self.admin_url, name, template=template)

    def drop_all(self) -> None:
        for name in self.templates.values():
            run(drop_database(self.admin_url, name))
