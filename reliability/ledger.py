"""The ledger check run after every scenario.

First wait until nothing is in flight: every outbox empty, every service queue empty
(twice in a row, with the counts below unchanged in between), no stored Stripe event
unprocessed, no email queued or being sent. Then count, per purchase of the scenario:

- ``grants``: ``payments`` rows of the order (the grant; unique per order);
- ``order_paid``: ``payments.order_paid.v1`` rows in the payments outbox for the order;
- ``applied``: ``purchases_applied`` rows in clients (the entitlement applied);
- ``entitlements``: ``entitlements`` rows in clients;
- ``emails``: receipt rows in notifications' ``emails`` for the buyer;
- ``receipts``: receipts the SMTP sink accepted, one per RCPT TO of the buyer;
- ``charges``: what Stripe charged: the PaymentIntent's status in localstripe, when the
  scenario made real ones (``Purchase.payment_intent``), else not counted.

Each column has an expected count per purchase (1 for a purchase that must be granted,
0 for one that must not) and is reported as lost (expected 1, got 0), duplicated (got
more than 1) and unexpected (got something where 0 was expected, or for an order or
buyer that is not one of the scenario's).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.processes import LOCAL_STRIPE_API_KEY, SERVICES
from kit.db import create_engine
from kit.messaging import Topology
from reliability.system import ProxiedSystem

RECEIPT_SUBJECT = "Your receipt from"


@dataclass(frozen=True)
class Purchase:
    order_id: uuid.UUID
    buyer: str
    granted: bool  # what must end up true: the order paid (once) or not at all
    payment_intent: str | None = None  # a real localstripe PaymentIntent, if any


@dataclass
class Column:
    name: str
    expected: int = 0
    got: int = 0
    lost: int = 0
    duplicated: int = 0  # purchases with more than one
    extra: int = 0  # copies beyond the first, over all purchases
    unexpected: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def row(self) -> str:
        return (
            f"  {self.name:<13} expected {self.expected:>5}  got {self.got:>5}  "
            f"lost {self.lost:>3}  duplicated {self.duplicated:>3} (+{self.extra})  "
            f"unexpected {self.unexpected:>3}"
        )


@dataclass
class Ledger:
    purchases: int
    columns: dict[str, Column] = field(default_factory=dict)
    quiet_after_s: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)  # what was left if never quiet
    failed_emails: int = 0
    duplicate_receipts: dict[str, int] = field(default_factory=dict)  # buyer -> copies
    same_message_id: bool = True  # every duplicated receipt is a resend of one email row

    @property
    def quiet(self) -> bool:
        return not any(self.in_flight.values())

    def clean(self, *, except_receipts: bool = False) -> bool:
        return (
            self.quiet
            and self.failed_emails == 0
            and all(
                c.clean
                or (except_receipts and c.name == "receipts" and not (c.lost or c.unexpected))
                for c in self.columns.values()
            )
        )

    def report(self) -> str:
        lines = [
            f"  ledger: {self.purchases} purchases; quiet after {self.quiet_after_s:.1f} s"
            + (f"; STILL IN FLIGHT {self.in_flight}" if not self.quiet else "")
            + f"; failed emails {self.failed_emails}"
        ]
        lines += [c.row() for c in self.columns.values()]
        if self.duplicate_receipts:
            lines.append(
                f"  receipts sent twice: {len(self.duplicate_receipts)} buyers "
                f"(+{sum(n - 1 for n in self.duplicate_receipts.values())}); "
                f"same Message-ID each time: {self.same_message_id}"
            )
        return "\n".join(lines)


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


class Probe:
    """Direct connections (never through the proxies) to the system's databases,
    broker and SMTP sink."""

    def __init__(self, system: ProxiedSystem) -> None:
        self.system = system
        self.engines = {s: create_engine(system.direct_urls[s], pool_size=1) for s in SERVICES}
        self.topology = Topology(system.namespace.prefix)

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()

    async def queue_depths(self) -> dict[str, int]:
        depths = {}
        connection = await aio_pika.connect(self.system.amqp_url)
        async with connection:
            for service in SERVICES:
                channel = await connection.channel()
                for name in (
                    self.topology.queue(service),
                    self.topology.dead_letter_queue(service),
                ):
                    try:
                        queue = await channel.declare_queue(name, passive=True)
                    except Exception:
                        channel = await connection.channel()
                        continue
                    depths[name] = int(queue.declaration_result.message_count or 0)
        return depths

    async def unpublished(self, service: str) -> int:
        """Rows of the service's outbox not yet confirmed by the broker."""
        return await _scalar(
            self.engines[service], "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )

    async def in_flight(self) -> dict[str, int]:
        counts = {}
        for service in SERVICES:
            counts[f"{service}.outbox"] = await self.unpublished(service)
        depths = await self.queue_depths()
        for service in SERVICES:
            counts[f"{service}.queue"] = depths.get(self.topology.queue(service), 0)
        counts["stripe_events unprocessed"] = await _scalar(
            self.engines["payments"],
            "SELECT count(*) FROM stripe_events WHERE processed_at IS NULL",
        )
        counts["emails due"] = await _scalar(
            self.engines["notifications"],
            "SELECT count(*) FROM emails WHERE status IN ('queued', 'sending')",
        )
        return counts

    async def progress(self) -> tuple[int, ...]:
        """Counts that move while anything is still being done."""
        return (
            await _scalar(self.engines["clients"], "SELECT count(*) FROM inbox"),
            await _scalar(self.engines["notifications"], "SELECT count(*) FROM inbox"),
            await _scalar(self.engines["catalog"], "SELECT count(*) FROM inbox"),
            await _scalar(self.engines["payments"], "SELECT count(*) FROM payments"),
            await _scalar(self.engines["notifications"], "SELECT count(*) FROM emails"),
        )

    async def wait_quiet(self, timeout: float = 300) -> tuple[float, dict[str, int]]:
        """Seconds until nothing is in flight (or what still is at the timeout)."""
        started = time.monotonic()
        previous: tuple[int, ...] | None = None
        counts: dict[str, int] = {}
        while time.monotonic() - started < timeout:
            counts = await self.in_flight()
            progress = await self.progress()
            if not any(counts.values()) and progress == previous:
                return time.monotonic() - started, {}
            previous = progress if not any(counts.values()) else None
            await asyncio.sleep(1.0)
        return time.monotonic() - started, {k: v for k, v in counts.items() if v}

    async def messages(self) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.system.mail_url}/messages") as response,
        ):
            return list(await response.json())

    async def stripe_statuses(self, intents: list[str]) -> dict[str, str]:
        auth = {"Authorization": aiohttp.encode_basic_auth(LOCAL_STRIPE_API_KEY, "")}
        statuses: dict[str, str] = {}
        async with aiohttp.ClientSession(headers=auth) as http:
            for intent in intents:
                async with http.get(f"{self.system.stripe_url}/v1/payment_intents/{intent}") as r:
                    statuses[intent] = str((await r.json()).get("status"))
        return statuses


