"""Inviting people to become clients, and accepting invitations.

A coach pastes addresses; each one gets an outcome of its own:
- added: the address has an account, so it becomes a client at once (and is told);
- invited: a new invitation email;
- already_invited: a pending invitation exists, so it is sent again with a new link;
- already_client: nothing to do;
- invalid: with the reason; the others are still processed.

Invitation tokens are 256 random bits, stored hashed, single use, expiring
and revocable; a token only ever works for its own business and address.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book.service import ClientBook
from clients.config import ClientsSettings
from clients.identity import schemas as identity_schemas
from clients.identity.passwords import verify_password
from clients.identity.service import IdentityService
from clients.invitations import schemas
from clients.invitations.parsing import parse_addresses
from clients.invitations.repository import InvitationRepository
from clients.models import Account, Business, Invitation
from kit.auth import Principal
from kit.contracts.clients import InvitationSentV1
from kit.db import utcnow
from kit.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.tokens import hash_token, new_token

log = get_logger(__name__)
CLIENT_HOME = "/home"


def effective_status(invitation: Invitation, now: datetime) -> str:
    if invitation.status == "pending" and invitation.expires_at <= now:
        return "expired"
    return invitation.status


def invitation_out(invitation: Invitation, now: datetime) -> schemas.InvitationOut:
    return schemas.InvitationOut(
        id=invitation.id,
        email=invitation.email,
        status=effective_status(invitation, now),  # type: ignore[arg-type]
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        last_sent_at=invitation.last_sent_at,
        send_count=invitation.send_count,
        accepted_at=invitation.accepted_at,
        revoked_at=invitation.revoked_at,
    )


def _seconds_until_tomorrow(now: datetime) -> int:
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((tomorrow - now).total_seconds()))


@dataclass
class InvitationService:
    session: AsyncSession
    settings: ClientsSettings
    outbox: Outbox
    identity: IdentityService
    repo: InvitationRepository = field(init=False)
    book: ClientBook = field(init=False)

    def __post_init__(self) -> None:
        self.repo = InvitationRepository(self.session)
        self.book = ClientBook(self.session, self.outbox)

    @property
    def ttl(self) -> timedelta:
        return timedelta(days=self.settings.invitation_ttl_days)

    # -- inviting ---------------------------------------------------------------------

    async def invite(
        self, business_id: uuid.UUID, inviter: Principal, addresses: str | list[str]
    ) -> schemas.InviteResult:
        text = addresses if isinstance(addresses, str) else "\n".join(addresses)
        parsed = parse_addresses(text)
        if not parsed:
            raise InvalidInput.for_field("addresses", "Enter at least one email address.")
        limit = self.settings.max_addresses_per_invitation_request
        if len(parsed) > limit:
            raise InvalidInput.for_field(
                "addresses", f"At most {limit:,} addresses per request; split the list."
            )
        business = await self.book.business(business_id)
        now = utcnow()
        emails = [p.email for p in parsed if p.email]
        accounts = await self.identity.repo.accounts_by_emails(emails)
        clients = await self.book.repo.clients_of_accounts(
            business_id, [a.id for a in accounts.values()]
        )
        pending = await self.repo.pending_by_emails(
            business_id, [e for e in emails if e not in accounts]
        )

        outcome: dict[str, str] = {}
        for email in emails:
            account = accounts.get(email)
            if account is not None:
                outcome[email] = "already_client" if account.id in clients else "added"
            else:
                outcome[email] = "already_invited" if email in pending else "invited"
        emails_to_send = sum(1 for o in outcome.values() if o != "already_client")
        remaining = await self._take_quota(business_id, now, emails_to_send)

        to_add = [accounts[e] for e, o in outcome.items() if o == "added"]
        created = await self.book.add_clients(
            business, to_add, source="added", notify=True, actor_name=inviter.name
        )
        invitation_ids = await self._send_invitations(
            business, inviter, [e for e, o in outcome.items() if o == "invited"], now
        )
        invitation_ids |= await self._resend(
            business,
            inviter,
            [pending[e] for e, o in outcome.items() if o == "already_invited"],
            now,
        )

        counts = schemas.InviteCounts()
        results = []
        for item in parsed:
            if item.email is None:
                row = schemas.InviteRow(
                    input=item.input, email=None, outcome="invalid", reason=item.reason
                )
            else:
                kind = outcome[item.email]
                account = accounts.get(item.email)
                if kind == "added" and account is not None and account.id not in created:
                    kind = "already_client"  # became a client meanwhile (concurrent request)
                row = schemas.InviteRow(
                    input=item.input,
                    email=item.email,
                    outcome=kind,  # type: ignore[arg-type]
                    client_id=(
                        created.get(account.id)
                        or (clients[account.id].id if account.id in clients else None)
                    )
                    if account
                    else None,
                    invitation_id=invitation_ids.get(item.email),
                )
            setattr(counts, row.outcome, getattr(counts, row.outcome) + 1)
            results.append(row)
        log.info(
            "clients_invited",
            business_id=str(business_id),
            **counts.model_dump(),
        )
        return schemas.InviteResult(results=results, counts=counts, remaining_today=remaining)

    async def _take_quota(self, business_id: uuid.UUID, now: datetime, count: int) -> int:
        cap = self.settings.invitation_daily_cap
        if count == 0:
            return cap - await self.repo.sent_on(business_id, now.date())
        total = await self.repo.take_quota(business_id, now.date(), count, cap)
        if total is None:
            left = max(0, cap - await self.repo.sent_on(business_id, now.date()))
            raise TooManyRequests(
                f"A business can send {cap:,} invitation emails a day; {left:,} are left today "
                f"and this would send {count:,}. Nothing was sent. Try fewer addresses or "
                "again tomorrow.",
                retry_after=_seconds_until_tomorrow(now),
                remaining_today=left,
            )
        return cap - total

    def _sent_event(
        self,
        business: Business,
        inviter: Principal,
        invitation_id: uuid.UUID,
        email: str,
        token: str,
        expires_at: datetime,
        *,
        resend: bool,
    ) -> InvitationSentV1:
        return InvitationSentV1(
            business_id=business.id,
            invitation_id=invitation_id,
            email=email,
            business_name=business.name,
            inviter_name=inviter.name,
            token=token,
            expires_at=expires_at,
            resend=resend,
        )

    async def _send_invitations(
        self, business: Business, inviter: Principal, emails: list[str], now: datetime
    ) -> dict[str, uuid.UUID]:
        rows, events = [], []
        for email in emails:
            token, token_hash = new_token()
            invitation_id = uuid.uuid4()
            rows.append(
                {
                    "id": invitation_id,
                    "business_id": business.id,
                    "email": email,
                    "token_hash": token_hash,
                    "status": "pending",
                    "invited_by_account_id": inviter.account_id,
                    "created_at": now,
                    "expires_at": now + self.ttl,
                    "last_sent_at": now,
                    "send_count": 1,
                }
            )
            events.append(
                self._sent_event(
                    business, inviter, invitation_id, email, token, now + self.ttl, resend=False
                )
            )
        await self.repo.insert_invitations(rows)
        await self.outbox.enqueue_many(self.session, events)
        return {row["email"]: row["id"] for row in rows}  # type: ignore[misc]

    async def _resend(
        self, business: Business, inviter: Principal, invitations: list[Invitation], now: datetime
    ) -> dict[str, uuid.UUID]:
        """A new link for each (the old one stops working) and a later expiry."""
        rows, events = [], []
        for invitation in invitations:
            token, token_hash = new_token()
            rows.append(
                {
                    "id": invitation.id,
                    "token_hash": token_hash,
                    "expires_at": now + self.ttl,
                    "last_sent_at": now,
                    "send_count": invitation.send_count + 1,
                }
            )
            events.append(
                self._sent_event(
                    business,
                    inviter,
                    invitation.id,
                    invitation.email,
                    token,
                    now + self.ttl,
                    resend=True,
                )
            )
        await self.repo.reissue(rows)
        await self.outbox.enqueue_many(self.session, events)
        return {i.email: i.id for i in invitations}

    # -- managing -----------------------------------------------------------------------

    async def list(
        self, business_id: uuid.UUID, status: str | None, limit: int, offset: int
    ) -> schemas.InvitationPage:
        now = utcnow()
        items, total = await self.repo.page(business_id, status, now, limit, offset)
        return schemas.InvitationPage(
            items=[invitation_out(i, now) for i in items], total=total, limit=limit, offset=offset
        )

    async def quota(self, business_id: uuid.UUID) -> schemas.Quota:
        cap = self.settings.invitation_daily_cap
        sent = await self.repo.sent_on(business_id, utcnow().date())
        return schemas.Quota(daily_cap=cap, sent_today=sent, remaining_today=max(0, cap - sent))

    async def _invitation(self, business_id: uuid.UUID, invitation_id: uuid.UUID) -> Invitation:
        invitation = await self.repo.invitation(business_id, invitation_id)
        if invitation is None:
            raise NotFound("No such invitation.")
        return invitation

    async def revoke(
        self, business_id: uuid.UUID, invitation_id: uuid.UUID
    ) -> schemas.InvitationOut:
        invitation = await self._invitation(business_id, invitation_id)
        if invitation.status != "pending":
            raise Conflict(
                f"The invitation is {invitation.status}; only pending ones can be revoked."
            )
        now = utcnow()
        invitation.status, invitation.revoked_at = "revoked", now
        return invitation_out(invitation, now)

    async def resend(
        self, business_id: uuid.UUID, invitation_id: uuid.UUID, inviter: Principal
    ) -> schemas.InvitationOut:
        invitation = await self._invitation(business_id, invitation_id)
        if invitation.status != "pending":
            raise Conflict(
                f"The invitation is {invitation.status}; invite the address again instead."
            )
        now = utcnow()
        await self._take_quota(business_id, now, 1)
        business = await self.book.business(business_id)
        await self._resend(business, inviter, [invitation], now)
        await self.session.refresh(invitation)
        return invitation_out(invitation, now)

    # -- the invitee's side ---------------------------------------------------------------

    async def _by_token(self, token: str) -> Invitation:
        invitation = await self.repo.by_token_hash(hash_token(token))
        if invitation is None:
            raise NotFound("This invitation link is not valid. Check that you copied all of it.")
        return invitation

    async def lookup(self, token: str) -> schemas.InvitationLookup:
        invitation = await self._by_token(token)
        business = await self.book.business(invitation.business_id)
        status = effective_status(invitation, utcnow())
        account = await self.identity.repo.account_by_email(invitation.email)
        return schemas.InvitationLookup(
            business_name=business.name,
            email=invitation.email,
            status="valid" if status == "pending" else status,  # type: ignore[arg-type]
            account_exists=account is not None,
            expires_at=invitation.expires_at,
        )

    async def accept(
        self, body: schemas.AcceptIn, viewer: Principal | None, user_agent: str | None
    ) -> identity_schemas.AuthResult:
        now = utcnow()
        invitation = await self._by_token(body.token)
        status = effective_status(invitation, now)
        if status != "pending":
            raise Gone(
                {
                    "expired": "This invitation has expired. Ask your coach to send it again.",
                    "revoked": "This invitation was withdrawn.",
                    "accepted": "This invitation was already accepted. Log in to continue.",
                }[status]
            )
        business = await self.book.business(invitation.business_id)
        account = await self._invitee(invitation, body, viewer)

        # Checks are done: now take the invitation. A concurrent accept waits on the
        # row here and then finds it accepted, so exactly one account and client result.
        if (
            await self.repo.consume(invitation.token_hash, now, account.id if account else None)
            is None
        ):
            raise Gone("This invitation was already accepted. Log in to continue.")
        if account is None:
            account = await self.identity.create_verified_account(
                invitation.email,
                body.name or "",
                body.password or "",
                origin="invitation",
                business=business,
            )
            invitation.accepted_account_id = account.id
        await self.book.add_clients(
            business,
            [account],
            source="invited",
            notify=False,
            extra_timeline={account.id: [("invited", "Invited by email", invitation.created_at)]},
        )
        log.info(
            "invitation_accepted", invitation_id=str(invitation.id), business_id=str(business.id)
        )
        return await self.identity.start_session(account, user_agent, next_path=CLIENT_HOME)

    async def _invitee(
        self, invitation: Invitation, body: schemas.AcceptIn, viewer: Principal | None
    ) -> Account | None:
        """The account that accepts, checked; None when a new one must be made."""
        if viewer is not None:
            if viewer.email != invitation.email:
                raise Forbidden(
                    f"This invitation is for {invitation.email}. Log out, then open the link again."
                )
            return await self.identity.repo.account_by_id(viewer.account_id)
        account = await self.identity.repo.account_by_email(invitation.email)
        if account is not None:
            if not body.password or not await verify_password(account.password_hash, body.password):
                raise Unauthorized("The password is incorrect.", errors=[], field="password")
            return account
        if not body.name:
            raise InvalidInput.for_field("name", "Tell us your name.")
        if not body.password:
            raise InvalidInput.for_field("password", "Choose a password.")
        return None
