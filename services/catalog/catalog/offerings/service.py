"""Offerings: create, edit, publish, archive, and their versions.

A draft has one version, edited in place. Publishing freezes it; editing a
published offering makes version n+1 (the older ones stay readable by id)
and announces it with ``catalog.offering_published.v1``, as publishing does.
Every state change writes its event to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.eligibility.service import Eligibility
from catalog.models import ARCHIVED, DRAFT, PUBLISHED, Offering, OfferingVersion
from catalog.offerings import schemas
from catalog.offerings.repository import OfferingRepository
from kit.contracts.catalog import OfferingArchivedV1, OfferingPublishedV1
from kit.db import utcnow
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.messaging import Outbox
from kit.money import price_label

VERSION_FIELDS = (
    "name",
    "description",
    "kind",
    "details",
    "billing",
    "price_minor",
    "currency",
    "visibility",
    "group_ids",
    "capacity",
)


def spots_left(offering: Offering, version: OfferingVersion) -> int | None:
    if version.capacity is None:
        return None
    return max(version.capacity - offering.spots_taken, 0)


def _fields(version: OfferingVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "description": version.description,
        "kind": version.kind,
        "details": dict(version.details),
        "billing": dict(version.billing),
        "price_minor": version.price_minor,
        "currency": version.currency,
        "visibility": version.visibility,
        "group_ids": [uuid.UUID(str(g)) for g in version.group_ids],
        "capacity": version.capacity,
    }


def _shown(version: OfferingVersion) -> dict[str, Any]:
    """The version's fields plus what is derived from them for display."""
    label = price_label(version.price_minor, version.currency, version.billing)
    return {**_fields(version), "price_label": label}


def offering_out(offering: Offering, version: OfferingVersion) -> schemas.OfferingOut:
    return schemas.OfferingOut(
        id=offering.id,
        business_id=offering.business_id,
        status=offering.status,
        version=version.version,
        version_id=version.id,
        spots_left=spots_left(offering, version),
        created_at=offering.created_at,
        updated_at=offering.updated_at,
        published_at=offering.published_at,
        **_shown(version),
    )


def version_out(version: OfferingVersion) -> schemas.OfferingVersionOut:
    return schemas.OfferingVersionOut(
        id=version.id,
        offering_id=version.offering_id,
        business_id=version.business_id,
        version=version.version,
        created_at=version.created_at,
        published_at=version.published_at,
        **_shown(version),
    )


def _invalid(errors: list[FieldError]) -> InvalidInput:
    return InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


