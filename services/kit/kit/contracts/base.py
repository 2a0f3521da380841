"""Event contracts: pydantic models with explicit, versioned names.

The routing key is the name (``<producer>.<entity>_<verb>.v<N>``). Within a
version fields are only added; a breaking change is a new ``...V2`` class
with its own name. Routing is by name, never by Python class name.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

_NAME = re.compile(r"^[a-z]+\.[a-z_]+\.v[0-9]+$")
_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base of every event. Subclasses set ``name``."""

    # Validation errors get logged: never echo the input (it may hold a token).
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    name: ClassVar[str]

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    business_id: uuid.UUID | None = None
    correlation_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if not _NAME.match(name):
            raise ValueError(f"event name {name!r} must look like producer.entity_verb.vN")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"event name {name!r} is already taken by {_REGISTRY[name]}")
        _REGISTRY[name] = cls


def event_class(name: str) -> type[Event] | None:
    """The contract registered under ``name`` (import the producer's module first)."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    return sorted(_REGISTRY)
