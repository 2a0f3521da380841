"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
import contextlib
import gc


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``, waking early when ``stop`` is set. True if stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def freeze_startup_heap() -> None:
    """Exclude everything that exists once a process has started from garbage collection.

    Imports (SQLAlchemy, pydantic, FastAPI...) leave hundreds of thousands of
    long-lived objects; full collections walking them stalled the event loop
    for ~80 ms (p99 of a trivial endpoint 93 ms instead of 11 ms).
    """
    gc.collect()
    gc.freeze()