@dataclass
class OfferingService:
    session: AsyncSession
    outbox: Outbox
    repo: OfferingRepository = field(init=False)
    eligibility: Eligibility = field(init=False)

    def __post_init__(self) -> None:
        self.repo = OfferingRepository(self.session)
        self.eligibility = Eligibility(self.session)

    async def _get(
        self, business_id: uuid.UUID, offering_id: uuid.UUID, *, lock: bool = False
    ) -> tuple[Offering, OfferingVersion]:
        found = await self.repo.offering(business_id, offering_id, lock=lock)
        if found is None:
            raise NotFound("No such offering.")
        return found

    async def _checked(self, business_id: uuid.UUID, data: schemas.OfferingIn) -> dict[str, Any]:
        """The version's stored fields, after every rule that ties fields together."""
        errors, details = schemas.problems(data)
        named: list[tuple[str, uuid.UUID]] = [("group_ids", g) for g in data.group_ids]
        if data.kind == "group" and "group_id" in details:
            named.append(("details.group_id", uuid.UUID(details["group_id"])))
        unknown = set(await self.eligibility.unknown_groups(business_id, [g for _, g in named]))
        for name, group_id in named:
            if group_id in unknown:
                errors.append(FieldError(name, f"{group_id} is not a group of this business"))
        errors.extend(await self._appointment_offering_problems(business_id, data.kind, details))
        if errors:
            raise _invalid(errors)
        stored = data.model_dump(mode="json")
        stored["details"] = details
        stored["group_ids"] = list(dict.fromkeys(stored["group_ids"]))
        return {name: stored[name] for name in VERSION_FIELDS}

    async def _appointment_offering_problems(
        self, business_id: uuid.UUID, kind: str, details: dict[str, Any]
    ) -> list[FieldError]:
        """An engagement's ``appointment_offering_ids`` must name appointment offerings
        of this business."""
        if kind != "engagement" or not details.get("appointment_offering_ids"):
            return []
        wanted = [uuid.UUID(str(i)) for i in details["appointment_offering_ids"]]
        found = {o.id: v.kind for o, v in await self.repo.offerings(business_id, ids=wanted)}
        return [
            FieldError(
                "details.appointment_offering_ids",
                f"{offering_id} is not an appointment offering of this business",
            )
            for offering_id in wanted
            if found.get(offering_id) != "appointment"
        ]

    # -- reads --------------------------------------------------------------------

    async def list(self, business_id: uuid.UUID, status: str | None) -> schemas.OfferingList:
        rows = await self.repo.offerings(business_id, statuses=[status] if status else None)
        return schemas.OfferingList(items=[offering_out(o, v) for o, v in rows])

    async def get(self, business_id: uuid.UUID, offering_id: uuid.UUID) -> schemas.OfferingOut:
        return offering_out(*await self._get(business_id, offering_id))

    async def versions(self, business_id: uuid.UUID, offering_id: uuid.UUID) -> schemas.VersionList:
        await self._get(business_id, offering_id)
        rows = await self.repo.versions(business_id, offering_id)
        return schemas.VersionList(items=[version_out(v) for v in rows])

    async def version(
        self, business_id: uuid.UUID, version_id: uuid.UUID
    ) -> schemas.OfferingVersionOut:
        found = await self.repo.version(business_id, version_id)
        if found is None:
            raise NotFound("No such offering version.")
        return version_out(found)

    # -- changes ------------------------------------------------------------------

    async def create(self, business_id: uuid.UUID, body: schemas.OfferingIn) -> schemas.OfferingOut:
        values = await self._checked(business_id, body)
        now = utcnow()
        offering_id, version_id = uuid.uuid4(), uuid.uuid4()
        offering = Offering(
            id=offering_id,
            business_id=business_id,
            status=DRAFT,
            current_version=1,
            current_version_id=version_id,
            spots_taken=0,
            created_at=now,
            updated_at=now,
        )
        version = OfferingVersion(
            id=version_id,
            business_id=business_id,
            offering_id=offering_id,
            version=1,
            created_at=now,
            **values,
        )
        self.repo.add(offering)
        await self.repo.flush()
        self.repo.add(version)
        await self.repo.flush()
        return offering_out(offering, version)

    async def edit(
        self, business_id: uuid.UUID, offering_id: uuid.UUID, patch: schemas.OfferingPatch
    ) -> schemas.OfferingOut:
        offering, current = await self._get(business_id, offering_id, lock=True)
        if offering.status == ARCHIVED:
            raise Conflict("An archived offering cannot be edited; publish it again first.")
        merged = {**_fields(current), **patch.changes()}
        try:
            data = schemas.OfferingIn.model_validate(merged)
        except ValidationError as exc:
            raise _invalid(schemas.field_errors(exc)) from exc
        values = await self._checked(business_id, data)
        now = utcnow()
        if offering.status == DRAFT:
            for name, value in values.items():
                setattr(current, name, value)
            offering.updated_at = now
            await self.repo.flush()
            return offering_out(offering, current)
        if values == {name: getattr(current, name) for name in VERSION_FIELDS}:
            return offering_out(offering, current)  # nothing changed: no new version
        version = OfferingVersion(
            id=uuid.uuid4(),
            business_id=business_id,
            offering_id=offering.id,
            version=offering.current_version + 1,
            created_at=now,
            published_at=now,
            **values,
        )
        self.repo.add(version)
        await self.repo.flush()
        offering.current_version = version.version
        offering.current_version_id = version.id
        offering.updated_at = now
        await self.repo.flush()
        await self._announce(offering, version)
        return offering_out(offering, version)

    async def publish(self, business_id: uuid.UUID, offering_id: uuid.UUID) -> schemas.OfferingOut:
        offering, version = await self._get(business_id, offering_id, lock=True)
        if offering.status == PUBLISHED:
            return offering_out(offering, version)
        # The groups it names may have been deleted since it was written.
        data = schemas.OfferingIn.model_validate(_fields(version))
        await self._checked(business_id, data)
        now = utcnow()
        offering.status = PUBLISHED
        offering.published_at = offering.published_at or now
        offering.archived_at = None
        offering.updated_at = now
        if version.published_at is None:
            version.published_at = now
        await self.repo.flush()
        await self._announce(offering, version)
        return offering_out(offering, version)

    async def archive(self, business_id: uuid.UUID, offering_id: uuid.UUID) -> schemas.OfferingOut:
        offering, version = await self._get(business_id, offering_id, lock=True)
        if offering.status == ARCHIVED:
            return offering_out(offering, version)
        now = utcnow()
        offering.status = ARCHIVED
        offering.archived_at = now
        offering.updated_at = now
        await self.repo.flush()
        await self.outbox.enqueue(
            self.session, OfferingArchivedV1(business_id=business_id, offering_id=offering.id)
        )
        return offering_out(offering, version)

    async def _announce(self, offering: Offering, version: OfferingVersion) -> None:
        await self.outbox.enqueue(
            self.session,
            OfferingPublishedV1(
                business_id=offering.business_id,
                offering_id=offering.id,
                version_id=version.id,
                version=version.version,
                offering_name=version.name,
                kind=version.kind,
                visibility=version.visibility,
                group_ids=[uuid.UUID(str(g)) for g in version.group_ids],
                price_minor=version.price_minor,
                currency=version.currency,
                billing=dict(version.billing),
                details=dict(version.details or {}),
            ),
        )