def _column(
    name: str, purchases: list[Purchase], per_key: Counter[Any], key: Any, others: int = 0
) -> Column:
    column = Column(name)
    for purchase in purchases:
        want = 1 if purchase.granted else 0
        got = per_key.get(key(purchase), 0)
        column.expected += want
        column.got += got
        if want and not got:
            column.lost += 1
        if got > 1:
            column.duplicated += 1
            column.extra += got - 1
        if not want and got:
            column.unexpected += 1
    column.unexpected += others
    column.got += others
    return column


async def check(
    probe: Probe, purchases: list[Purchase], *, columns: tuple[str, ...], timeout: float = 300
) -> Ledger:
    """Wait until nothing is in flight, then count every column for every purchase."""
    ledger = Ledger(len(purchases))
    ledger.quiet_after_s, ledger.in_flight = await probe.wait_quiet(timeout)
    await asyncio.sleep(1.0)  # a duplicate (a resend) would have arrived by now
    ids = [p.order_id for p in purchases]
    ours = set(ids)
    buyers = {p.buyer for p in purchases}
    by_order = lambda p: p.order_id  # noqa: E731
    by_buyer = lambda p: p.buyer  # noqa: E731
    payments, clients = probe.engines["payments"], probe.engines["clients"]
    notifications = probe.engines["notifications"]

    if "grants" in columns:
        rows = await _rows(payments, "SELECT order_id FROM payments")
        counted = Counter(r[0] for r in rows)
        ledger.columns["grants"] = _column(
            "grants",
            purchases,
            counted,
            by_order,
            sum(n for k, n in counted.items() if k not in ours),
        )
    if "order_paid" in columns:
        rows = await _rows(
            payments, "SELECT payload FROM outbox WHERE name = 'payments.order_paid.v1'"
        )
        counted = Counter(uuid.UUID(json.loads(r[0])["order_id"]) for r in rows)
        ledger.columns["order_paid"] = _column(
            "order_paid",
            purchases,
            counted,
            by_order,
            sum(n for k, n in counted.items() if k not in ours),
        )
    if "applied" in columns:
        counted = Counter(
            r[0] for r in await _rows(clients, "SELECT order_id FROM purchases_applied")
        )
        ledger.columns["applied"] = _column(
            "applied",
            purchases,
            counted,
            by_order,
            sum(n for k, n in counted.items() if k not in ours),
        )
        counted = Counter(r[0] for r in await _rows(clients, "SELECT order_id FROM entitlements"))
        ledger.columns["entitlements"] = _column(
            "entitlements",
            purchases,
            counted,
            by_order,
            sum(n for k, n in counted.items() if k not in ours),
        )
    if "emails" in columns:
        rows = await _rows(notifications, "SELECT recipient FROM emails WHERE template = 'receipt'")
        counted = Counter(r[0] for r in rows)
        ledger.columns["emails"] = _column(
            "emails",
            purchases,
            counted,
            by_buyer,
            sum(n for k, n in counted.items() if k not in buyers),
        )
        ledger.failed_emails = await _scalar(
            notifications, "SELECT count(*) FROM emails WHERE status = 'failed'"
        )
    if "receipts" in columns:
        messages = [m for m in await probe.messages() if m["subject"].startswith(RECEIPT_SUBJECT)]
        counted = Counter(to.lower() for m in messages for to in m["rcpt_tos"])
        ledger.columns["receipts"] = _column(
            "receipts",
            purchases,
            counted,
            by_buyer,
            sum(n for k, n in counted.items() if k not in buyers),
        )
        ledger.duplicate_receipts = {k: n for k, n in counted.items() if n > 1}
        for buyer in ledger.duplicate_receipts:
            ids_seen = {m.get("message_id") for m in messages if buyer in m["rcpt_tos"]}
            ledger.same_message_id &= len(ids_seen) == 1
    if "charges" in columns:
        intents = [p.payment_intent for p in purchases if p.payment_intent]
        statuses = await probe.stripe_statuses(intents)
        counted = Counter(
            {
                p.order_id: 1
                for p in purchases
                if statuses.get(p.payment_intent or "") == "succeeded"
            }
        )
        ledger.columns["charges"] = _column("charges", purchases, counted, by_order)
    return ledger
