"""Events published by the catalog service (``business_id`` is always set).

Consumers (the gateway's cache, later payments and bookings) learn from these
what a business sells and which collections exist, without reading the
catalog's tables.

The offering's and the collection's ``name`` are in the message as ``name``;
in Python they are ``offering_name`` / ``collection_name``, because ``name``
is the event's own name (its routing key) on every event class.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from kit.contracts.base import Event


class _NamedThing(Event):
    model_config = ConfigDict(
        serialize_by_alias=True, validate_by_name=True, validate_by_alias=True
    )


class OfferingPublishedV1(_NamedThing):
    """An offering was published, or a published offering got a new version.

    ``price_minor`` is in the currency's minor units; for recurring billing it
    is the price of one period, for a payment plan the amount of one installment.
    """

    name: ClassVar[str] = "catalog.offering_published.v1"

    offering_id: uuid.UUID
    version_id: uuid.UUID
    version: int
    offering_name: str = Field(alias="name")
    kind: str
    visibility: str  # public | unlisted | established_only | groups
    group_ids: list[uuid.UUID] = Field(default_factory=list)
    price_minor: int
    currency: str
    billing: dict[str, Any]
    # The kind's details (a worksheet's questions, an agreement's text, ...).
    details: dict[str, Any] = Field(default_factory=dict)


class OfferingArchivedV1(Event):
    name: ClassVar[str] = "catalog.offering_archived.v1"

    offering_id: uuid.UUID


class CollectionUpdatedV1(_NamedThing):
    """A collection was created or changed (any field, the two flags included)."""

    name: ClassVar[str] = "catalog.collection_updated.v1"

    collection_id: uuid.UUID
    collection_name: str = Field(alias="name")
    in_app: bool
    established_only: bool
    offering_ids: list[uuid.UUID] = Field(default_factory=list)  # in their order


class CollectionDeletedV1(Event):
    name: ClassVar[str] = "catalog.collection_deleted.v1"

    collection_id: uuid.UUID
