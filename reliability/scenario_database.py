"""Scenario 4: PostgreSQL connections terminated, then a restart (a server of its own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reliability.scenarios import Context, Result

SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {}
