"""Two replicas of every api and every worker, and one of each dying mid-run.

One RabbitMQ, one PostgreSQL database per service, the gateway spreading
requests over each service's two api replicas. Driven through the gateway:
PURCHASES pending orders paid by signed ``payment_intent.succeeded`` webhooks
(as Stripe sends them, and as bench/webhooks.py does), and one invitation of
INVITEES addresses. Once every worker replica has done work (read from its own
Prometheus endpoint), one clients worker, one notifications worker and one
payments api are SIGKILLed and nothing is restarted; the webhooks held back
until then go out after the kill. At the end every purchase is applied exactly
once and every receipt and invitation reached the SMTP sink once, but for the
one email a killed sender may have had in flight (docs/architecture.md, Email:
resent once after its lease, ``NOTIFICATIONS_SENDER_LEASE_SECONDS``, short here).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from devtools import stripe_driver
from devtools.processes import SERVICES, Replicas
from kit.db import create_engine
from tests.support import infra
from tests.support.stack import SystemStack

pytestmark = pytest.mark.slow

PURCHASES = 300
INVITEES = 300
# Webhooks sent before the kill; the rest wait for it (so some go to a dead replica).
BEFORE_KILL = 200
WEBHOOKS_IN_FLIGHT = 8
WEBHOOK_RATE = 40.0  # per second, before the kill
LEASE_SECONDS = 8
KILLED = ("clients-worker.2", "notifications-worker.2", "payments-api.2")
RECEIPT = "Your receipt from"


@pytest.fixture(scope="module")
def replicated(
    postgres_admin_url: str,
    amqp_url: str,
    migrated_templates: infra.MigratedTemplates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SystemStack]:
    stack = SystemStack(
        postgres_admin_url,
        amqp_url,
        migrated_templates,
        tmp_path_factory.mktemp("replicas"),
        replicas=Replicas.of(2),
        extra_env={
            "NOTIFICATIONS_SENDER_LEASE_SECONDS": str(LEASE_SECONDS),
            "CLIENTS_INVITATION_DAILY_CAP": str(INVITEES * 2),
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# -- reading each replica's metrics --------------------------------------------------------


def _total(exposition: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@dataclass(frozen=True)
class Work:
    """What one process did, from its own /metrics."""

    consumed: float = 0  # events handled and committed (its consumer)
    published: float = 0  # outbox rows the broker confirmed (its relay)
    emails_sent: float = 0  # emails the SMTP server accepted (notifications' sender)
    requests: float = 0  # HTTP requests answered, health checks and scrapes aside

    @classmethod
    def parse(cls, exposition: str) -> Work:
        requests = sum(
            sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "clientele_http_requests_total"
            and sample.labels.get("route") not in ("/healthz", "/readyz", "/metrics")
        )
        return cls(
            consumed=_total(exposition, "clientele_events_consumed_total"),
            published=_total(exposition, "clientele_events_published_total"),
            emails_sent=_total(exposition, "clientele_emails_total", outcome="sent"),
            requests=requests,
        )

    def summary(self) -> str:
        parts = {
            "consumed": self.consumed,
            "published": self.published,
            "emails": self.emails_sent,
            "requests": self.requests,
        }
        return ", ".join(f"{k} {v:.0f}" for k, v in parts.items() if v)


async def _work(http: aiohttp.ClientSession, stack: SystemStack, name: str) -> Work:
    async with http.get(stack.metrics_url(name)) as response:
        return Work.parse(await response.text())


def _did_its_part(name: str, work: Work) -> bool:
    """The work every replica of this kind does in this run."""
    if name.startswith("notifications-worker"):
        return work.consumed > 0 and work.emails_sent > 0
    if name.startswith("clients-worker"):
        return work.consumed > 0 and work.published > 0
    if name.startswith("payments-worker"):
        return work.published > 0
    if name.startswith("catalog-worker"):
        return work.consumed > 0
    if name.startswith("payments-api"):
        return work.requests > 0
    return True


# -- the purchase pipeline's input ---------------------------------------------------------


def _succeeded(intent: dict[str, Any]) -> bytes:
    return stripe_driver.stripe_event("payment_intent.succeeded", intent)


async def _pending_orders(
    stack: SystemStack, business: dict[str, Any], n: int
) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """n orders as /pay leaves them, with copies of a PaymentIntent that succeeded."""
    orders = stripe_driver.intent_copies(await stripe_driver.succeeded_intent(stack.stripe_url), n)
    await stripe_driver.insert_pending_orders(
        stack.env["PAYMENTS_DATABASE_URL"],
        business,
        [(order_id, intent["id"]) for order_id, intent in orders],
        label="replicas",
    )
    return orders


# -- the run -------------------------------------------------------------------------------


@dataclass
class Run:
    webhook_attempts: int = 0
    webhook_statuses: Counter[str] = field(default_factory=Counter)
    sent_before_kill: int = 0
    emails_sent_at_kill: int = 0
    refused: int = 0  # connections the gateway found refused (and sent to the other replica)
    before_kill: dict[str, Work] = field(default_factory=dict)
    at_end: dict[str, Work] = field(default_factory=dict)


async def _post_until_taken(
    http: aiohttp.ClientSession, url: str, payload: bytes, secret: str, run: Run
) -> None:
    """As Stripe does: a webhook that got no 2xx is sent again (signed anew)."""
    for _ in range(60):
        run.webhook_attempts += 1
        headers = {
            "Content-Type": "application/json",
            "Stripe-Signature": stripe_driver.sign(payload, secret),
        }
        try:
            async with http.post(url, data=payload, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        run.webhook_statuses[status] += 1
        if status.startswith("2"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"a webhook was never taken: {run.webhook_statuses}")


async def _scalar(engine: Any, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def _messages(http: aiohttp.ClientSession, stack: SystemStack) -> list[dict[str, Any]]:
    async with http.get(f"{stack.mail_url}/messages") as response:
        return list(await response.json())


async def test_two_replicas_of_everything_share_the_work_and_lose_nothing_when_one_dies(
    replicated: SystemStack,
) -> None:
    stack = replicated
    workers = [name for name in stack.specs if "-worker." in name]
    assert len(workers) == 2 * len(SERVICES)
    run = Run()
    clients_db = create_engine(stack.env["CLIENTS_DATABASE_URL"], pool_size=1)
    payments_db = create_engine(stack.env["PAYMENTS_DATABASE_URL"], pool_size=1)
    notifications_db = create_engine(stack.env["NOTIFICATIONS_DATABASE_URL"], pool_size=1)
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=WEBHOOKS_IN_FLIGHT + 8),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as http:
            async with http.post(
                f"{stack.gateway_url}/api/v1/clients/signup",
                json={
                    "name": "Replica Coach",
                    "email": f"coach-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "two of everything, please",
                    "business_name": "Twice Coaching",
                },
            ) as response:
                assert response.status == 201, await response.text()
                coach = await response.json()
            business = coach["business"]
            orders = await _pending_orders(stack, business, PURCHASES)
            invitees = [f"invitee{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(INVITEES)]
            killed = asyncio.Event()

            async def invite() -> None:
                async with http.post(
                    f"{stack.gateway_url}/api/v1/clients/businesses/{business['id']}/invitations",
                    json={"addresses": ",".join(invitees)},
                    headers={"Authorization": f"Bearer {coach['access_token']}"},
                ) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["counts"]["invited"] == INVITEES

            async def pay() -> None:
                url = f"{stack.gateway_url}/webhooks/stripe"
                slots = asyncio.Semaphore(WEBHOOKS_IN_FLIGHT)
                tasks = []
                for n, (_order_id, intent) in enumerate(orders):
                    if n == BEFORE_KILL:
                        await killed.wait()
                    elif n < BEFORE_KILL:
                        await asyncio.sleep(1 / WEBHOOK_RATE)
                    await slots.acquire()
                    task = asyncio.create_task(
                        _post_until_taken(http, url, _succeeded(intent), stack.webhook_secret, run)
                    )
                    task.add_done_callback(lambda _t: slots.release())
                    tasks.append(task)
                await asyncio.gather(*tasks)

            async def kill_once_every_replica_worked() -> None:
                watched = [*workers, "payments-api.1", "payments-api.2"]
                deadline = time.monotonic() + 60
                while True:
                    work = {n: await _work(http, stack, n) for n in watched}
                    if all(_did_its_part(n, w) for n, w in work.items()):
                        break
                    if time.monotonic() > deadline:
                        idle = [n for n, w in work.items() if not _did_its_part(n, w)]
                        raise AssertionError(f"replicas that did nothing in 60 s: {idle}")
                    await asyncio.sleep(0.3)
                run.before_kill = work
                run.emails_sent_at_kill = int(
                    sum(w.emails_sent for n, w in work.items() if "notifications" in n)
                )
                run.sent_before_kill = sum(
                    c for s, c in run.webhook_statuses.items() if s.startswith("2")
                )
                for name in KILLED:
                    stack.kill(name, signal.SIGKILL)
                killed.set()

            await asyncio.gather(invite(), pay(), kill_once_every_replica_worked())

            # Everything lands: purchases applied, no email waiting to be sent.
            business_id = uuid.UUID(business["id"])
            deadline = time.monotonic() + 120
            while True:
                applied = await _scalar(
                    clients_db,
                    "SELECT count(*) FROM purchases_applied WHERE business_id = :b",
                    b=business_id,
                )
                unsent = await _scalar(
                    notifications_db,
                    "SELECT count(*) FROM emails WHERE status IN ('queued', 'sending')",
                )
                receipts = [
                    m for m in await _messages(http, stack) if m["subject"].startswith(RECEIPT)
                ]
                if applied >= PURCHASES and not unsent and len(receipts) >= PURCHASES:
                    break
                assert time.monotonic() < deadline, (applied, unsent, len(receipts))
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)  # anything more (a duplicate) would be here now
            messages = await _messages(http, stack)
            survivors = [n for n in stack.specs if n in run.before_kill and n not in KILLED]
            run.at_end = {n: await _work(http, stack, n) for n in survivors}

        order_ids = [order_id for order_id, _intent in orders]
        applied_rows = await _scalar(
            clients_db,
            "SELECT count(*) FROM purchases_applied WHERE order_id = ANY(:ids)",
            ids=order_ids,
        )
        applied_orders = await _scalar(
            clients_db,
            "SELECT count(DISTINCT order_id) FROM purchases_applied WHERE order_id = ANY(:ids)",
            ids=order_ids,
        )
        entitlements = await _scalar(
            clients_db,
            "SELECT count(*) FROM entitlements WHERE order_id = ANY(:ids)",
            ids=order_ids,
        )
        paid = await _scalar(
            payments_db,
            "SELECT count(*) FROM orders WHERE status = 'paid' AND id = ANY(:ids)",
            ids=order_ids,
        )
        failed_emails = await _scalar(
            notifications_db, "SELECT count(*) FROM emails WHERE status = 'failed'"
        )
    finally:
        await clients_db.dispose()
        await payments_db.dispose()
        await notifications_db.dispose()

    receipts_to = Counter(
        to for m in messages if m["subject"].startswith(RECEIPT) for to in m["rcpt_tos"]
    )
    invited = set(invitees)
    invitations_to = Counter(to for m in messages for to in m["rcpt_tos"] if to in invited)
    duplicates = {
        to: n for to, n in (receipts_to + invitations_to).items() if n > 1
    }  # receipts and invitations go to different addresses
    killed_senders = sum(1 for name in KILLED if name.startswith("notifications-worker"))
    # The gateway found payments-api.2 gone and passed its turns to payments-api.1.
    run.refused = stack.log("gateway").count("upstream_replica_refused")

    _report(
        run, time.monotonic() - started, paid, applied_rows, receipts_to, invitations_to, duplicates
    )
    assert paid == PURCHASES
    assert run.refused >= 1
    assert applied_rows == applied_orders == entitlements == PURCHASES, "each purchase once"
    assert set(receipts_to) == {stripe_driver.buyer_email(order_id) for order_id in order_ids}
    assert set(invitations_to) == invited
    assert failed_emails == 0
    # At most the one email each killed sender had in flight went out twice.
    assert sum(n - 1 for n in duplicates.values()) <= killed_senders, duplicates
    # Every replica did its share before the kill, and the survivors carried on.
    assert all(_did_its_part(n, w) for n, w in run.before_kill.items()), run.before_kill
    for name in ("clients-worker.1", "notifications-worker.1"):
        assert run.at_end[name].consumed > run.before_kill[name].consumed, name
    assert run.at_end["payments-api.1"].requests > run.before_kill["payments-api.1"].requests


def _report(
    run: Run,
    seconds: float,
    paid: int,
    applied: int,
    receipts: Counter[str],
    invitations: Counter[str],
    duplicates: dict[str, int],
) -> None:
    """What happened, for the test log (pytest -s, or the captured output of a failure)."""
    lines = [
        f"replicas run: {seconds:.0f} s; {PURCHASES} purchases, {INVITEES} invitees",
        f"webhooks: {run.webhook_attempts} attempts for {PURCHASES} "
        f"({dict(run.webhook_statuses)}); {run.sent_before_kill} taken before the kill; "
        f"the gateway found a replica gone {run.refused} times",
        f"killed {', '.join(KILLED)} with {run.emails_sent_at_kill} emails sent so far",
        f"paid {paid}, purchases applied {applied}; receipts {receipts.total()} to "
        f"{len(receipts)} buyers, invitations {invitations.total()} to {len(invitations)}; "
        f"sent twice: {duplicates or 'none'}",
        "per process (before the kill -> at the end):",
    ]
    for name, before in sorted(run.before_kill.items()):
        after = run.at_end.get(name)
        lines.append(
            f"  {name:<24} {before.summary():<55} -> " + (after.summary() if after else "killed")
        )
    sys.stdout.write("\n".join(lines) + "\n")
