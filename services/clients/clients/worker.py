"""The clients worker process: ``python -m clients.worker``.

Relays the outbox, consumes the events the client book reacts to (paid
orders: see ``clients.handlers``) and runs housekeeping.
"""

from __future__ import annotations

from datetime import timedelta

from clients import models
from clients.config import ClientsSettings
from clients.handlers import build_consumer
from clients.identity.repository import IdentityRepository
from kit.db import utcnow
from kit.logging import configure_logging
from kit.messaging import OutboxRelay
from kit.runtime import PeriodicJob, ServiceContext, Worker, run_process


def build_worker(settings: ClientsSettings | None = None) -> Worker:
    settings = settings or ClientsSettings()
    context = ServiceContext.create(settings, "clients-worker")
    relay = OutboxRelay(
        context.sessionmaker,
        models.outbox,
        context.broker,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval,
    )

    async def purge_expired_tokens() -> int:
        async with context.sessionmaker() as session, session.begin():
            return await IdentityRepository(session).purge_expired(utcnow() - timedelta(days=1))

    worker = Worker(context, consumer=build_consumer(context, settings), relay=relay)
    worker.standard_jobs()
    worker.jobs.append(PeriodicJob("purge_expired_tokens", purge_expired_tokens, 3600))
    return worker


def main() -> None:
    settings = ClientsSettings()
    configure_logging("clients-worker", settings.log_level, settings.log_format)
    run_process(build_worker(settings).run())


if __name__ == "__main__":
    main()
