"""Identity logic: signup, login, sessions, magic links, password resets, verification.

Nothing here commits: the request (or worker) that calls it owns the
transaction, so the state change and its events are stored together.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from clients.config import ClientsSettings
from clients.identity import schemas
from clients.identity.passwords import hash_password, password_problem, verify_password
from clients.identity.repository import IdentityRepository
from clients.identity.signing import TokenSigner
from clients.models import Account, Business, LoginSession, OneTimeToken, StaffMember
from kit.contracts.clients import (
    AccountRegisteredV1,
    BusinessCreatedV1,
    EmailVerificationRequestedV1,
    MagicLinkRequestedV1,
    PasswordResetRequestedV1,
)
from kit.db import utcnow
from kit.errors import Conflict, Gone, InvalidInput, Unauthorized
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.tokens import hash_token, new_token
from kit.validation import clean_text, normalize_email, safe_next_path

log = get_logger(__name__)
TokenEvent = MagicLinkRequestedV1 | PasswordResetRequestedV1 | EmailVerificationRequestedV1

MAGIC_LINK = "magic_link"
PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
ACCOUNT_CLAIM = "account_claim"
CLIENT_HOME = "/home"

RESERVED_SLUGS = frozenset(
    {"admin", "api", "app", "account", "dev", "login", "logout", "signup", "static", "www"}
)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")[:60].strip("-")
    if not slug or slug in RESERVED_SLUGS:
        slug = f"{slug or 'business'}-{secrets.token_hex(2)}"
    return slug


@dataclass
class IdentityService:
    session: AsyncSession
    settings: ClientsSettings
    signer: TokenSigner
    outbox: Outbox
    repo: IdentityRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = IdentityRepository(self.session)

    # -- signup and login -----------------------------------------------------

    async def signup(
        self, request: schemas.SignupRequest, user_agent: str | None
    ) -> schemas.AuthResult:
        problem = password_problem(request.password, email=request.email, name=request.name)
        if problem:
            raise InvalidInput.for_field("password", f"Password {problem}.")
        if await self.repo.account_by_email(request.email) is not None:
            raise Conflict("An account with this email already exists; log in instead.")
        account = Account(
            id=uuid.uuid4(),
            email=request.email,
            display_name=request.name,
            password_hash=await hash_password(request.password),
        )
        if not await self.repo.insert_account(account):
            raise Conflict("An account with this email already exists; log in instead.")
        business = await self._create_business(account, request.business_name)
        verification_token, verification_expiry = await self._issue_token(
            account, EMAIL_VERIFICATION, timedelta(hours=self.settings.email_verification_ttl_hours)
        )
        await self.outbox.enqueue(
            self.session,
            AccountRegisteredV1(
                business_id=business.id,
                account_id=account.id,
                email=account.email,
                display_name=account.display_name,
                verification_token=verification_token,
                verification_expires_at=verification_expiry,
                origin="coach_signup",
                business_name=business.name,
            ),
        )
        await self.outbox.enqueue(
            self.session,
            BusinessCreatedV1(
                business_id=business.id,
                business_name=business.name,
                slug=business.slug,
                owner_account_id=account.id,
                owner_email=account.email,
            ),
        )
        log.info("coach_signed_up", account_id=str(account.id), business_id=str(business.id))
        result = await self.start_session(account, user_agent)
        result.business = schemas.BusinessOut(
            id=business.id, name=business.name, slug=business.slug, role="owner"
        )
        return result

    async def create_verified_account(
        self, email: str, name: str, password: str, *, origin: str, business: Business
    ) -> Account:
        """An account for someone who proved the address by opening an emailed link."""
        problem = password_problem(password, email=email, name=name)
        if problem:
            raise InvalidInput.for_field("password", f"Password {problem}.")
        account = Account(
            id=uuid.uuid4(),
            email=email,
            display_name=name,
            password_hash=await hash_password(password),
            email_verified_at=utcnow(),
        )
        if not await self.repo.insert_account(account):
            raise Conflict("An account with this email already exists; log in instead.")
        await self.outbox.enqueue(
            self.session,
            AccountRegisteredV1(
                business_id=business.id,
                account_id=account.id,
                email=account.email,
                display_name=account.display_name,
                origin=origin,
                business_name=business.name,
            ),
        )
        return account

    async def accounts_for_purchases(
        self, buyers: list[tuple[uuid.UUID | None, str, str]], *, business: Business
    ) -> list[Account]:
        """The buyers' accounts (buyer: account id or None, email, name), in the same
        order: by id (a logged-in buyer), else by email; made when new, one query per
        step for the whole batch.

        A new account has no password and an unverified address; its owner gets a
        single-use claim link (``clients.account_registered.v1``, origin ``purchase``)
        to set one. One email is one account: an email twice in the batch is one
        account, and of two concurrent purchases for a new address the unique email
        decides and the other finds the winner's account.
        """
        known_ids = [account_id for account_id, _, _ in buyers if account_id is not None]
        by_id = await self.repo.accounts_by_ids(known_ids) if known_ids else {}
        wanted = sorted(
            {_normal_email(email) for account_id, email, _ in buyers if account_id not in by_id}
        )
        by_email = await self.repo.accounts_by_emails(wanted) if wanted else {}
        new: dict[str, dict[str, object]] = {}
        for account_id, email, name in buyers:
            address = _normal_email(email)
            if account_id in by_id or address in by_email or address in new:
                continue
            now = utcnow()
            new[address] = {
                "id": uuid.uuid4(),
                "email": address,
                "display_name": _display_name(name, address),
                "password_hash": None,
                "created_at": now,
                "updated_at": now,
            }
        if new:
            made = await self.repo.insert_new_accounts(list(new.values()))
            # Made now, or meanwhile by a concurrent purchase (committed): read them all.
            by_email.update(await self.repo.accounts_by_emails(list(new)))
            await self._announce_purchase_accounts(
                [by_email[a] for a, row in new.items() if row["id"] in made], business
            )
        return [
            by_id.get(account_id) if account_id in by_id else by_email[_normal_email(email)]  # type: ignore[misc]
            for account_id, email, _ in buyers
        ]

    async def _announce_purchase_accounts(
        self, accounts: list[Account], business: Business
    ) -> None:
        """A claim link for each account a purchase made."""
        ttl = timedelta(days=self.settings.account_claim_ttl_days)
        tokens, events = [], []
        for account in accounts:
            token, token_hash = new_token()
            expires_at = utcnow() + ttl
            tokens.append(
                OneTimeToken(
                    account_id=account.id,
                    purpose=ACCOUNT_CLAIM,
                    token_hash=token_hash,
                    expires_at=expires_at,
                    next_path=None,
                )
            )
            events.append(
                AccountRegisteredV1(
                    business_id=business.id,
                    account_id=account.id,
                    email=account.email,
                    display_name=account.display_name,
                    origin="purchase",
                    business_name=business.name,
                    claim_token=token,
                    claim_expires_at=expires_at,
                )
            )
            log.info("account_created_by_purchase", account_id=str(account.id))
        await self.repo.add_tokens(tokens)
        await self.outbox.enqueue_many(self.session, events)

    async def _create_business(self, owner: Account, name: str) -> Business:
        base = slugify(name)
        for _ in range(5):
            taken = await self.repo.slugs_like(base)
            slug = base
            suffix = 2
            while slug in taken:
                slug = f"{base}-{suffix}"
                suffix += 1
            business = Business(id=uuid.uuid4(), name=name, slug=slug, owner_account_id=owner.id)
            if await self.repo.insert_business(business):
                await self.repo.add_staff(
                    StaffMember(business_id=business.id, account_id=owner.id, role="owner")
                )
                return business
        raise Conflict("Could not find a free address for this business; try another name.")

    async def login(
        self, request: schemas.LoginRequest, user_agent: str | None
    ) -> schemas.AuthResult:
        account = await self.repo.account_by_email(request.email)
        password_hash = account.password_hash if account else None
        if not await verify_password(password_hash, request.password) or account is None:
            raise Unauthorized("The email or password is incorrect.")
        return await self.start_session(account, user_agent)

    async def start_session(
        self, account: Account, user_agent: str | None, next_path: str | None = None
    ) -> schemas.AuthResult:
        session_token, token_hash = new_token()
        login_session = LoginSession(
            id=uuid.uuid4(),
            account_id=account.id,
            token_hash=token_hash,
            expires_at=utcnow() + timedelta(days=self.settings.session_ttl_days),
            user_agent=(user_agent or "")[:300] or None,
        )
        await self.repo.add_session(login_session)
        access_token = await self._access_token(account, login_session.id)
        return schemas.AuthResult(
            account=account_out(account),
            access_token=access_token,
            expires_in=self.signer.ttl_seconds,
            session_token=session_token,
            session_expires_at=login_session.expires_at,
            next=safe_next_path(next_path),
        )

    async def _access_token(self, account: Account, session_id: uuid.UUID) -> str:
        return self.signer.issue(
            account_id=account.id,
            email=account.email,
            name=account.display_name,
            session_id=session_id,
            staff_of=await self.repo.staff_roles(account.id),
        )

    async def exchange_session(self, session_token: str) -> schemas.AccessToken:
        """A fresh access token for a live session (the gateway's cookie holds the session)."""
        login_session = await self.repo.active_session(hash_token(session_token), utcnow())
        account = await self.repo.account_by_id(login_session.account_id) if login_session else None
        if login_session is None or account is None:
            raise Unauthorized("The session has ended; log in again.")
        return schemas.AccessToken(
            access_token=await self._access_token(account, login_session.id),
            expires_in=self.signer.ttl_seconds,
            account_id=account.id,
        )

    async def logout(self, session_token: str) -> None:
        await self.repo.revoke_session(hash_token(session_token), utcnow())

    # -- one-time tokens ------------------------------------------------------

    async def _issue_token(
        self, account: Account, purpose: str, ttl: timedelta, next_path: str | None = None
    ) -> tuple[str, datetime]:
        token, token_hash = new_token()
        expires_at = utcnow() + ttl
        await self.repo.add_token(
            OneTimeToken(
                account_id=account.id,
                purpose=purpose,
                token_hash=token_hash,
                expires_at=expires_at,
                next_path=next_path,
            )
        )
        return token, expires_at

    async def _announce_token(
        self,
        event_type: type[TokenEvent],
        account: Account,
        token: str,
        expires_at: datetime,
        **extra: str | None,
    ) -> None:
        """Tell notifications to email a token: it travels only in the event body."""
        event = event_type(
            account_id=account.id,
            email=account.email,
            display_name=account.display_name,
            token=token,
            expires_at=expires_at,
            **extra,
        )
        await self.outbox.enqueue(self.session, event)

    async def request_magic_link(self, request: schemas.MagicLinkRequest) -> None:
        """Always answers the same way: nobody learns whether the email has an account."""
        account = await self.repo.account_by_email(request.email)
        if account is None:
            log.info("magic_link_unknown_email")
            return
        ttl = timedelta(minutes=min(self.settings.magic_link_ttl_minutes, 15))
        next_path = safe_next_path(request.next)
        token, expires_at = await self._issue_token(account, MAGIC_LINK, ttl, next_path)
        await self._announce_token(
            MagicLinkRequestedV1, account, token, expires_at, next_path=next_path
        )

    async def _consume(self, token: str, purpose: str, gone: str) -> tuple[Account, str | None]:
        """Use up a one-time token: its account and next path, or Gone."""
        consumed = await self.repo.consume_token(hash_token(token), purpose, utcnow())
        account = await self.repo.account_by_id(consumed[0]) if consumed else None
        if consumed is None or account is None:
            raise Gone(gone)
        return account, consumed[1]

    async def consume_magic_link(self, token: str, user_agent: str | None) -> schemas.AuthResult:
        account, next_path = await self._consume(
            token, MAGIC_LINK, "This login link has expired or was already used. Ask for a new one."
        )
        # Opening the link proves the address belongs to the person.
        account.email_verified_at = account.email_verified_at or utcnow()
        return await self.start_session(account, user_agent, next_path=next_path)

    async def request_password_reset(self, request: schemas.PasswordResetRequest) -> None:
        account = await self.repo.account_by_email(request.email)
        if account is None:
            log.info("password_reset_unknown_email")
            return
        ttl = timedelta(minutes=self.settings.password_reset_ttl_minutes)
        token, expires_at = await self._issue_token(account, PASSWORD_RESET, ttl)
        await self._announce_token(PasswordResetRequestedV1, account, token, expires_at)

    async def reset_password(
        self, request: schemas.PasswordResetConsume, user_agent: str | None
    ) -> schemas.AuthResult:
        return await self.set_password_with_token(
            request.token,
            request.password,
            PASSWORD_RESET,
            "This reset link has expired or was already used. Ask for a new one.",
            user_agent,
        )

    async def claim_account(
        self, token: str, password: str, user_agent: str | None
    ) -> schemas.AuthResult:
        """The owner of an account a purchase made sets its password (and so proves the
        address): the same path as a password reset, with its own single-use token."""
        return await self.set_password_with_token(
            token,
            password,
            ACCOUNT_CLAIM,
            "This link has expired or was already used. Ask for a password reset link "
            "to set your password.",
            user_agent,
            next_path=CLIENT_HOME,
        )

    async def set_password_with_token(
        self,
        token: str,
        password: str,
        purpose: str,
        gone: str,
        user_agent: str | None,
        next_path: str | None = None,
    ) -> schemas.AuthResult:
        """Use up an emailed token to set the password, verify the address, end every
        other session and start a new one (password reset and account claim)."""
        now = utcnow()
        token_hash = hash_token(token)
        pending = await self.repo.valid_token(token_hash, purpose, now)
        account = await self.repo.account_by_id(pending.account_id) if pending else None
        if pending is None or account is None:
            raise Gone(gone)
        # Check the new password before using up the token, so a typo costs nothing.
        problem = password_problem(password, email=account.email, name=account.display_name)
        if problem:
            raise InvalidInput.for_field("password", f"Password {problem}.")
        if await self.repo.consume_token(token_hash, purpose, now) is None:
            raise Gone(gone)
        account.password_hash = await hash_password(password)
        account.email_verified_at = account.email_verified_at or now
        await self.repo.consume_all_tokens(account.id, purpose, now)
        await self.repo.revoke_sessions_of(account.id, now)
        log.info("password_set_with_token", purpose=purpose, account_id=str(account.id))
        return await self.start_session(account, user_agent, next_path=next_path)

    async def verify_email(self, token: str) -> schemas.AccountOut:
        account, _ = await self._consume(
            token, EMAIL_VERIFICATION, "This verification link has expired or was already used."
        )
        account.email_verified_at = account.email_verified_at or utcnow()
        return account_out(account)

    async def resend_verification(self, account_id: uuid.UUID) -> bool:
        """False when there is nothing to do (already verified)."""
        account = await self.repo.account_by_id(account_id)
        if account is None:
            raise Unauthorized()
        if account.email_verified_at is not None:
            return False
        ttl = timedelta(hours=self.settings.email_verification_ttl_hours)
        token, expires_at = await self._issue_token(account, EMAIL_VERIFICATION, ttl)
        await self._announce_token(EmailVerificationRequestedV1, account, token, expires_at)
        return True

    # -- reading --------------------------------------------------------------

    async def me(self, account_id: uuid.UUID) -> schemas.Me:
        account = await self.repo.account_by_id(account_id)
        if account is None:
            raise Unauthorized("This account no longer exists.")
        businesses = [
            schemas.BusinessOut(id=b.id, name=b.name, slug=b.slug, role=role)
            for b, role in await self.repo.businesses_of(account_id)
        ]
        return schemas.Me(account=account_out(account), businesses=businesses)


def _normal_email(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError:
        return email.strip().lower()


def _display_name(name: str, email: str) -> str:
    try:
        return clean_text(name)[:200]
    except ValueError:
        return email.split("@", 1)[0][:200] or "Client"


def account_out(account: Account) -> schemas.AccountOut:
    return schemas.AccountOut(
        id=account.id,
        email=account.email,
        name=account.display_name,
        email_verified=account.email_verified_at is not None,
        created_at=account.created_at or utcnow(),
    )
