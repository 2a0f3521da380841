"""Appointment and engagement details for booking: a buffer, "not self-schedulable by new
clients", and the appointment offerings an engagement's credits book."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.catalog.conftest import Catalog

APPOINTMENT = {"kind": "appointment", "details": {"duration_minutes": 45}}


async def test_appointment_details_are_stored_and_quoted(catalog: Catalog) -> None:
    biz = await catalog.business()
    plain = await catalog.published_offering(biz, **APPOINTMENT)
    # At their defaults the new fields are left out: details read as they always did.
    assert plain["details"] == {"duration_minutes": 45}
    closed = await catalog.published_offering(
        biz,
        kind="appointment",
        details={"duration_minutes": 60, "buffer_minutes": 15, "new_clients_can_self_book": False},
    )
    assert closed["details"] == {
        "duration_minutes": 60,
        "buffer_minutes": 15,
        "new_clients_can_self_book": False,
    }
    quote = await catalog.quote(closed["id"])
    assert quote.status_code == 200, quote.text
    assert quote.json()["details"]["buffer_minutes"] == 15
    assert quote.json()["details"]["new_clients_can_self_book"] is False

    sessions = await catalog.published_offering(
        biz,
        kind="engagement",
        details={
            "credits": 5,
            "appointment_offering_ids": [closed["id"], plain["id"], closed["id"]],
        },
    )
    assert sessions["details"] == {
        "credits": 5,
        "credit_expiry_days": None,
        "appointment_offering_ids": [closed["id"], plain["id"]],
    }
    any_one = await catalog.published_offering(biz, kind="engagement", details={"credits": 3})
    assert any_one["details"] == {"credits": 3, "credit_expiry_days": None}


@pytest.mark.parametrize(
    ("details", "field"),
    [
        ({"duration_minutes": 45, "buffer_minutes": -5}, "details.buffer_minutes"),
        ({"duration_minutes": 45, "buffer_minutes": 241}, "details.buffer_minutes"),
        ({"duration_minutes": 45, "buffer_minutes": "10"}, "details.buffer_minutes"),
        (
            {"duration_minutes": 45, "new_clients_can_self_book": "no"},
            "details.new_clients_can_self_book",
        ),
    ],
)
async def test_bad_appointment_details_name_the_field(
    catalog: Catalog, details: dict[str, Any], field: str
) -> None:
    biz = await catalog.business()
    before = await catalog.counts()
    response = await catalog.http.post(
        biz.url("/offerings"),
        json={
            "name": "Session",
            "kind": "appointment",
            "details": details,
            "billing": {"type": "one_time"},
            "price_minor": 5000,
            "currency": "usd",
        },
        headers=biz.coach,
    )
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await catalog.counts() == before


async def test_engagement_names_only_appointment_offerings_of_its_business(
    catalog: Catalog,
) -> None:
    biz, other = await catalog.business(), await catalog.business("Other")
    course = await catalog.published_offering(biz, kind="course")
    elsewhere = await catalog.published_offering(other, **APPOINTMENT)
    before = await catalog.counts()
    for named in ([course["id"]], [elsewhere["id"]], [str(uuid.uuid4())], ["not-a-uuid"]):
        response = await catalog.http.post(
            biz.url("/offerings"),
            json={
                "name": "Sessions",
                "kind": "engagement",
                "details": {"credits": 5, "appointment_offering_ids": named},
                "billing": {"type": "one_time"},
                "price_minor": 5000,
                "currency": "usd",
            },
            headers=biz.coach,
        )
        assert response.status_code == 422, response.text
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f.startswith("details.appointment_offering_ids") for f in fields), fields
    assert await catalog.counts() == before
