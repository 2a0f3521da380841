"""Alembic helpers: each service's ``migrations/env.py`` calls :func:`run_env`.

The database URL comes from ``config.attributes["url"]`` when a program
(the dev runner, a test) passes one, else from the service's settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from kit.db import create_engine


def _configure_and_run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, metadata: MetaData) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run, metadata)
    finally:
        await engine.dispose()


def run_env(metadata: MetaData, default_url: Callable[[], str]) -> None:
    url = context.config.attributes.get("url") or default_url()
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, metadata))


def upgrade(service_dir: Path, url: str, revision: str = "head") -> None:
    """Migrate a service's database (blocking: call it from a thread in async code)."""
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.attributes["url"] = url
    command.upgrade(config, revision)
