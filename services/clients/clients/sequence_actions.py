"""Steps of a notifications sequence that act on a client's account.

``notifications.sequence_action_requested.v1`` is applied in the consumer's
transaction, once per (run, step) (the ``sequence_actions_applied`` primary key; the
inbox already drops a redelivered event, this also drops a second event for the same
step):

- ``assign_worksheet`` / ``request_agreement``: an active ``entitlements`` row of that
  kind for the client, with the offering's details as the event carries them (the
  questions, the agreement text). Its ``order_id`` derives from (run, step): it is not
  the order's own entitlement, so refunding the order does not revoke it;
- ``add_to_group``: a place in the group through the groups domain (so
  ``clients.group_member_added.v1`` goes out; a member already is left as is; a deleted
  group is noted on the timeline and nothing else happens).

The client is the buyer of the order that started the run, as the purchase made them:
until that order is applied here, the event is retried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book.repository import BookRepository
from clients.book.service import timeline_row
from clients.groups.service import GroupService
from clients.models import Entitlement, SequenceActionApplied
from clients.purchases.repository import PurchaseRepository
from clients.purchases.service import OrderNotAppliedYet
from kit.contracts.notifications import SequenceActionRequestedV1
from kit.db import insert_ignoring_conflicts, utcnow
from kit.errors import NotFound
from kit.logging import get_logger
from kit.messaging import Outbox

log = get_logger(__name__)

# Fixed forever: a sequence's entitlement's order_id derives from it and (run, step).
SEQUENCE_ENTITLEMENT_NAMESPACE = uuid.UUID("3f1d7c52-9a0b-4e8e-b7d4-1c2a6e5f8d90")
KINDS = {"assign_worksheet": "worksheet", "request_agreement": "agreement"}


def entitlement_order_id(run_id: uuid.UUID, step_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(SEQUENCE_ENTITLEMENT_NAMESPACE, f"{run_id}/{step_id}")


@dataclass
class SequenceActions:
    session: AsyncSession
    outbox: Outbox

    async def apply(self, event: SequenceActionRequestedV1) -> bool:
        """Apply the step to the order's buyer. False when it already was (or cannot be)."""
        applied = await PurchaseRepository(self.session).applied(event.order_id)
        if applied is None:
            # The order's own order_paid is not applied yet: retry, never guess the client.
            raise OrderNotAppliedYet(f"order {event.order_id} is not applied")
        if event.business_id is not None and applied.business_id != event.business_id:
            log.error("sequence_action_business_mismatch", order_id=str(event.order_id))
            return False
        now = utcnow()
        claim = insert_ignoring_conflicts(
            str(self.session.get_bind().dialect.name),
            SequenceActionApplied.__table__,  # type: ignore[arg-type]
            ["run_id", "step_id"],
        ).returning(SequenceActionApplied.__table__.c.run_id)
        claimed = await self.session.execute(
            claim.values(
                run_id=event.run_id,
                step_id=event.step_id,
                business_id=applied.business_id,
                order_id=event.order_id,
                client_id=applied.client_id,
                action=event.action,
                event_id=event.id,
                applied_at=now,
            )
        )
        if claimed.scalar_one_or_none() is None:
            log.info("sequence_action_already_applied", run_id=str(event.run_id))
            return False
        row = await self.session.get(SequenceActionApplied, (event.run_id, event.step_id))
        assert row is not None
        if event.action == "add_to_group":
            await self._join_group(event, applied.business_id, applied.client_id, row)
        else:
            await self._entitle(
                event, applied.business_id, applied.account_id, applied.client_id, row
            )
        log.info(
            "sequence_action_applied",
            run_id=str(event.run_id),
            step_id=str(event.step_id),
            action=event.action,
        )
        return True

    async def _entitle(
        self,
        event: SequenceActionRequestedV1,
        business_id: uuid.UUID,
        account_id: uuid.UUID,
        client_id: uuid.UUID,
        row: SequenceActionApplied,
    ) -> None:
        kind = KINDS[event.action]
        if event.offering_id is None or event.offering_version_id is None:
            log.error("sequence_action_without_offering", run_id=str(event.run_id))
            return
        name = (event.target_name or kind.capitalize())[:200]
        entitlement = Entitlement(
            id=uuid.uuid4(),
            business_id=business_id,
            account_id=account_id,
            client_id=client_id,
            order_id=entitlement_order_id(event.run_id, event.step_id),
            offering_id=event.offering_id,
            offering_version_id=event.offering_version_id,
            kind=kind,
            offering_name=name,
            status="active",
            details=dict(event.details),
        )
        self.session.add(entitlement)
        row.entitlement_id = entitlement.id
        what = "Worksheet" if kind == "worksheet" else "Agreement to sign"
        summary = f"{what} {name} given by the sequence {event.sequence_name}".strip()
        await self._timeline(business_id, client_id, kind + "_assigned", summary)
        await self.session.flush()

    async def _join_group(
        self,
        event: SequenceActionRequestedV1,
        business_id: uuid.UUID,
        client_id: uuid.UUID,
        row: SequenceActionApplied,
    ) -> None:
        if event.group_id is None:
            log.error("sequence_action_without_group", run_id=str(event.run_id))
            return
        groups = GroupService(self.session, self.outbox)
        actor = f"the sequence {event.sequence_name}".strip()
        try:
            change = await groups.add_members(business_id, event.group_id, [client_id], actor)
        except NotFound:
            log.warning("sequence_group_missing", group_id=str(event.group_id))
            await self._timeline(
                business_id,
                client_id,
                "group_missing",
                f"The sequence {event.sequence_name} could not add them to a deleted group",
            )
            return
        if change.changed:
            row.group_id = event.group_id
        await self.session.flush()

    async def _timeline(
        self, business_id: uuid.UUID, client_id: uuid.UUID, kind: str, summary: str
    ) -> None:
        await BookRepository(self.session).add_timeline(
            [timeline_row(business_id, client_id, kind, summary)]
        )
