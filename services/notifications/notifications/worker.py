"""The notifications worker process: ``python -m notifications.worker``.

Consumes the events that call for an email (queueing rows) or feed the
audience read model, and runs the SMTP sender that delivers the emails
(campaigns' included: sending a campaign only queues rows); runs the due steps
of sequences and relays the events they publish.
"""

from __future__ import annotations

from datetime import timedelta

from kit.db import utcnow
from kit.logging import configure_logging
from kit.messaging import OutboxRelay
from kit.runtime import PeriodicJob, ServiceContext, Worker, run_process
from notifications import models
from notifications.config import NotificationsSettings
from notifications.emails.rendering import EmailRenderer
from notifications.emails.sender import EmailSender
from notifications.handlers import build_consumer
from notifications.sequences.runner import SequenceRunner


def build_worker(settings: NotificationsSettings | None = None) -> Worker:
    settings = settings or NotificationsSettings()
    context = ServiceContext.create(settings, "notifications-worker")
    sender = EmailSender(
        context.sessionmaker, settings, lease=timedelta(seconds=settings.sender_lease_seconds)
    )
    # Sequence steps that act on a client's account publish through the outbox.
    relay = OutboxRelay(
        context.sessionmaker,
        models.outbox,
        context.broker,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval,
    )
    worker = Worker(
        context, consumer=build_consumer(context, settings), relay=relay, loops=[sender.run]
    )
    worker.standard_jobs()
    runner = SequenceRunner(
        context.sessionmaker, settings, EmailRenderer(), batch_size=settings.sequence_batch_size
    )

    async def run_sequences() -> int:
        return await runner.run_due(utcnow())

    worker.jobs.append(PeriodicJob("run_sequences", run_sequences, settings.sequence_poll_seconds))
    return worker


def main() -> None:
    settings = NotificationsSettings()
    configure_logging("notifications-worker", settings.log_level, settings.log_format)
    run_process(build_worker(settings).run())


if __name__ == "__main__":
    main()
