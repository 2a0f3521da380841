"""The notifications service against real PostgreSQL, RabbitMQ and an SMTP server.

The SMTP server is aiosmtpd, in this process, with a handler the test
controls: it records every accepted message and can refuse recipients.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aio_pika
import httpx
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.utils import base64url_encode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.contracts.base import Event
from kit.db import create_engine, create_sessionmaker
from kit.messaging import Broker, Topology, declare_service_queue
from kit.runtime import Worker
from notifications.config import NotificationsSettings
from notifications.emails.rendering import EmailRenderer
from notifications.emails.service import EmailService
from notifications.handlers import SERVICE
from notifications.models import Email, inbox
from notifications.worker import build_worker
from tests.support import infra, tokens

PUBLIC_BASE_URL = "https://app.example.test"
MAIL_FROM = "Clientele <no-reply@clientele.test>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    """What the SMTP server answers. ``refuse(reply, times)`` refuses RCPT ``times``
    times (None: until told otherwise) with ``reply``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_attempts = 0
        self._refusal: str | None = None
        self._refusals_left: int | None = None

    def refuse(self, reply: str, times: int | None = None) -> None:
        self._refusal, self._refusals_left = reply, times

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.rcpt_attempts += 1
        if self._refusal is not None and self._refusals_left != 0:
            if self._refusals_left is not None:
                self._refusals_left -= 1
            return self._refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    async def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 15, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout}s")


