"""The events this service reacts to: one handler per event, each only writing rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.catalog import OfferingArchivedV1, OfferingPublishedV1
from kit.contracts.clients import (
    AccountRegisteredV1,
    AppointmentCanceledV1,
    AppointmentConfirmedV1,
    AppointmentDeclinedV1,
    AppointmentRequestedV1,
    AppointmentRescheduledV1,
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
from kit.contracts.payments import (
    OrderPaidV1,
    OrderRefundedV1,
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from kit.messaging import Consumer
from kit.runtime import ServiceContext
from notifications import models
from notifications.audience.service import AudienceService
from notifications.config import NotificationsSettings
from notifications.emails.appointments import AppointmentEmails
from notifications.emails.rendering import EmailRenderer
from notifications.emails.service import EmailService
from notifications.sequences.service import SequenceService

SERVICE = "notifications"


def build_consumer(context: ServiceContext, settings: NotificationsSettings) -> Consumer:
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
    renderer = EmailRenderer()

    def emails(session: AsyncSession) -> EmailService:
        return EmailService(session, settings, renderer)

    @consumer.handler(BusinessCreatedV1)
    async def remember_business(event: BusinessCreatedV1, session: AsyncSession) -> None:
        await emails(session).remember_business(event)

    @consumer.handler(AccountRegisteredV1)
    async def account_registered(event: AccountRegisteredV1, session: AsyncSession) -> None:
        # One of them at most, by origin: coach_signup gets the welcome, purchase the
        # claim-your-account email, invitation nothing (the invitee just set a password).
        await emails(session).welcome(event)
        await emails(session).claim_account(event)

    @consumer.handler(EmailVerificationRequestedV1)
    async def queue_verify_email(
        event: EmailVerificationRequestedV1, session: AsyncSession
    ) -> None:
        await emails(session).verify_email(event)

    @consumer.handler(MagicLinkRequestedV1)
    async def queue_magic_link(event: MagicLinkRequestedV1, session: AsyncSession) -> None:
        await emails(session).magic_link(event)

    @consumer.handler(PasswordResetRequestedV1)
    async def queue_password_reset(event: PasswordResetRequestedV1, session: AsyncSession) -> None:
        await emails(session).password_reset(event)

    # -- the client book: transactional emails and the audience read model --------

    @consumer.handler(InvitationSentV1)
    async def queue_invitation(event: InvitationSentV1, session: AsyncSession) -> None:
        await emails(session).invitation(event)

    @consumer.handler(ClientAddedV1)
    async def client_added(event: ClientAddedV1, session: AsyncSession) -> None:
        await AudienceService(session).client_added(event)
        await emails(session).client_added(event)  # only when the event says to notify

    @consumer.handler(ClientArchivedV1)
    async def client_archived(event: ClientArchivedV1, session: AsyncSession) -> None:
        await AudienceService(session).client_archived(event)

    @consumer.handler(ClientRestoredV1)
    async def client_restored(event: ClientRestoredV1, session: AsyncSession) -> None:
        await AudienceService(session).client_restored(event)

    @consumer.handler(GroupCreatedV1)
    async def group_created(event: GroupCreatedV1, session: AsyncSession) -> None:
        await AudienceService(session).group_named(event)

    @consumer.handler(GroupRenamedV1)
    async def group_renamed(event: GroupRenamedV1, session: AsyncSession) -> None:
        await AudienceService(session).group_named(event)

    @consumer.handler(GroupDeletedV1)
    async def group_deleted(event: GroupDeletedV1, session: AsyncSession) -> None:
        await AudienceService(session).group_deleted(event)

    @consumer.handler(GroupMemberAddedV1)
    async def member_added(event: GroupMemberAddedV1, session: AsyncSession) -> None:
        await AudienceService(session).member_added(event)

    @consumer.handler(GroupMemberRemovedV1)
    async def member_removed(event: GroupMemberRemovedV1, session: AsyncSession) -> None:
        await AudienceService(session).member_removed(event)

    # -- payments ---------------------------------------------------------------

    @consumer.handler(OrderPaidV1)
    async def queue_receipt(event: OrderPaidV1, session: AsyncSession) -> None:
        await emails(session).receipt(event)
        # The sequence linked to the offering, if any, starts (one run per order).
        await SequenceService(session).order_paid(event)

    @consumer.handler(OrderRefundedV1)
    async def queue_refund_email(event: OrderRefundedV1, session: AsyncSession) -> None:
        await emails(session).refund_issued(event)
        await SequenceService(session).order_refunded(event)  # stops runs if so configured

    @consumer.handler(SubscriptionRenewedV1)
    async def queue_renewal_receipt(event: SubscriptionRenewedV1, session: AsyncSession) -> None:
        await emails(session).subscription_renewed(event)

    @consumer.handler(SubscriptionPaymentFailedV1)
    async def queue_payment_failed(
        event: SubscriptionPaymentFailedV1, session: AsyncSession
    ) -> None:
        await emails(session).subscription_payment_failed(event)

    @consumer.handler(SubscriptionEndedV1)
    async def queue_subscription_ended(event: SubscriptionEndedV1, session: AsyncSession) -> None:
        # Raises while the business (its owner's address) is not known: retried later.
        await emails(session).subscription_ended(event)
        await SequenceService(session).subscription_ended(event)  # stops runs if configured

    # -- appointments: each change's emails (the coach's wait for the business) ----------

    def appointments(session: AsyncSession) -> AppointmentEmails:
        return AppointmentEmails(emails(session))

    @consumer.handler(AppointmentRequestedV1)
    async def appointment_requested(event: AppointmentRequestedV1, session: AsyncSession) -> None:
        # Raises while the business (its owner's address) is not known: retried later.
        await appointments(session).handle(event)

    @consumer.handler(AppointmentConfirmedV1)
    async def appointment_confirmed(event: AppointmentConfirmedV1, session: AsyncSession) -> None:
        await appointments(session).handle(event)

    @consumer.handler(AppointmentDeclinedV1)
    async def appointment_declined(event: AppointmentDeclinedV1, session: AsyncSession) -> None:
        await appointments(session).handle(event)

    @consumer.handler(AppointmentRescheduledV1)
    async def appointment_rescheduled(
        event: AppointmentRescheduledV1, session: AsyncSession
    ) -> None:
        await appointments(session).handle(event)

    @consumer.handler(AppointmentCanceledV1)
    async def appointment_canceled(event: AppointmentCanceledV1, session: AsyncSession) -> None:
        await appointments(session).handle(event)

    # -- the catalog: names and details of sequence targets ------------------------------

    @consumer.handler(OfferingPublishedV1)
    async def offering_published(event: OfferingPublishedV1, session: AsyncSession) -> None:
        await SequenceService(session).offering_published(event)

    @consumer.handler(OfferingArchivedV1)
    async def offering_archived(event: OfferingArchivedV1, session: AsyncSession) -> None:
        await SequenceService(session).offering_archived(event)

    return consumer
