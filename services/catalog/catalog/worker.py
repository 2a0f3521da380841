"""The catalog worker process: ``python -m catalog.worker``.

Relays the outbox (offerings and collections events) and consumes the
client book's events into the read model that eligibility reads.
"""

from __future__ import annotations

from catalog import models
from catalog.config import CatalogSettings
from catalog.handlers import build_consumer
from kit.logging import configure_logging
from kit.messaging import OutboxRelay
from kit.runtime import ServiceContext, Worker, run_process


def build_worker(settings: CatalogSettings | None = None) -> Worker:
    settings = settings or CatalogSettings()
    context = ServiceContext.create(settings, "catalog-worker")
    relay = OutboxRelay(
        context.sessionmaker,
        models.outbox,
        context.broker,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval,
    )
    worker = Worker(context, consumer=build_consumer(context, settings), relay=relay)
    worker.standard_jobs()
    return worker


def main() -> None:
    settings = CatalogSettings()
    configure_logging("catalog-worker", settings.log_level, settings.log_format)
    run_process(build_worker(settings).run())


if __name__ == "__main__":
    main()