@dataclass
class Notifications:
    """The service's worker (consumer + sender), its database and the SMTP server."""

    settings: NotificationsSettings
    engine: AsyncEngine
    smtp: SmtpServer
    publisher: Broker
    worker: Worker | None = None
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.sessionmaker = create_sessionmaker(self.engine)

    async def start_worker(self) -> None:
        """The real worker (build_worker), with its queue declared before anything is published."""
        self.worker = build_worker(self.settings)
        assert self.worker.consumer is not None
        connection = await self.publisher.publish_connection()
        channel = await connection.channel()
        await declare_service_queue(
            channel,
            self.publisher.topology,
            SERVICE,
            self.worker.consumer.event_names,
            self.settings.delivery_limit,
        )
        await channel.close()
        self._task = asyncio.create_task(self.worker.run(self._stop))

    async def stop_worker(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def publish(self, event: Event) -> None:
        """Put the event on the events exchange, as the clients service's relay does."""
        exchange = await self.publisher.events_exchange()
        await exchange.publish(
            aio_pika.Message(
                body=event.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(event.id),
                type=event.name,
            ),
            routing_key=event.name,
        )

    async def publish_all(self, *events: Event) -> None:
        """Publish in the order given, then wait until the consumer handled each of them."""
        for event in events:
            await self.publish(event)
        await self.wait_handled(*events)

    async def wait_handled(self, *events: Event, timeout: float = 15) -> None:
        wanted = {event.id for event in events}

        async def handled() -> bool:
            async with self.sessionmaker() as session:
                query = select(inbox.c.event_id).where(inbox.c.event_id.in_(wanted))
                return set((await session.execute(query)).scalars()) == wanted

        await wait_until(handled, timeout, f"{len(wanted)} event(s) handled")

    async def emails(self) -> list[Email]:
        async with self.sessionmaker() as session:
            result = await session.execute(select(Email).order_by(Email.created_at))
            return list(result.scalars())

    async def email(self) -> Email:
        [row] = await self.emails()
        return row

    async def wait_for_status(self, status: str, count: int = 1, timeout: float = 15) -> None:
        async def reached() -> bool:
            rows = await self.emails()
            return len([r for r in rows if r.status == status]) >= count

        await wait_until(reached, timeout, f"{count} email(s) {status}")

    async def wait_for_delivery(self, count: int = 1, timeout: float = 15) -> list[Received]:
        async def delivered() -> bool:
            return len(self.smtp.received) >= count

        await wait_until(delivered, timeout, f"{count} delivered email(s)")
        return self.smtp.received

    async def queue(self, event: Event, template: str, recipient: str, **context: Any) -> bool:
        """Queue one email directly through the service (no broker), committed."""
        async with self.sessionmaker() as session, session.begin():
            service = EmailService(session, self.settings, EmailRenderer())
            return await service.queue(event, template, recipient, context, event.business_id)


def notifications_settings(
    database_url: str, amqp_url: str, namespace: str, smtp_port: int, **overrides: Any
) -> NotificationsSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "broker_namespace": namespace,
        "dev_mode": True,
        "log_format": "console",
        "public_base_url": PUBLIC_BASE_URL,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_timeout": 3.0,
        "mail_from": MAIL_FROM,
        "email_retry_base_seconds": 0.1,
        "email_retry_max_seconds": 1.0,
        "sender_poll_interval": 0.05,
        **overrides,
    }
    return NotificationsSettings(**values)


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    server = SmtpServer(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_notifications(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
) -> AsyncIterator[Callable[..., Awaitable[Notifications]]]:
    """``await make_notifications(smtp, **settings)``: a migrated database and a publisher."""
    broker_namespace.services.add(SERVICE)
    made: list[Notifications] = []

    async def make(smtp: SmtpServer, **overrides: Any) -> Notifications:
        url = await service_database("notifications")
        settings = notifications_settings(
            url, amqp_url, broker_namespace.prefix, smtp.port, **overrides
        )
        publisher = Broker(amqp_url, Topology(broker_namespace.prefix), "notifications-test")
        harness = Notifications(settings, create_engine(url), smtp, publisher)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop_worker()
        await harness.publisher.close()
        await harness.engine.dispose()


@pytest.fixture
async def notifications(
    make_notifications: Callable[..., Awaitable[Notifications]], smtp_server: SmtpServer
) -> AsyncIterator[Notifications]:
    """The worker running against a working SMTP server."""
    harness = await make_notifications(smtp_server)
    await harness.start_worker()
    yield harness


@contextlib.asynccontextmanager
async def no_more_deliveries(smtp: SmtpServer, settle: float = 0.6) -> AsyncIterator[None]:
    """Checks that nothing else arrives for a moment after the block."""
    yield
    count = len(smtp.received)
    await asyncio.sleep(settle)
    assert len(smtp.received) == count, "an email was delivered again"


class Issuer:
    """Signs access tokens like the clients service, with a key made for this test."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = f"test-{uuid.uuid4().hex[:8]}"

    def jwks(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        x = base64url_encode(public).decode()
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }
        return {"keys": [jwk]}

    def token(self, staff: dict[uuid.UUID, str]) -> str:
        return tokens.valid(self.key, self.kid, staff={str(b): role for b, role in staff.items()})

    def headers(self, staff: dict[uuid.UUID, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(staff)}"}


@pytest.fixture
async def jwks_url() -> AsyncIterator[tuple[str, Issuer]]:
    """The issuer's JWKS over HTTP, where the service's settings say it is."""
    issuer = Issuer()

    async def serve(_request: web.Request) -> web.Response:
        return web.json_response(issuer.jwks())

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/jwks.json", issuer
    await runner.cleanup()


@pytest.fixture
async def coach_api(
    make_notifications: Callable[..., Awaitable[Notifications]],
    smtp_server: SmtpServer,
    jwks_url: tuple[str, Issuer],
) -> AsyncIterator[Any]:
    """The api (in process) and the worker, with two known businesses: a
    ``clientbook.CoachApi``."""
    from notifications.main import build_app
    from tests.notifications import events
    from tests.notifications.clientbook import CoachApi, apply

    url, issuer = jwks_url
    harness = await make_notifications(smtp_server, jwks_url=url)
    await harness.start_worker()
    business, other_business = uuid.uuid4(), uuid.uuid4()
    await apply(
        harness,
        events.business_created(business_id=business, business_name="Casey Coaching"),
        events.business_created(
            business_id=other_business, business_name="Other Studio", slug="other-studio"
        ),
    )
    app = build_app(harness.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifications") as http:
            yield CoachApi(http, harness, issuer, business, other_business)
