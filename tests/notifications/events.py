"""Events as the clients service publishes them, with test defaults."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kit.contracts.clients import (
    AccountRegisteredV1,
    BusinessCreatedV1,
    ClientAddedV1,
    ClientArchivedV1,
    ClientRestoredV1,
    EmailVerificationRequestedV1,
    GroupCreatedV1,
    GroupDeletedV1,
    GroupMemberAddedV1,
    GroupMemberRemovedV1,
    GroupRenamedV1,
    InvitationSentV1,
    MagicLinkRequestedV1,
    PasswordResetRequestedV1,
)

# Characters a token must never be able to smuggle into a link unencoded.
ODD_TOKEN = "tok/en+with=odd&next=//evil.test"
ODD_TOKEN_ENCODED = "tok%2Fen%2Bwith%3Dodd%26next%3D%2F%2Fevil.test"


def business_created(**overrides: Any) -> BusinessCreatedV1:
    values: dict[str, Any] = {
        "business_id": uuid.uuid4(),
        "business_name": "Casey Coaching",
        "slug": "casey-coaching",
        "owner_account_id": uuid.uuid4(),
        "owner_email": "casey@example.com",
        **overrides,
    }
    return BusinessCreatedV1(**values)


def account_registered(**overrides: Any) -> AccountRegisteredV1:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "occurred_at": now,
        "business_id": uuid.uuid4(),
        "account_id": uuid.uuid4(),
        "email": "casey@example.com",
        "display_name": "Casey Coach",
        "verification_token": f"verify-{uuid.uuid4().hex}",
        "verification_expires_at": now + timedelta(hours=48),
        **overrides,
    }
    return AccountRegisteredV1(**values)


def _account_event(kind: type[Any], ttl: timedelta, **overrides: Any) -> Any:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "occurred_at": now,
        "account_id": uuid.uuid4(),
        "email": "casey@example.com",
        "display_name": "Casey Coach",
        "token": f"token-{uuid.uuid4().hex}",
        # As the clients service does it: the token's expiry is computed just before the event.
        "expires_at": now + ttl - timedelta(milliseconds=3),
        **overrides,
    }
    return kind(**values)


def verification_requested(**overrides: Any) -> EmailVerificationRequestedV1:
    event: EmailVerificationRequestedV1 = _account_event(
        EmailVerificationRequestedV1, timedelta(hours=48), **overrides
    )
    return event


def magic_link_requested(**overrides: Any) -> MagicLinkRequestedV1:
    event: MagicLinkRequestedV1 = _account_event(
        MagicLinkRequestedV1, timedelta(minutes=15), **overrides
    )
    return event


def password_reset_requested(**overrides: Any) -> PasswordResetRequestedV1:
    event: PasswordResetRequestedV1 = _account_event(
        PasswordResetRequestedV1, timedelta(minutes=60), **overrides
    )
    return event


# -- the client book ---------------------------------------------------------------------


def at(seconds: float) -> datetime:
    """A fixed point in time, ``seconds`` after a base: for events whose order matters."""
    return datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def invitation_sent(**overrides: Any) -> InvitationSentV1:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "occurred_at": now,
        "business_id": uuid.uuid4(),
        "invitation_id": uuid.uuid4(),
        "email": "jamie@example.com",
        "business_name": "Casey Coaching",
        "inviter_name": "Casey Coach",
        "token": f"invite-{uuid.uuid4().hex}",
        "expires_at": now + timedelta(days=7) - timedelta(milliseconds=3),
        **overrides,
    }
    return InvitationSentV1(**values)


def client_added(business_id: uuid.UUID, **overrides: Any) -> ClientAddedV1:
    n = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "business_id": business_id,
        "client_id": uuid.uuid4(),
        "account_id": uuid.uuid4(),
        "email": f"client-{n}@example.com",
        "display_name": f"Client {n}",
        "business_name": "Casey Coaching",
        "source": "added",
        **overrides,
    }
    return ClientAddedV1(**values)


def client_archived(added: ClientAddedV1, **overrides: Any) -> ClientArchivedV1:
    values = {"client_id": added.client_id, "account_id": added.account_id, **overrides}
    return ClientArchivedV1(business_id=added.business_id, **values)


def client_restored(added: ClientAddedV1, **overrides: Any) -> ClientRestoredV1:
    values = {"client_id": added.client_id, "account_id": added.account_id, **overrides}
    return ClientRestoredV1(business_id=added.business_id, **values)


def group_created(business_id: uuid.UUID, **overrides: Any) -> GroupCreatedV1:
    values = {"group_id": uuid.uuid4(), "group_name": "Morning yoga", **overrides}
    return GroupCreatedV1(business_id=business_id, **values)


def group_renamed(group: GroupCreatedV1, name: str, **overrides: Any) -> GroupRenamedV1:
    return GroupRenamedV1(
        business_id=group.business_id, group_id=group.group_id, group_name=name, **overrides
    )


def group_deleted(group: GroupCreatedV1, **overrides: Any) -> GroupDeletedV1:
    return GroupDeletedV1(business_id=group.business_id, group_id=group.group_id, **overrides)


def member_added(
    group_id: uuid.UUID, client: ClientAddedV1, **overrides: Any
) -> GroupMemberAddedV1:
    return GroupMemberAddedV1(
        business_id=client.business_id,
        group_id=group_id,
        client_id=client.client_id,
        account_id=client.account_id,
        **overrides,
    )


def member_removed(
    group_id: uuid.UUID, client: ClientAddedV1, **overrides: Any
) -> GroupMemberRemovedV1:
    return GroupMemberRemovedV1(
        business_id=client.business_id,
        group_id=group_id,
        client_id=client.client_id,
        account_id=client.account_id,
        **overrides,
    )
