"""Scenario 12: 50 users browsing and buying, then 5,000 renewal webhooks in 60 s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reliability.scenarios import Context, Result

SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {}
