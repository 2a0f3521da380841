"""Which emails an event calls for, rendered and queued.

Nothing here commits and nothing talks to the mail server: handlers run in
the consumer's transaction and only insert rows; the sender delivers them
afterwards, so a slow or absent mail server never holds up consumption.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.base import Event
from kit.contracts.clients import (
    AccountRegisteredV1,
    BusinessCreatedV1,
    ClientAddedV1,
    EmailVerificationRequestedV1,
    InvitationSentV1,
    MagicLinkRequestedV1,
    PasswordResetRequestedV1,
)
from kit.contracts.payments import (
    OrderPaidV1,
    OrderRefundedV1,
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from kit.db import utcnow
from kit.logging import get_logger
from kit.money import amount
from kit.validation import normalize_email, safe_next_path
from notifications.config import NotificationsSettings
from notifications.emails import money, schemas
from notifications.emails.attachments import Attachment, encode_attachments
from notifications.emails.rendering import (
    EmailRenderer,
    describe_days,
    describe_duration,
    one_line,
)
from notifications.emails.repository import EmailRepository
from notifications.models import FAILED, QUEUED

log = get_logger(__name__)

WELCOME = "welcome"
VERIFY_EMAIL = "verify_email"
MAGIC_LINK = "magic_link"
PASSWORD_RESET = "password_reset"
INVITATION = "invitation"
CLIENT_ADDED = "client_added"
CLAIM_ACCOUNT = "claim_account"
RECEIPT = "receipt"
REFUND = "refund"
SUBSCRIPTION_RENEWED = "subscription_renewed"
SUBSCRIPTION_PAYMENT_FAILED = "subscription_payment_failed"
SUBSCRIPTION_ENDED = "subscription_ended"
SUBSCRIPTION_ENDED_COACH = "subscription_ended_coach"

# Fixed forever: changing it would change every email id and break deduplication.
EMAIL_ID_NAMESPACE = uuid.UUID("5c6d3f0e-7f0a-4a59-9d8e-2f3b1c7e4a10")


def email_id(event_id: uuid.UUID | str, template: str, recipient: str) -> uuid.UUID:
    """The same event (or natural key), template and recipient always give the same id
    (and Message-ID)."""
    return uuid.uuid5(EMAIL_ID_NAMESPACE, f"{event_id}/{template}/{recipient}")


def invoice_key(invoice_id: str, attempt: int | None = None) -> str:
    """The natural key of an email about one invoice (or one attempt to charge it)."""
    key = f"invoice:{invoice_id}"
    return key if attempt is None else f"{key}:attempt:{attempt}"


class BusinessNotKnownYet(RuntimeError):
    """The event names a business whose ``clients.business_created.v1`` has not come yet:
    raised so that the consumer retries the event later rather than drop the email."""


def _expires_in(expires_at: datetime | None, occurred_at: datetime) -> str | None:
    # Measured from the event, not from now: a late redelivery says what the token says.
    return describe_duration(expires_at - occurred_at) if expires_at else None


@dataclass
class EmailService:
    session: AsyncSession
    settings: NotificationsSettings
    renderer: EmailRenderer
    repo: EmailRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = EmailRepository(self.session)

    def _link(self, path: str, **query: str | None) -> str:
        """An absolute link from PUBLIC_BASE_URL, its query url-encoded."""
        params = urlencode({key: value for key, value in query.items() if value is not None})
        return self.settings.public_url(f"{path}?{params}" if params else path)

    # -- events -----------------------------------------------------------------

    async def remember_business(self, event: BusinessCreatedV1) -> None:
        if event.business_id is None:
            log.error("business_created_without_business_id")
            return
        await self.repo.insert_business_if_absent(
            {
                "business_id": event.business_id,
                "name": one_line(event.business_name),
                "slug": event.slug,
                "owner_account_id": event.owner_account_id,
                "owner_email": event.owner_email,
                "created_at": event.occurred_at,
            }
        )

    async def welcome(self, event: AccountRegisteredV1) -> None:
        # The welcome speaks to a coach who just opened a business. A client whose
        # account came from accepting an invitation has just seen their home page
        # and already got the invitation email: a coach's welcome would confuse them.
        if event.origin != "coach_signup":
            return
        business_name = one_line(event.business_name) if event.business_name else None
        if business_name is None and event.business_id:
            business = await self.repo.business_by_id(event.business_id)
            business_name = business.name if business else None
        token = event.verification_token
        context = {
            "name": _name(event.display_name),
            "business_name": business_name,
            "verify_url": self._link("/verify-email", token=token) if token else None,
            "verify_expires_in": _expires_in(event.verification_expires_at, event.occurred_at),
            "account_url": self._link("/account"),
        }
        await self.queue(event, WELCOME, event.email, context, event.business_id)

    async def claim_account(self, event: AccountRegisteredV1) -> None:
        """A purchase made the account (no password yet): the link that sets one."""
        if event.origin != "purchase":
            return
        if not event.claim_token:
            log.error("account_registered_purchase_without_claim_token")
            return
        business_name = await self._business_name(event.business_name, event.business_id)
        context = {
            "name": _name(event.display_name),
            "business_name": business_name or "your coach",
            "claim_url": self._link("/claim", token=event.claim_token),
            "expires_in": describe_days(
                (event.claim_expires_at or event.occurred_at) - event.occurred_at
            ),
        }
        await self.queue(event, CLAIM_ACCOUNT, event.email, context, event.business_id)

    async def verify_email(self, event: EmailVerificationRequestedV1) -> None:
        context = {
            "name": _name(event.display_name),
            "verify_url": self._link("/verify-email", token=event.token),
            "expires_in": _expires_in(event.expires_at, event.occurred_at),
        }
        await self.queue(event, VERIFY_EMAIL, event.email, context, event.business_id)

    async def magic_link(self, event: MagicLinkRequestedV1) -> None:
        # Checked again here: a link in our email must never lead off the site.
        next_path = safe_next_path(event.next_path)
        context = {
            "name": _name(event.display_name),
            "login_url": self._link("/login/magic/confirm", token=event.token, next=next_path),
            "expires_in": _expires_in(event.expires_at, event.occurred_at),
        }
        await self.queue(event, MAGIC_LINK, event.email, context, event.business_id)

    async def password_reset(self, event: PasswordResetRequestedV1) -> None:
        context = {
            "name": _name(event.display_name),
            "reset_url": self._link("/password/reset", token=event.token),
            "expires_in": _expires_in(event.expires_at, event.occurred_at),
        }
        await self.queue(event, PASSWORD_RESET, event.email, context, event.business_id)

    # -- the client book (transactional: sent whatever the unsubscribes say) -------

    async def invitation(self, event: InvitationSentV1) -> None:
        # A resend is another event, hence another email (the token is new too).
        business_name = one_line(event.business_name) or "a coach"
        context = {
            "inviter_name": one_line(event.inviter_name) or business_name,
            "business_name": business_name,
            "accept_url": self._link("/invitations/accept", token=event.token),
            "expires_in": describe_days(event.expires_at - event.occurred_at),
        }
        await self.queue(event, INVITATION, event.email, context, event.business_id)

    async def client_added(self, event: ClientAddedV1) -> None:
        if not event.notify:
            return
        context = {
            "name": _name(event.display_name),
            "business_name": one_line(event.business_name) or "A coach",
            "home_url": self._link("/home"),
        }
        await self.queue(event, CLIENT_ADDED, event.email, context, event.business_id)

    # -- payments ---------------------------------------------------------------

    async def receipt(self, event: OrderPaidV1) -> None:
        """One receipt per order: its id comes from the order, so a second event for the
        same order (not only a redelivery of this one) finds the row already there."""
        locale = self.settings.price_locale
        discount = event.discount_minor if event.discount_minor > 0 else 0
        business_name = await self._business_name(event.business_name, event.business_id)
        total = (
            "Free"
            if event.amount_minor <= 0
            else amount(event.amount_minor, event.currency, locale)
        )
        context = {
            "name": _name(event.buyer_name),
            "business_name": business_name or "your coach",
            "offering_name": one_line(event.offering_name) or "Your purchase",
            "subtotal": amount(event.amount_minor + discount, event.currency, locale)
            if event.amount_minor + discount > 0
            else "Free",
            "discount": amount(discount, event.currency, locale) if discount else None,
            "discount_code": one_line(event.discount_code, 64) if event.discount_code else None,
            "total": total,
            "billing_label": money.billing_label(event.billing),
            "next_charge_on": None,
            "paid_on": money.day(event.paid_at, locale),
            "order_id": str(event.order_id),
            "home_url": self._link("/home"),
        }
        if event.subscription_id is not None:
            # The first invoice of a subscription or payment plan: say what comes next.
            price = amount(event.amount_minor, event.currency, locale)
            label = money.subscription_billing(event.billing, price, event.installments_total)
            if label is not None:
                context["billing_label"] = label
            if event.next_charge_at is not None:
                context["next_charge_on"] = money.day(event.next_charge_at, locale)
        await self.queue(
            event, RECEIPT, event.buyer_email, context, event.business_id, key=event.order_id
        )

    async def refund_issued(self, event: OrderRefundedV1) -> None:
        """One email per refund: its id comes from the refund, like a receipt's from the
        order, so however often the event comes the buyer hears of each refund once."""
        locale = self.settings.price_locale
        business_name = await self._business_name(event.business_name, event.business_id)
        context = {
            "name": _name(event.buyer_name),
            "business_name": business_name or "your coach",
            "offering_name": one_line(event.offering_name) or "Your purchase",
            "refunded": amount(event.amount_minor, event.currency, locale),
            "refunded_total": amount(event.refunded_total_minor, event.currency, locale),
            "full": event.full,
            "access_revoked": event.revoke_access and event.full,
            "refunded_on": money.day(event.refunded_at, locale),
            "order_id": str(event.order_id),
            "home_url": self._link("/home"),
        }
        await self.queue(
            event, REFUND, event.buyer_email, context, event.business_id, key=event.refund_id
        )

    # -- subscriptions and payment plans -------------------------------------------

    async def subscription_renewed(self, event: SubscriptionRenewedV1) -> None:
        """The receipt of a later invoice: once per invoice, whichever event brings it."""
        locale = self.settings.price_locale
        business_name = await self._business_name(event.business_name, event.business_id)
        total = money.installments_of(event.billing, event.installments_total)
        plan = event.billing.get("type") == "payment_plan" or event.installments_total is not None
        period = None
        if event.period_start is not None and event.period_end is not None:
            period = (
                f"{money.day(event.period_start, locale)} to {money.day(event.period_end, locale)}"
            )
        context = {
            "name": _name(event.buyer_name),
            "business_name": business_name or "your coach",
            "offering_name": one_line(event.offering_name) or "Your subscription",
            "paid": amount(event.amount_minor, event.currency, locale),
            "paid_on": money.day(event.paid_at, locale),
            "period": period,
            "installment_label": (
                f"Installment {event.installment} of {total}"
                if plan and total
                else (f"Installment {event.installment}" if plan else None)
            ),
            "completed": event.completed,
            "next_charge_on": (
                money.day(event.next_charge_at, locale)
                if event.next_charge_at is not None and not event.completed
                else None
            ),
            "order_id": str(event.order_id),
            "home_url": self._link("/home"),
        }
        await self.queue(
            event,
            SUBSCRIPTION_RENEWED,
            event.buyer_email,
            context,
            event.business_id,
            key=invoice_key(event.invoice_id),
        )

    async def subscription_payment_failed(self, event: SubscriptionPaymentFailedV1) -> None:
        """Once per failed attempt at an invoice: what failed and where to give a new card."""
        locale = self.settings.price_locale
        business_name = await self._business_name(event.business_name, event.business_id)
        # The link must stay on this site whatever the event says; without a usable path
        # the buyer still hears of the failure and finds the subscription from home.
        path = safe_next_path(event.update_card_path)
        if path is None:
            log.error("update_card_path_refused", subscription_id=str(event.subscription_id))
        failure = one_line(event.failure_message, 300) if event.failure_message else ""
        context = {
            "name": _name(event.buyer_name),
            "business_name": business_name or "your coach",
            "offering_name": one_line(event.offering_name) or "your subscription",
            "amount": amount(event.amount_minor, event.currency, locale),
            "failure_message": failure or None,
            "failed_on": money.day(event.failed_at, locale),
            "next_attempt_on": (
                money.day(event.next_attempt_at, locale) if event.next_attempt_at else None
            ),
            "update_card_url": self.settings.public_url(path) if path else None,
            "home_url": self._link("/home"),
        }
        await self.queue(
            event,
            SUBSCRIPTION_PAYMENT_FAILED,
            event.buyer_email,
            context,
            event.business_id,
            key=invoice_key(event.invoice_id, event.attempt),
        )

    async def subscription_ended(self, event: SubscriptionEndedV1) -> None:
        """Once per subscription: the buyer is told, and the coach unless a plan completed.

        The coach's address comes from the read model of businesses; if the business is
        not known yet the event is retried (raising rolls back the buyer's email too, so
        both are queued together on the retry)."""
        locale = self.settings.price_locale
        business = (
            await self.repo.business_by_id(event.business_id)
            if event.business_id is not None
            else None
        )
        tell_coach = event.reason != "completed"
        if tell_coach and business is None:
            if event.business_id is None:
                log.error("subscription_ended_without_business_id")
                tell_coach = False
            else:
                raise BusinessNotKnownYet(f"business {event.business_id} not known yet")
        named = one_line(event.business_name) if event.business_name else ""
        business_name = named or (business.name if business is not None else "") or "your coach"
        context = {
            "name": _name(event.buyer_name),
            "business_name": business_name,
            "offering_name": one_line(event.offering_name) or "your subscription",
            "reason": event.reason,
            "access_ended": event.revoke_access,
            "installments_paid": event.installments_paid,
            "ended_on": money.day(event.ended_at, locale),
            "home_url": self._link("/home"),
        }
        await self.queue(
            event,
            SUBSCRIPTION_ENDED,
            event.buyer_email,
            context,
            event.business_id,
            key=event.subscription_id,
        )
        if not tell_coach or business is None:
            return
        coach_context = {
            **context,
            "buyer_name": one_line(event.buyer_name) or "A client",
            "buyer_email": _address(event.buyer_email),
            "activity_url": self._link(f"/businesses/{business.business_id}/activity"),
        }
        await self.queue(
            event,
            SUBSCRIPTION_ENDED_COACH,
            business.owner_email,
            coach_context,
            event.business_id,
            key=event.subscription_id,
        )

    async def _business_name(self, named: str | None, business_id: uuid.UUID | None) -> str | None:
        """The name the event gives, else the one the read model of businesses knows."""
        if named and one_line(named):
            return one_line(named)
        if business_id is not None:
            business = await self.repo.business_by_id(business_id)
            if business is not None:
                return business.name
        return None

    # -- queueing ---------------------------------------------------------------

    async def queue(
        self,
        event: Event,
        template: str,
        recipient: str,
        context: dict[str, Any],
        business_id: uuid.UUID | None,
        key: uuid.UUID | str | None = None,
        *,
        attachments: list[Attachment] | None = None,
        send_at: datetime | None = None,
    ) -> bool:
        """Render and store the email for the sender. False when it was already queued.

        The email's id derives from ``key`` (default: the event's id; else the natural
        key of what the email is about: an order, a refund, an invoice), the template
        and the recipient, so the same key never queues a second email. ``send_at``
        (default: now) is when it becomes due: the sender takes no row before then.
        """
        rendered = self.renderer.render(template, context)
        now = utcnow()
        status, last_error = QUEUED, None
        try:
            address = normalize_email(recipient)
        except ValueError as exc:
            # Kept (as failed) rather than dropped, so the log shows what happened.
            address = one_line(recipient, 320)
            status, last_error = FAILED, f"invalid recipient address: {exc}"[:500]
        row_id = email_id(key or event.id, template, address)
        inserted = await self.repo.insert_if_absent(
            {
                "id": row_id,
                "business_id": business_id,
                "event_id": event.id,
                "event_name": event.name,
                "template": template,
                "recipient": address,
                "subject": rendered.subject,
                "text_body": rendered.text_body,
                "html_body": rendered.html_body,
                "status": status,
                "attempts": 0,
                "last_error": last_error,
                "next_attempt_at": send_at or now,
                "created_at": now,
                "attachments": encode_attachments(attachments),
            }
        )
        if status == FAILED:
            log.error("email_recipient_invalid", email_id=str(row_id), template=template)
        elif inserted:
            log.info("email_queued", email_id=str(row_id), template=template)
        else:
            log.info("email_already_queued", email_id=str(row_id), template=template)
        return inserted


def _name(display_name: str) -> str:
    return one_line(display_name) or "there"


def _address(value: str) -> str:
    """An address to show (normalised when it is one), on one line."""
    try:
        return normalize_email(value)
    except ValueError:
        return one_line(value, 320)


async def list_business_emails(
    session: AsyncSession, business_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> schemas.EmailPage:
    rows, total = await EmailRepository(session).page_for_business(
        business_id, status, limit, offset
    )
    return schemas.EmailPage(
        items=[schemas.EmailOut.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
