"""The one place that talks to Stripe: a thin wrapper over ``stripe.StripeClient``'s
async methods, answering plain dataclasses so nothing else imports ``stripe``.

Every call that creates something carries an idempotency key derived from our
own ids (Stripe replays the first answer for 24 hours). Our unique columns are
the other half of the guarantee: localstripe, for one, ignores the keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe

from kit.errors import InvalidInput, ServiceError
from kit.logging import get_logger

log = get_logger(__name__)


class PaymentProviderError(ServiceError):
    """Stripe could not be reached or refused a request we thought was right."""

    status, slug, title = 502, "payment-provider-error", "Payment provider error"


class InvalidWebhook(ServiceError):
    status, slug, title = 400, "invalid-webhook", "Invalid webhook"


@dataclass(frozen=True)
class SetupIntentInfo:
    id: str
    status: str
    client_secret: str | None
    payment_method: str | None
    customer: str | None


@dataclass(frozen=True)
class CardInfo:
    payment_method_id: str
    customer: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str | None = None


@dataclass(frozen=True)
class PaymentIntentInfo:
    id: str
    # requires_payment_method | requires_confirmation | requires_action | processing |
    # succeeded | canceled
    status: str
    client_secret: str | None
    amount: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)
    failure_message: str | None = None


@dataclass(frozen=True)
class InvoiceInfo:
    """What we keep of an invoice of a subscription (from the API or a webhook)."""

    id: str
    subscription: str | None
    status: str  # draft | open | paid | uncollectible | void
    amount_due: int
    amount_paid: int
    currency: str
    created: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    attempt_count: int
    next_payment_attempt: datetime | None
    payment_intent: PaymentIntentInfo | None
    payment_intent_id: str | None


@dataclass(frozen=True)
class SubscriptionInfo:
    id: str
    # incomplete | incomplete_expired | trialing | active | past_due | unpaid | canceled
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    latest_invoice: InvoiceInfo | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundInfo:
    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    amount: int
    currency: str


@dataclass(frozen=True)
class ChargeRefunds:
    """What a ``charge.refunded`` event says: the charge's PaymentIntent and how much of
    the charge is refunded in all (Stripe's running total)."""

    charge_id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)


def charge_refunds(charge: Any) -> ChargeRefunds:
    charge = _plain(charge)
    metadata = charge.get("metadata") or {}
    return ChargeRefunds(
        charge_id=str(charge["id"]),
        payment_intent_id=_id_of(charge.get("payment_intent")),
        amount=int(charge.get("amount") or 0),
        amount_refunded=int(charge.get("amount_refunded") or 0),
        currency=str(charge.get("currency") or ""),
        metadata={str(k): str(v) for k, v in dict(metadata).items()},
    )


def _plain(value: Any) -> Any:
    """A Stripe object as plain dicts and lists (webhook payloads already are)."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _id_of(value: Any) -> str | None:
    """An id from a field that may be an id or an expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    found = getattr(value, "id", None) or (value.get("id") if isinstance(value, dict) else None)
    return str(found) if found else None


