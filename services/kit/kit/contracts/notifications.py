"""Events published by the notifications service (``business_id`` is always set).

Sequences (onboarding steps a coach attaches to an offering) run in notifications;
the steps that change a client's account (a worksheet or an agreement to fill in,
a place in a group) are asked of the clients service with
``notifications.sequence_action_requested.v1``. The event id derives from
(run, step), and the consumer applies it once per (run_id, step_id).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from pydantic import Field

from kit.contracts.base import Event

SequenceAction = Literal["assign_worksheet", "request_agreement", "add_to_group"]


class SequenceActionRequestedV1(Event):
    """A step of a sequence run is due: give the buyer of ``order_id`` a worksheet or an
    agreement entitlement (``offering_id``, ``offering_version_id``, ``target_name``,
    ``details`` of that offering), or a place in the group ``group_id``."""

    name: ClassVar[str] = "notifications.sequence_action_requested.v1"

    sequence_id: uuid.UUID
    sequence_name: str = ""
    run_id: uuid.UUID
    step_id: uuid.UUID
    action: SequenceAction
    order_id: uuid.UUID
    buyer_account_id: uuid.UUID | None = None
    buyer_email: str
    buyer_name: str = ""
    # The target: a worksheet or agreement offering, or a group.
    offering_id: uuid.UUID | None = None
    offering_version_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None
    target_name: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
