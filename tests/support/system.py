"""A module-scoped fixture factory for a running system stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tests.support import infra
from tests.support.stack import SystemStack


def running_stack(
    postgres_admin_url: str,
    amqp_url: str,
    templates: infra.MigratedTemplates,
    work_dir: Path,
    *,
    dev_mode: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[SystemStack]:
    stack = SystemStack(
        postgres_admin_url,
        amqp_url,
        templates,
        work_dir,
        dev_mode=dev_mode,
        extra_env=extra_env or {},
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
