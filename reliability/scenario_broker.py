"""Scenario 1: the broker stopped twice mid-run (a RabbitMQ node of its own)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reliability.scenarios import Context, Result

SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {}
