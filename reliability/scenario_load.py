"""Scenario 12: 50 users browsing and buying for 10 minutes, then 5,000 renewal webhooks
in 60 s: 0 server errors, API p95 < 300 ms, webhook answer p99 < 2 s, everything
drained within 5 minutes, a clean ledger, memory growth < 10 %.

The renewals need subscriptions that already paid their first invoice in every service
(payments' row, clients' applied purchase, the receipt). Made through the API each would
cost localstripe a customer, a SetupIntent, a card, a product, a plan and a subscription,
and localstripe pickles its whole store on every write: thousands take far too long. So,
as ``devtools.stripe_driver.insert_pending_orders`` does for orders, the subscriptions are
inserted in payments as ``/pay`` leaves them just before Stripe answers (customer, pending
order, incomplete subscription with its Stripe id), and the system itself settles them:
each first invoice comes as a signed ``invoice.paid`` through the gateway, so the grant,
``order_paid``, the clients' purchase and the receipt are the system's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devtools import stripe_driver
from kit.db import create_engine, create_sessionmaker, utcnow
from notifications.emails.service import SUBSCRIPTION_RENEWED, email_id, invoice_key
from payments import models as payments_models
from reliability import users
from reliability.driver import Webhooks, signup, stripe_event
from reliability.ledger import Column, Probe, Purchase, check
from reliability.private_postgres import own_server
from reliability.scenarios import ALL_COLUMNS, Context, Result, env_float, env_int, seeded
from reliability.system import ProxiedSystem

MONTH = 30 * 24 * 3600
RENEWAL_SUBJECT = "Your renewal receipt from"
# Test doubles, not the system: their memory grows with what they keep by design.
NOT_MEASURED_FOR_MEMORY = ("localstripe", "mailsink")


@dataclass(frozen=True)
class Member:
    """A subscription to renew: its order, buyer and Stripe ids."""

    order_id: uuid.UUID
    buyer: str
    stripe_subscription: str
    stripe_customer: str


def _invoice(member: Member, created: int, reason: str) -> dict[str, Any]:
    """A paid invoice of the member's subscription, as Stripe sends it
    (tests/payments/test_subscriptions.py)."""
    return {
        "id": f"in_{uuid.uuid4().hex[:24]}",
        "object": "invoice",
        "subscription": member.stripe_subscription,
        "customer": member.stripe_customer,
        "status": "paid",
        "amount_due": stripe_driver.AMOUNT_MINOR,
        "amount_paid": stripe_driver.AMOUNT_MINOR,
        "currency": "usd",
        "created": created,
        "attempt_count": 1,
        "billing_reason": reason,
        "lines": {"data": [{"period": {"start": created, "end": created + MONTH}}]},
    }


async def insert_subscriptions(
    system: ProxiedSystem, business: dict[str, Any], n: int
) -> list[Member]:
    """n monthly subscriptions as ``/pay`` leaves them before Stripe's answer: a Stripe
    customer each, the pending order, the incomplete subscription."""
    engine = create_engine(system.direct_urls["payments"], pool_size=1)
    now = utcnow()
    offering_id, version_id = uuid.uuid4(), uuid.uuid4()
    billing = {"type": "recurring", "interval": "month", "interval_count": 1}
    order_ids = [uuid.uuid4() for _ in range(n)]
    members = [
        Member(
            order_id,
            stripe_driver.buyer_email(order_id),
            f"sub_{uuid.uuid4().hex[:14]}",
            f"cus_{uuid.uuid4().hex[:14]}",
        )
        for order_id in order_ids
    ]
    business_id = uuid.UUID(business["id"])
    rows: list[Any] = []
    subscriptions: list[Any] = []
    for m in members:
        customer_id = uuid.uuid4()
        rows.append(
            payments_models.Customer(
                id=customer_id,
                business_id=business_id,
                email=m.buyer,
                stripe_customer_id=m.stripe_customer,
                created_at=now,
            )
        )
        rows.append(
            payments_models.Order(
                id=m.order_id,
                business_id=business_id,
                business_name=business["name"],
                offering_id=offering_id,
                offering_version_id=version_id,
                offering_name="Monthly membership",
                kind="course",
                details={},
                billing=billing,
                buyer_email=m.buyer,
                buyer_name="Renewing Member",
                amount_minor=stripe_driver.AMOUNT_MINOR,
                currency="USD",
                discount_minor=0,
                status=payments_models.PENDING,
                customer_id=customer_id,
                stripe_customer_id=m.stripe_customer,
                idempotency_key=f"load-{m.order_id}",
                created_at=now,
                updated_at=now,
                payment_started_at=now,
            )
        )
        subscriptions.append(
            payments_models.Subscription(
                id=uuid.uuid4(),
                business_id=business_id,
                order_id=m.order_id,
                customer_id=customer_id,
                stripe_subscription_id=m.stripe_subscription,
                billing_type="recurring",
                interval="month",
                interval_count=1,
                installments_total=None,
                installments_paid=0,
                amount_minor=stripe_driver.AMOUNT_MINOR,
                currency="USD",
                status=payments_models.INCOMPLETE,
                cancel_at_period_end=False,
                created_at=now,
                updated_at=now,
            )
        )
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add_all(rows)
            await session.flush()  # orders and customers before their subscriptions
            session.add_all(subscriptions)
    finally:
        await engine.dispose()
    return members


def _write_samples(system: ProxiedSystem, samples: list[users.Sample]) -> None:
    """Every user request (route, kind, start s, status, ms) in the work dir, for a look
    beyond the percentiles printed."""
    first = min((s.at for s in samples), default=0.0)
    with (system.work_dir / "requests.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("route", "kind", "start_s", "status", "ms"))
        for s in samples:
            writer.writerow(
                (s.label, s.kind, f"{s.at - first:.3f}", s.status, f"{s.seconds * 1000:.1f}")
            )


# -- numbers ----------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 (seconds); zeros when there is nothing."""
    if len(values) < 2:
        return (values[0],) * 3 if values else (0.0, 0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[94], cuts[98]


def _ms(triple: tuple[float, float, float]) -> str:
    return "p50 {:.0f} / p95 {:.0f} / p99 {:.0f} ms".format(*(v * 1000 for v in triple))


def rss(system: ProxiedSystem) -> dict[str, int]:
    """Resident memory of every system process (bytes), by process name."""
    sizes = {}
    for name, proc in system.procs.items():
        try:
            sizes[name] = psutil.Process(proc.pid).memory_info().rss
        except psutil.Error:
            sizes[name] = 0
    return sizes


async def _rows(probe: Probe, service: str, sql: str, **params: Any) -> list[Any]:
    async with probe.engines[service].connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


def _per_invoice(name: str, invoices: list[str], counted: Counter[str]) -> Column:
    """Each renewal invoice must have exactly one; anything for another invoice is
    unexpected (the ledger's rule, per invoice)."""
    column = Column(name)
    ours = set(invoices)
    for invoice in invoices:
        got = counted.get(invoice, 0)
        column.expected += 1
        column.got += got
        column.lost += got == 0
        if got > 1:
            column.duplicated += 1
            column.extra += got - 1
    others = sum(n for k, n in counted.items() if k not in ours)
    column.unexpected += others
    column.got += others
    return column


async def count_renewals(probe: Probe, renewals: list[tuple[Member, str]]) -> dict[str, Column]:
    """Per renewal invoice: the payments row, ``subscription_renewed`` in the payments
    outbox, clients' applied renewal, the renewal receipt's email row, and the renewal
    receipts the SMTP sink accepted (per buyer: one renewal each)."""
    invoices = [invoice for _, invoice in renewals]
    columns: dict[str, Column] = {}
    wanted = set(invoices)
    rows = await _rows(
        probe,
        "payments",
        "SELECT stripe_invoice_id FROM payments WHERE stripe_invoice_id IS NOT NULL",
    )
    # First invoices are the grants the ledger counts: only renewal ones here.
    first = {r[0] for r in rows} - wanted
    columns["payments"] = _per_invoice(
        "payments", invoices, Counter(r[0] for r in rows if r[0] not in first)
    )
    rows = await _rows(
        probe,
        "payments",
        "SELECT payload FROM outbox WHERE name = 'payments.subscription_renewed.v1'",
    )
    columns["renewed"] = _per_invoice(
        "renewed", invoices, Counter(json.loads(r[0])["invoice_id"] for r in rows)
    )
    rows = await _rows(
        probe,
        "clients",
        "SELECT invoice_id FROM subscription_events_applied WHERE effect = 'renewed'",
    )
    columns["applied"] = _per_invoice("applied", invoices, Counter(r[0] for r in rows))
    # The email's id derives from the invoice, template and recipient (emails.service).
    invoice_of = {
        email_id(invoice_key(invoice), SUBSCRIPTION_RENEWED, member.buyer): invoice
        for member, invoice in renewals
    }
    rows = await _rows(
        probe, "notifications", "SELECT id FROM emails WHERE template = :t", t=SUBSCRIPTION_RENEWED
    )
    columns["emails"] = _per_invoice(
        "emails", invoices, Counter(invoice_of.get(r[0], str(r[0])) for r in rows)
    )
    buyers = {member.buyer: invoice for member, invoice in renewals}
    messages = [m for m in await probe.messages() if m["subject"].startswith(RENEWAL_SUBJECT)]
    columns["receipts"] = _per_invoice(
        "receipts",
        invoices,
        Counter(buyers.get(to.lower(), to) for m in messages for to in m["rcpt_tos"]),
    )
    return columns


@dataclass
class Connections:
    """Peak PostgreSQL connections: the system's, per service, and the whole server's
    (which other runs share: "too many clients" there is a 503 at the webhook intake)."""

    probe: Probe
    peak: Counter[str] = field(default_factory=Counter)
    system_peak: int = 0
    server_peak: int = 0
    limit: int = 0

    async def watch(self, until: asyncio.Event) -> None:
        names = {name: service for service, name in self.probe.system.databases.items()}
        while not until.is_set():
            try:
                rows = await _rows(
                    self.probe,
                    "payments",
                    "SELECT datname, current_setting('max_connections') FROM pg_stat_activity",
                )
            except DBAPIError:  # a diagnostic: a refused connection only skips a sample
                rows = []
            now = Counter(names[r[0]] for r in rows if r[0] in names)
            for service, n in now.items():
                self.peak[service] = max(self.peak[service], n)
            self.system_peak = max(self.system_peak, sum(now.values()))
            self.server_peak = max(self.server_peak, len(rows))
            self.limit = int(rows[0][1]) if rows else self.limit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), 1.0)

    def summary(self) -> str:
        return (
            f"PostgreSQL connections: system peak {self.system_peak} {dict(self.peak)}; "
            f"whole server peak {self.server_peak} of max_connections {self.limit}"
        )


