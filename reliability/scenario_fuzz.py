"""Scenario 8: schemathesis against every service's OpenAPI, directly and via the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reliability.scenarios import Context, Result

SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {}
