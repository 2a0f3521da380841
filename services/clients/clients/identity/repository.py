"""Every query of the identity domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import Account, Business, LoginSession, OneTimeToken, StaffMember
from kit.db import insert_ignoring_conflicts


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- accounts -------------------------------------------------------------

    async def account_by_email(self, email: str) -> Account | None:
        result = await self.session.execute(select(Account).where(Account.email == email))
        return result.scalar_one_or_none()

    async def accounts_by_emails(self, emails: list[str]) -> dict[str, Account]:
        found: dict[str, Account] = {}
        for start in range(0, len(emails), 1000):  # databases cap bound parameters
            part = emails[start : start + 1000]
            result = await self.session.execute(select(Account).where(Account.email.in_(part)))
            found.update({a.email: a for a in result.scalars()})
        return found

    async def accounts_by_ids(self, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, Account]:
        found: dict[uuid.UUID, Account] = {}
        for start in range(0, len(account_ids), 1000):
            part = account_ids[start : start + 1000]
            result = await self.session.execute(select(Account).where(Account.id.in_(part)))
            found.update({a.id: a for a in result.scalars()})
        return found

    async def insert_new_accounts(self, rows: list[dict[str, object]]) -> set[uuid.UUID]:
        """Insert accounts whose email is free (also under a concurrent insert: the unique
        email decides); the ids actually inserted."""
        if not rows:
            return set()
        statement = insert_ignoring_conflicts(
            str(self.session.get_bind().dialect.name),
            Account.__table__,  # type: ignore[arg-type]
            ["email"],
        ).returning(Account.__table__.c.id)
        return set((await self.session.execute(statement, rows)).scalars())

    async def add_tokens(self, tokens: list[OneTimeToken]) -> None:
        self.session.add_all(tokens)
        await self.session.flush()

    async def account_by_id(self, account_id: uuid.UUID) -> Account | None:
        return await self.session.get(Account, account_id)

    async def insert_account(self, account: Account) -> bool:
        """False when the email is already taken (also under a concurrent signup)."""
        try:
            async with self.session.begin_nested():
                self.session.add(account)
        except IntegrityError:
            return False
        return True

    # -- businesses -----------------------------------------------------------

    async def slugs_like(self, base: str) -> set[str]:
        result = await self.session.execute(
            select(Business.slug).where(
                (Business.slug == base) | Business.slug.startswith(f"{base}-", autoescape=True)
            )
        )
        return set(result.scalars())

    async def insert_business(self, business: Business) -> bool:
        """False when the slug was taken meanwhile."""
        try:
            async with self.session.begin_nested():
                self.session.add(business)
        except IntegrityError:
            return False
        return True

    async def add_staff(self, member: StaffMember) -> None:
        self.session.add(member)
        await self.session.flush()

    async def staff_roles(self, account_id: uuid.UUID) -> dict[uuid.UUID, str]:
        result = await self.session.execute(
            select(StaffMember.business_id, StaffMember.role).where(
                StaffMember.account_id == account_id
            )
        )
        return {business_id: role for business_id, role in result.all()}

    async def businesses_of(self, account_id: uuid.UUID) -> list[tuple[Business, str]]:
        result = await self.session.execute(
            select(Business, StaffMember.role)
            .join(StaffMember, StaffMember.business_id == Business.id)
            .where(StaffMember.account_id == account_id)
            .order_by(Business.created_at)
        )
        return [(business, role) for business, role in result.all()]

    # -- login sessions -------------------------------------------------------

    async def add_session(self, login_session: LoginSession) -> None:
        self.session.add(login_session)
        await self.session.flush()

    async def active_session(self, token_hash: str, now: datetime) -> LoginSession | None:
        result = await self.session.execute(
            select(LoginSession).where(
                LoginSession.token_hash == token_hash,
                LoginSession.revoked_at.is_(None),
                LoginSession.expires_at > now,
            )
        )
        return result.scalar_one_or_none()

    async def revoke_session(self, token_hash: str, now: datetime) -> None:
        await self.session.execute(
            update(LoginSession)
            .where(LoginSession.token_hash == token_hash, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_sessions_of(self, account_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(LoginSession)
            .where(LoginSession.account_id == account_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    # -- one-time tokens ------------------------------------------------------

    async def add_token(self, token: OneTimeToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def valid_token(
        self, token_hash: str, purpose: str, now: datetime
    ) -> OneTimeToken | None:
        result = await self.session.execute(
            select(OneTimeToken).where(
                OneTimeToken.token_hash == token_hash,
                OneTimeToken.purpose == purpose,
                OneTimeToken.consumed_at.is_(None),
                OneTimeToken.expires_at > now,
            )
        )
        return result.scalar_one_or_none()

    async def consume_token(
        self, token_hash: str, purpose: str, now: datetime
    ) -> tuple[uuid.UUID, str | None] | None:
        """Atomically use a token: only one of two concurrent consumers gets it."""
        result = await self.session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.token_hash == token_hash,
                OneTimeToken.purpose == purpose,
                OneTimeToken.consumed_at.is_(None),
                OneTimeToken.expires_at > now,
            )
            .values(consumed_at=now)
            .returning(OneTimeToken.account_id, OneTimeToken.next_path)
        )
        row = result.first()
        return (row[0], row[1]) if row else None

    async def consume_all_tokens(self, account_id: uuid.UUID, purpose: str, now: datetime) -> None:
        await self.session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.account_id == account_id,
                OneTimeToken.purpose == purpose,
                OneTimeToken.consumed_at.is_(None),
            )
            .values(consumed_at=now)
        )

    async def purge_expired(self, before: datetime) -> int:
        """Forget tokens and sessions that ended before ``before``."""
        removed = 0
        for table, column in (
            (OneTimeToken, OneTimeToken.expires_at),
            (LoginSession, LoginSession.expires_at),
        ):
            result = await self.session.execute(delete(table).where(column < before))
            removed += int(getattr(result, "rowcount", 0) or 0)
        return removed