# -- the scenario -------------------------------------------------------------------------


async def load(ctx: Context, result: Result) -> None:
    """On a PostgreSQL server of its own: every api and worker may hold 20 connections
    (160 in all), more than a default server allows, and the run must take none from
    anything else on the machine."""
    async with own_server(ctx, max_connections=300) as (own, _server):
        await _load(own, result)


async def _load(ctx: Context, result: Result) -> None:
    n_users = env_int("RELIABILITY_LOAD_USERS", 50)
    seconds = env_float("RELIABILITY_LOAD_SECONDS", 600)
    warmup = env_float("RELIABILITY_LOAD_WARMUP_SECONDS", 60)
    buy_share = env_float("RELIABILITY_LOAD_BUY_SHARE", 0.1)
    n_renewals = env_int("RELIABILITY_LOAD_RENEWALS", 5000)
    renewal_seconds = env_float("RELIABILITY_LOAD_RENEWAL_SECONDS", 60)
    rng = seeded(ctx.seed, 12)
    # Each user has an address of its own behind one trusted proxy (rate limits are
    # per address, as for real people).
    system = await ctx.start(12, {"GATEWAY_TRUSTED_PROXY_COUNT": "1"})
    result.work_dir = str(system.work_dir)
    probe = Probe(system)
    watcher: asyncio.Task[None] | None = None
    try:
        # Who is who: a fifth coaches, three tenths clients, the rest visitors.
        n_coaches = max(1, round(n_users * 0.2))
        n_clients = round(n_users * 0.3)
        n_visitors = max(0, n_users - n_coaches - n_clients)
        result.say(
            f"{n_users} users ({n_visitors} visitors, {n_clients} clients, {n_coaches} coaches) "
            f"for {seconds:g} s, think time 0.5-2 s, buying on {buy_share:.0%} of visits; "
            f"then {n_renewals} renewal webhooks in {renewal_seconds:g} s"
        )

        # The subscriptions to renew, settled by the system before the users come.
        coach = await signup(system, "Renewing Members")
        members = await insert_subscriptions(system, coach["business"], n_renewals)
        month_ago = int(time.time()) - MONTH
        firsts = [
            stripe_event("invoice.paid", _invoice(m, month_ago, "subscription_create"))
            for m in members
        ]
        prep = Webhooks(system, in_flight=16)
        prep_seconds = await prep.stream(firsts)
        await prep.close()
        members_bought = [Purchase(m.order_id, m.buyer, granted=True) for m in members]
        prepared = await check(probe, members_bought, columns=ALL_COLUMNS)
        result.say(
            f"prepared {n_renewals} subscriptions (first invoice.paid through the gateway in "
            f"{prep_seconds:.0f} s: {prep.summary()}); their ledger:\n" + prepared.report()
        )

        # The users.
        world = await users.build_world(
            system,
            rng,
            coaches=n_coaches,
            clients=n_clients,
            buy_share=buy_share,
        )
        world.deadline = time.monotonic() + seconds
        tasks = (
            [users.visitor(world, seeded(ctx.seed, 1200 + k)) for k in range(n_visitors)]
            + [
                users.client(world, seeded(ctx.seed, 1300 + k), email, shop)
                for k, (email, shop) in enumerate(world.client_accounts)
            ]
            + [
                users.coach(world, seeded(ctx.seed, 1400 + k), shop)
                for k, shop in enumerate(world.shops)
            ]
        )
        memory: dict[str, dict[str, int]] = {}
        connections, stop_watching = Connections(probe), asyncio.Event()
        watcher = asyncio.create_task(connections.watch(stop_watching))

        async def sample_after_warmup() -> None:
            await asyncio.sleep(min(warmup, seconds))
            memory["warm"] = rss(system)

        await asyncio.gather(sample_after_warmup(), *tasks)
        samples = world.recorder.samples
        _write_samples(system, samples)
        gateway_samples = [s for s in samples if s.kind in users.GATEWAY_KINDS]
        statuses = Counter(s.status for s in samples)
        server_errors = sum(1 for s in samples if s.status >= 500)
        p_all = percentiles([s.seconds for s in gateway_samples])
        result.say(
            f"users (every request in requests.csv): {len(samples)} requests in {seconds:g} s "
            f"({len(gateway_samples) / seconds:.1f}/s to the gateway), statuses "
            f"{dict(sorted(statuses.items()))}, 5xx {server_errors}; purchases "
            f"{len(world.purchases)} {dict(world.bought)}, failed {dict(world.purchase_failures)}"
        )
        if world.recorder.errors:
            result.say(f"unexpected answers: {dict(world.recorder.errors.most_common(10))}")
        result.say(f"gateway latency, every user request: {_ms(p_all)}")
        for kind in (*users.GATEWAY_KINDS, "stripe"):
            values = [s.seconds for s in samples if s.kind == kind]
            result.say(f"  {kind:<9} {len(values):>6} requests  {_ms(percentiles(values))}")
        by_route: dict[str, list[float]] = {}
        for s in samples:
            by_route.setdefault(s.label, []).append(s.seconds)
        slowest = sorted(by_route.items(), key=lambda kv: -percentiles(kv[1])[1])[:6]
        result.say(
            "slowest routes (p95): "
            + "; ".join(
                f"{label} {percentiles(v)[1] * 1000:.0f} ms (n={len(v)})" for label, v in slowest
            )
        )

        ledger = await check(probe, members_bought + world.purchases, columns=ALL_COLUMNS)
        result.say("ledger of every purchase (users' and the subscriptions'):\n" + ledger.report())

        # The renewals: one per subscription, at a steady pace, retried until 2xx.
        now = int(time.time())
        renewals: list[tuple[Member, str]] = []
        payloads = []
        for member in members:
            invoice = _invoice(member, now, "subscription_cycle")
            kind = rng.choice(("invoice.paid", "invoice.payment_succeeded"))
            payloads.append(stripe_event(kind, invoice))
            renewals.append((member, invoice["id"]))
        rate = n_renewals / renewal_seconds if renewal_seconds > 0 else 0.0
        # Enough in flight that the pace is the server's, never our queue's.
        webhooks = Webhooks(system, in_flight=256)
        stream_seconds = await webhooks.stream(payloads, rate)
        await webhooks.close()
        p_hooks = percentiles(webhooks.latencies)
        hook_errors = sum(n for status, n in webhooks.statuses.items() if status.startswith("5"))
        result.say(
            f"renewals: {n_renewals} at {rate:.0f}/s sent in {stream_seconds:.1f} s; "
            f"{webhooks.summary()}; answer {_ms(p_hooks)}"
        )
        drained_s, still = await probe.wait_quiet(300)
        stop_watching.set()
        await watcher
        result.say(connections.summary())
        result.say(
            f"drained {drained_s:.1f} s after the last webhook"
            + (f"; STILL IN FLIGHT after 300 s: {still}" if still else "")
        )
        renewal_columns = await count_renewals(probe, renewals)
        result.say(
            f"renewal ledger ({n_renewals} invoices):\n"
            + "\n".join(c.row() for c in renewal_columns.values())
        )
        after = await check(
            probe,
            members_bought + world.purchases,
            columns=("order_paid", "applied", "emails", "receipts"),
        )
        result.say("purchases after the renewals (nothing new for them):\n" + after.report())

        memory["end"] = rss(system)
        growth = {
            name: memory["end"][name] / memory["warm"][name] - 1
            for name in memory["end"]
            if memory["warm"].get(name)
        }
        measured = {k: v for k, v in growth.items() if k not in NOT_MEASURED_FOR_MEMORY}
        result.say(
            "RSS after warm-up -> end (MB, growth): "
            + ", ".join(
                f"{name} {memory['warm'][name] / 2**20:.0f}->{memory['end'][name] / 2**20:.0f} "
                f"({g:+.0%})"
                for name, g in sorted(growth.items())
            )
            + f"; not judged: {', '.join(NOT_MEASURED_FOR_MEMORY)} (test doubles)"
        )
        checks = {
            "0 5xx": server_errors == 0
            and hook_errors == 0
            and not any(status.startswith("5") for status in prep.statuses),
            "every purchase paid": not world.purchase_failures,
            "API p95 < 300 ms": p_all[1] < 0.300,
            "webhook answer p99 < 2 s": p_hooks[2] < 2.0,
            "drained within 5 min": not still,
            "clean ledger": prepared.clean() and ledger.clean() and after.clean(),
            "renewals exactly once": all(c.clean for c in renewal_columns.values())
            and webhooks.never_taken == 0,
            "RSS growth < 10 %": all(g < 0.10 for g in measured.values()),
        }
        result.say(
            "criteria: " + ", ".join(f"{k}: {'ok' if v else 'FAIL'}" for k, v in checks.items())
        )
        result.passed = all(checks.values())
    finally:
        if watcher is not None and not watcher.done():
            watcher.cancel()
        await probe.close()
        await asyncio.to_thread(system.stop)


SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {
    12: ("load: users browsing and buying, then a burst of renewals", load),
}