def stripe_time(value: Any) -> datetime | None:
    """A Stripe timestamp (seconds since the epoch) as an aware datetime."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def invoice_info(invoice: Any) -> InvoiceInfo:
    """An invoice from the API or a webhook. Newer API versions moved the subscription
    under ``parent`` and the period onto the lines: both shapes are read."""
    invoice = _plain(invoice)
    subscription = _id_of(invoice.get("subscription"))
    if subscription is None:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        subscription = _id_of(details.get("subscription"))
    lines = (invoice.get("lines") or {}).get("data") or []
    period = (lines[0].get("period") if lines and isinstance(lines[0], dict) else None) or {}
    intent = invoice.get("payment_intent")
    return InvoiceInfo(
        id=str(invoice["id"]),
        subscription=subscription,
        status=str(invoice.get("status") or ""),
        amount_due=int(invoice.get("amount_due") or 0),
        amount_paid=int(invoice.get("amount_paid") or 0),
        currency=str(invoice.get("currency") or ""),
        created=stripe_time(invoice.get("created") or invoice.get("date")),
        period_start=stripe_time(period.get("start") or invoice.get("period_start")),
        period_end=stripe_time(period.get("end") or invoice.get("period_end")),
        attempt_count=int(invoice.get("attempt_count") or 1),
        next_payment_attempt=stripe_time(invoice.get("next_payment_attempt")),
        payment_intent=payment_intent_info(intent) if isinstance(intent, dict) else None,
        payment_intent_id=_id_of(intent),
    )


def subscription_info(subscription: Any) -> SubscriptionInfo:
    subscription = _plain(subscription)
    period_end = subscription.get("current_period_end")
    if period_end is None:  # newer API versions keep the period on the item
        items = (subscription.get("items") or {}).get("data") or []
        period_end = items[0].get("current_period_end") if items else None
    latest = subscription.get("latest_invoice")
    metadata = subscription.get("metadata") or {}
    return SubscriptionInfo(
        id=str(subscription["id"]),
        status=str(subscription.get("status") or ""),
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        current_period_end=stripe_time(period_end),
        latest_invoice=invoice_info(latest) if isinstance(latest, dict) else None,
        metadata={str(k): str(v) for k, v in dict(metadata).items()},
    )


def _failure_message(intent: Any) -> str | None:
    error = intent.get("last_payment_error")
    if not error:
        return None
    message = error.get("message") if hasattr(error, "get") else None
    return str(message) if message else "The payment failed."


def payment_intent_info(intent: Any) -> PaymentIntentInfo:
    """What we keep of a PaymentIntent (from the API or a webhook's ``data.object``)."""
    intent = _plain(intent)
    metadata = intent.get("metadata") or {}
    return PaymentIntentInfo(
        id=str(intent["id"]),
        status=str(intent["status"]),
        client_secret=intent.get("client_secret"),
        amount=int(intent.get("amount") or 0),
        currency=str(intent.get("currency") or ""),
        metadata={str(k): str(v) for k, v in dict(metadata).items()},
        failure_message=_failure_message(intent),
    )


# The first invoice's PaymentIntent, to settle or to confirm with 3-D Secure.
EXPAND_LATEST_INVOICE = ("latest_invoice", "latest_invoice.payment_intent")


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        api_base: str = "",
        publishable_key: str = "",
        js_url: str = "https://js.stripe.com/v3/",
    ) -> None:
        self.publishable_key = publishable_key
        self.js_url = js_url
        self._http = stripe.AIOHTTPClient(timeout=30)
        self.client = stripe.StripeClient(
            api_key or "sk_unset",
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http,
            max_network_retries=2,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- customers ----------------------------------------------------------------------

    async def create_customer(
        self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        customer = await self._call(
            self.client.v1.customers.create_async(
                params={"email": email, "name": name, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(customer.id)

    # -- cards --------------------------------------------------------------------------

    async def create_setup_intent(
        self,
        *,
        customer: str,
        metadata: dict[str, str],
        idempotency_key: str,
        usage: str = "on_session",
    ) -> SetupIntentInfo:
        """``usage`` is ``off_session`` for a card that renewals will charge while the
        buyer is away. Only parameters that mean the same on every API version (and
        that localstripe knows): cards are what Stripe offers by default."""
        intent = await self._call(
            self.client.v1.setup_intents.create_async(
                params={
                    "customer": customer,
                    "usage": usage,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return self._setup_intent(intent)

    async def setup_intent(self, setup_intent_id: str) -> SetupIntentInfo:
        return self._setup_intent(
            await self._call(self.client.v1.setup_intents.retrieve_async(setup_intent_id))
        )

    @staticmethod
    def _setup_intent(intent: Any) -> SetupIntentInfo:
        intent = _plain(intent)
        return SetupIntentInfo(
            id=str(intent["id"]),
            status=str(intent["status"]),
            client_secret=intent.get("client_secret"),
            payment_method=_id_of(intent.get("payment_method")),
            customer=_id_of(intent.get("customer")),
        )

    async def card(self, payment_method_id: str) -> CardInfo | None:
        """The card behind a PaymentMethod; None when there is no such card."""
        try:
            method = await self.client.v1.payment_methods.retrieve_async(payment_method_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError(str(exc.user_message or "Stripe is unreachable.")) from exc
        method = _plain(method)
        card = method.get("card")
        if method.get("type") != "card" or not card:
            return None
        return CardInfo(
            payment_method_id=str(method["id"]),
            customer=_id_of(method.get("customer")),
            brand=str(card.get("brand") or "card"),
            last4=str(card.get("last4") or ""),
            exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0),
            fingerprint=str(card["fingerprint"]) if card.get("fingerprint") else None,
        )

    async def attach(self, payment_method_id: str, customer: str) -> None:
        try:
            await self.client.v1.payment_methods.attach_async(
                payment_method_id, params={"customer": customer}
            )
        except stripe.CardError as exc:
            raise InvalidInput.for_field(
                "payment_method_id", str(exc.user_message or "The card was declined.")
            ) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc

    # -- payments -----------------------------------------------------------------------

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> PaymentIntentInfo:
        intent = await self._call(
            self.client.v1.payment_intents.create_async(
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "customer": customer,
                    "payment_method": payment_method,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return payment_intent_info(intent)

    async def confirm_payment_intent(
        self, payment_intent_id: str, *, idempotency_key: str
    ) -> PaymentIntentInfo:
        """Confirm; a declined card is an answer (status and failure_message), not an error."""
        try:
            intent = await self.client.v1.payment_intents.confirm_async(
                payment_intent_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.CardError as exc:
            found = await self.payment_intent(payment_intent_id)
            message = str(exc.user_message or found.failure_message or "The card was declined.")
            return PaymentIntentInfo(
                id=found.id,
                status=found.status,
                client_secret=found.client_secret,
                amount=found.amount,
                currency=found.currency,
                metadata=found.metadata,
                failure_message=message,
            )
        except stripe.StripeError as exc:
            log.warning("stripe_confirm_failed", error=type(exc).__name__)
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
        return payment_intent_info(intent)

    async def payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        return payment_intent_info(
            await self._call(self.client.v1.payment_intents.retrieve_async(payment_intent_id))
        )

    # -- subscriptions ------------------------------------------------------------------

    async def create_product(
        self, *, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        product = await self._call(
            self.client.v1.products.create_async(
                params={"name": name, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(product.id)

    async def create_plan(
        self,
        *,
        product: str,
        amount: int,
        currency: str,
        interval: str,
        interval_count: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        plan = await self._call(
            self.client.v1.plans.create_async(
                params={
                    "product": product,
                    "amount": amount,
                    "currency": currency.lower(),
                    "interval": interval,
                    "interval_count": interval_count,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(plan.id)

    async def set_default_card(self, customer: str, payment_method_id: str) -> None:
        """The card invoices charge: the customer's default (localstripe knows no
        per-subscription default, and every subscription of a buyer uses one card)."""
        await self._call(
            self.client.v1.customers.update_async(
                customer,
                params={"invoice_settings": {"default_payment_method": payment_method_id}},
            )
        )

    async def create_subscription(
        self, *, customer: str, plan: str, metadata: dict[str, str], idempotency_key: str
    ) -> SubscriptionInfo:
        """Subscribe and charge the first invoice now (a declined card is an answer:
        the subscription stays ``incomplete`` and its PaymentIntent says why)."""
        try:
            subscription = await self.client.v1.subscriptions.create_async(
                params={
                    "customer": customer,
                    "items": [{"plan": plan}],
                    "metadata": metadata,
                    "expand": list(EXPAND_LATEST_INVOICE),
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            raise InvalidInput.for_field(
                "payment_method_id", str(exc.user_message or "The card was declined.")
            ) from exc
        except stripe.StripeError as exc:
            log.warning("stripe_call_failed", error=type(exc).__name__, status=exc.http_status)
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
        return subscription_info(subscription)

    async def subscription(self, subscription_id: str) -> SubscriptionInfo:
        return subscription_info(
            await self._call(
                self.client.v1.subscriptions.retrieve_async(
                    subscription_id, params={"expand": list(EXPAND_LATEST_INVOICE)}
                )
            )
        )

    async def cancel_at_period_end(self, subscription_id: str) -> SubscriptionInfo:
        return subscription_info(
            await self._call(
                self.client.v1.subscriptions.update_async(
                    subscription_id, params={"cancel_at_period_end": True}
                )
            )
        )

    async def cancel_now(self, subscription_id: str) -> None:
        """End a subscription at once (a finished payment plan). Already ended: done."""
        try:
            await self.client.v1.subscriptions.cancel_async(subscription_id)
        except stripe.InvalidRequestError as exc:
            current = await self.subscription(subscription_id)
            if current.status not in ("canceled", "incomplete_expired"):
                raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc

    async def pay_invoice(self, invoice_id: str) -> InvoiceInfo:
        """Charge an open invoice again now (after a new card); a decline is an answer."""
        try:
            await self.client.v1.invoices.pay_async(invoice_id)
        except stripe.CardError:
            pass  # the invoice stays open; its PaymentIntent says why
        except stripe.InvalidRequestError as exc:
            log.info("stripe_invoice_not_payable", invoice=invoice_id, status=exc.http_status)
        except stripe.StripeError as exc:
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
        return invoice_info(
            await self._call(
                self.client.v1.invoices.retrieve_async(
                    invoice_id, params={"expand": ["payment_intent"]}
                )
            )
        )

    # -- refunds ------------------------------------------------------------------------

    async def create_refund(
        self,
        *,
        payment_intent_id: str,
        amount: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> RefundInfo:
        """Refund ``amount`` of a PaymentIntent's charge. Our reason travels in metadata
        (Stripe's own ``reason`` is an enum, and localstripe knows no such parameter)."""
        refund = _plain(
            await self._call(
                self.client.v1.refunds.create_async(
                    params={
                        "payment_intent": payment_intent_id,
                        "amount": amount,
                        "metadata": metadata,
                    },
                    options={"idempotency_key": idempotency_key},
                )
            )
        )
        return RefundInfo(
            id=str(refund["id"]),
            status=str(refund.get("status") or "succeeded"),
            amount=int(refund.get("amount") or amount),
            currency=str(refund.get("currency") or ""),
        )

    # -- webhooks -----------------------------------------------------------------------

    @staticmethod
    def verify_webhook(
        payload: bytes, signature: str | None, secret: str, tolerance: int
    ) -> dict[str, Any]:
        """The event, if ``signature`` is Stripe's for ``payload`` with ``secret`` and recent.

        An empty secret refuses everything: an unconfigured endpoint accepts nothing.
        """
        if not secret:
            raise InvalidWebhook("Webhooks are not configured.")
        if not signature:
            raise InvalidWebhook("The Stripe-Signature header is missing.")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
            event = json.loads(text)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidWebhook("The webhook's signature does not verify.") from exc
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
        ):
            raise InvalidWebhook("The webhook is not a Stripe event.")
        return event

    # -----------------------------------------------------------------------------------

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except stripe.StripeError as exc:
            log.warning("stripe_call_failed", error=type(exc).__name__, status=exc.http_status)
            raise PaymentProviderError(str(exc.user_message or "Stripe refused.")) from exc
