"""The payments worker process: ``python -m payments.worker``.

Relays the outbox (orders paid and failed), processes stored Stripe webhook
events, and reconciles open orders whose webhook never came.
"""

from __future__ import annotations

import asyncio

from kit.logging import configure_logging
from kit.messaging import Outbox, OutboxRelay
from kit.runtime import PeriodicJob, ServiceContext, Worker, run_process
from payments import models
from payments.config import PaymentsSettings
from payments.main import stripe_gateway
from payments.reconciliation.service import Reconciler
from payments.webhooks.service import StripeEventProcessor


def build_worker(settings: PaymentsSettings | None = None) -> Worker:
    settings = settings or PaymentsSettings()
    context = ServiceContext.create(settings, "payments-worker")
    outbox = Outbox(models.outbox)
    relay = OutboxRelay(
        context.sessionmaker,
        models.outbox,
        context.broker,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval,
    )
    stripe = stripe_gateway(settings)
    processor = StripeEventProcessor(
        context.sessionmaker,
        outbox,
        stripe,
        settings.secret_key,
        max_attempts=settings.stripe_events_max_attempts,
    )
    reconciler = Reconciler(
        context.sessionmaker,
        outbox,
        stripe,
        after_seconds=settings.reconcile_after_seconds,
        secret_key=settings.secret_key,
    )
    worker = Worker(context, relay=relay)
    worker.jobs.append(
        PeriodicJob(
            "process_stripe_events",
            processor.process_pending,
            settings.stripe_events_poll_interval,
        )
    )
    worker.jobs.append(
        PeriodicJob("reconcile_payments", reconciler.run_once, settings.reconcile_interval_seconds)
    )

    async def close_stripe(stop: asyncio.Event) -> None:
        await stop.wait()
        await stripe.close()

    worker.loops.append(close_stripe)
    worker.standard_jobs()
    return worker


def main() -> None:
    settings = PaymentsSettings()
    configure_logging("payments-worker", settings.log_level, settings.log_format)
    run_process(build_worker(settings).run())


if __name__ == "__main__":
    main()
