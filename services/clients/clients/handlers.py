"""The events the clients service reacts to: purchases, their refunds, and the renewals,
failed payments and ends of subscriptions and payment plans.

Each handler runs in the consumer's transaction (with the inbox row that makes
a redelivered event a no-op); what it changes and the events it publishes are
committed together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from clients import models
from clients.config import ClientsSettings
from clients.identity.service import IdentityService
from clients.identity.signing import TokenSigner, load_private_key
from clients.purchases.service import PurchaseService
from clients.sequence_actions import SequenceActions
from kit.contracts.notifications import SequenceActionRequestedV1
from kit.contracts.payments import (
    OrderPaidV1,
    OrderRefundedV1,
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from kit.messaging import Consumer, Outbox
from kit.runtime import ServiceContext

SERVICE = "clients"


def build_consumer(context: ServiceContext, settings: ClientsSettings) -> Consumer:
    consumer = Consumer(
        SERVICE,
        sessionmaker=context.sessionmaker,
        engine=context.engine,
        inbox=models.inbox,
        broker=context.broker,
        delivery_limit=settings.delivery_limit,
        prefetch=settings.consumer_prefetch,
        batch_size=settings.consumer_batch_size,
    )
    outbox = Outbox(models.outbox)
    # Identity needs a signer for sessions; handlers never start one, but it is cheap.
    signer = TokenSigner(
        load_private_key(settings.jwt_private_key, settings.secret_key),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )

    def purchases(session: AsyncSession) -> PurchaseService:
        return PurchaseService(session, IdentityService(session, settings, signer, outbox))

    # A burst of purchases is applied a batch at a time: one query per step for the
    # batch (accounts, clients, claims, timeline, entitlements), not one per order.
    @consumer.batch_handler(OrderPaidV1)
    async def apply_orders(events: list[OrderPaidV1], session: AsyncSession) -> None:
        await purchases(session).orders_paid(events)

    @consumer.handler(OrderRefundedV1)
    async def apply_refund(event: OrderRefundedV1, session: AsyncSession) -> None:
        await purchases(session).order_refunded(event)

    # The queue is bound to the names of the events registered here (Consumer.event_names).
    @consumer.handler(SubscriptionRenewedV1)
    async def apply_renewal(event: SubscriptionRenewedV1, session: AsyncSession) -> None:
        await purchases(session).subscription_renewed(event)

    @consumer.handler(SubscriptionPaymentFailedV1)
    async def apply_payment_failure(
        event: SubscriptionPaymentFailedV1, session: AsyncSession
    ) -> None:
        await purchases(session).subscription_payment_failed(event)

    @consumer.handler(SubscriptionEndedV1)
    async def apply_subscription_end(event: SubscriptionEndedV1, session: AsyncSession) -> None:
        await purchases(session).subscription_ended(event)

    @consumer.handler(SequenceActionRequestedV1)
    async def apply_sequence_action(
        event: SequenceActionRequestedV1, session: AsyncSession
    ) -> None:
        # A notifications sequence's step: a worksheet, an agreement or a group place.
        await SequenceActions(session, outbox).apply(event)

    return consumer
