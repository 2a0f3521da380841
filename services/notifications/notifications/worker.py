"""The notifications worker process: ``python -m notifications.worker``.

Consumes the events that call for an email (queueing rows) or feed the
audience read model, and runs the SMTP sender that delivers the emails
(campaigns' included: sending a campaign only queues rows).
"""

from __future__ import annotations

from datetime import timedelta

from kit.logging import configure_logging
from kit.runtime import ServiceContext, Worker, run_process
from notifications.config import NotificationsSettings
from notifications.emails.sender import EmailSender
from notifications.handlers import build_consumer


def build_worker(settings: NotificationsSettings | None = None) -> Worker:
    settings = settings or NotificationsSettings()
    context = ServiceContext.create(settings, "notifications-worker")
    sender = EmailSender(
        context.sessionmaker, settings, lease=timedelta(seconds=settings.sender_lease_seconds)
    )
    # No outbox relay yet: this service publishes no events so far.
    worker = Worker(context, consumer=build_consumer(context, settings), loops=[sender.run])
    worker.standard_jobs()
    return worker


def main() -> None:
    settings = NotificationsSettings()
    configure_logging("notifications-worker", settings.log_level, settings.log_format)
    run_process(build_worker(settings).run())


if __name__ == "__main__":
    main()
