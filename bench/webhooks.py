"""Stripe webhooks: intake latency at a steady rate, and the purchase pipeline end to end.

Starts every process of the system (bench.common.start_system: catalog, payments,
clients, notifications, gateway, mailsink, localstripe) on PostgreSQL and RabbitMQ.

1. Webhook intake: signed Stripe events (``t=…,v1=HMAC_SHA256(secret, "{t}.{body}")``
   with the system's PAYMENTS_STRIPE_WEBHOOK_SECRET) posted through the gateway's
   ``/webhooks/stripe`` at a paced INTAKE_RATE/s for INTAKE_SECONDS by an aiohttp
   client (open loop: each request leaves at its own time, whatever the earlier ones
   do). Reports p50/p99 from send to 2xx and checks every event id is stored.
   Baseline: the same, straight at the payments api, in the same run.
   Goal: p99 < 50 ms, none lost.
2. Purchase pipeline: PURCHASES pending orders whose PaymentIntents succeeded in
   localstripe (PaymentIntents made and confirmed through localstripe's API; the order
   rows inserted straight into the payments database, as /pay leaves them), then one
   signed ``payment_intent.succeeded`` per order, PIPELINE_CONNECTIONS in flight, as
   fast as the gateway takes them -> payments worker settles (order paid, outbox) ->
   RabbitMQ -> clients applies the purchase (``purchases_applied.applied_at``) and
   notifications sends the receipt (accepted by the SMTP sink). Reports purchases/s end
   to end (first webhook sent -> last receipt accepted), p50/p99 webhook-to-entitlement
   and exact counts. Goal: >= 150 purchases/s, p99 < 1 s. Printed beside raw aio-pika
   (publish with confirms / consume with acks) measured in the same run.
3. The same purchase pipeline on a system with REPLICA_WORKERS copies of every worker
   (one RabbitMQ, one database per service; apis once): the same figures and exact
   counts, and what each worker replica did (its own Prometheus counters). Baseline:
   the one-replica pipeline of the same ``make bench`` run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import select, text

from bench import event_pipeline
from bench.common import Figure, RunningSystem, Work, env_int, signup, start_system, table
from devtools import stripe_driver
from devtools.processes import Replicas
from kit.db import create_engine
from payments import models

INTAKE_RATE = env_int("BENCH_WEBHOOK_RATE", 200)
INTAKE_SECONDS = env_int("BENCH_WEBHOOK_SECONDS", 60)
PURCHASES = env_int("BENCH_PURCHASES", 3000)
# Copies of every worker in the replicated purchase pipeline.
REPLICA_WORKERS = env_int("BENCH_REPLICA_WORKERS", 2)
PIPELINE_CONNECTIONS = 32
# Purchases per second offered to the pipeline; 0: as fast as the gateway takes them.
# A paced run shows the latency the system keeps at a rate it can sustain.
PIPELINE_RATE = float(os.environ.get("BENCH_PIPELINE_RATE", 0))
RAW_EVENTS = 5000
GOAL_INTAKE_P99_MS = 50.0
GOAL_PURCHASES_PER_S = 150.0
GOAL_ENTITLEMENT_P99_S = 1.0


def stripe_event(type_: str, obj: dict[str, Any]) -> tuple[str, bytes]:
    """A signed-to-be event and its id."""
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    return event_id, stripe_driver.stripe_event(type_, obj, event_id)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def post_webhook(
    http: aiohttp.ClientSession, url: str, payload: bytes, secret: str
) -> tuple[int, float]:
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_driver.sign(payload, secret),
    }
    started = time.perf_counter()
    async with http.post(url, data=payload, headers=headers) as response:
        await response.read()
        return response.status, time.perf_counter() - started


# -- 1. intake ------------------------------------------------------------------------------


@dataclass
class IntakeResult:
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    achieved_rate: float
    stored: int
    drained_s: float


async def intake(system: RunningSystem, secret: str, *, direct: bool = False) -> IntakeResult:
    """``direct``: straight at the payments api (the baseline), not through the gateway."""
    if direct:
        url = f"{system.url_of('payments')}/api/v1/payments/webhooks/stripe"
    else:
        url = f"{system.gateway}/webhooks/stripe"
    total = INTAKE_RATE * INTAKE_SECONDS
    events = [
        stripe_event(
            "payment_intent.succeeded",
            {
                "id": f"pi_bench{'d' if direct else 'g'}{n:08d}",
                "object": "payment_intent",
                "status": "succeeded",
                "amount": 12000,
                "currency": "usd",
                "metadata": {},
            },
        )
        for n in range(total)
    ]
    latencies: list[float] = []
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm up the connection pools (gateway -> payments, payments -> PostgreSQL).
        for _ in range(20):
            _id, body = stripe_event("ping", {"id": "warmup"})
            await post_webhook(http, url, body, secret)

        async def one(n: int, due: float) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, elapsed = await post_webhook(http, url, events[n][1], secret)
            statuses.append(status)
            latencies.append(elapsed)

        start = time.perf_counter() + 0.2
        tasks = [asyncio.create_task(one(n, start + n / INTAKE_RATE)) for n in range(total)]
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    stored = await count_stored(system, {event_id for event_id, _ in events})
    drained = await wait_processed(system)
    return IntakeResult(
        sent=total,
        ok=sum(1 for s in statuses if 200 <= s < 300),
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=max(latencies) * 1000,
        achieved_rate=total / duration,
        stored=stored,
        drained_s=drained,
    )


async def wait_processed(system: RunningSystem, timeout: float = 300) -> float:
    """Seconds until the payments worker has processed every stored event."""
    engine = create_engine(system.processes.env["PAYMENTS_DATABASE_URL"], pool_size=1)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            left = await _scalar(
                engine, "SELECT count(*) FROM stripe_events WHERE processed_at IS NULL"
            )
            if left == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.25)
        return float("nan")
    finally:
        await engine.dispose()


async def count_stored(system: RunningSystem, event_ids: set[str]) -> int:
    engine = create_engine(system.processes.env["PAYMENTS_DATABASE_URL"], pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(models.StripeEvent.stripe_event_id))
            return len(event_ids & set(rows.scalars()))
    finally:
        await engine.dispose()


# -- 2. purchase pipeline ----------------------------------------------------------------------


@dataclass
class PipelineResult:
    purchases: int
    webhooks_ok: int
    webhook_seconds: float
    paid: int
    payments_rows: int
    applied: int
    receipts: int
    duplicate_receipts: int
    entitled_seconds: float
    receipts_seconds: float
    entitlement_p50_s: float
    entitlement_p99_s: float
    receipt_p99_s: float


async def make_orders(system: RunningSystem, business: dict[str, Any], n: int) -> list[Any]:
    """n pending orders with copies of one PaymentIntent that succeeded in localstripe
    (devtools.stripe_driver)."""
    made = stripe_driver.intent_copies(
        await stripe_driver.succeeded_intent(system.url_of("localstripe")), n
    )
    await stripe_driver.insert_pending_orders(
        system.processes.env["PAYMENTS_DATABASE_URL"],
        business,
        [(order_id, pi["id"]) for order_id, pi in made],
        label="bench",
    )
    return made


async def _scalar(engine: Any, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def _mail(http: aiohttp.ClientSession, mail_url: str) -> list[dict[str, Any]]:
    async with http.get(f"{mail_url}/messages") as response:
        return list(await response.json())


async def pipeline(system: RunningSystem, secret: str) -> PipelineResult:
    auth = signup(system.gateway, business="Harbour Webhooks")
    business = auth["business"]
    assert isinstance(business, dict)
    orders = await make_orders(system, business, PURCHASES)
    clients_db = create_engine(system.processes.env["CLIENTS_DATABASE_URL"], pool_size=1)
    payments_db = create_engine(system.processes.env["PAYMENTS_DATABASE_URL"], pool_size=1)
    mail_url = system.url_of("mail_http")
    sent_at: dict[str, float] = {}
    url = f"{system.gateway}/webhooks/stripe"
    webhooks_ok = 0
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=PIPELINE_CONNECTIONS)
        ) as http:
            queue: asyncio.Queue[tuple[uuid.UUID, dict[str, Any]]] = asyncio.Queue()
            for order in orders:
                queue.put_nowait(order)

            sent = 0

            async def sender() -> None:
                nonlocal webhooks_ok, sent
                while not queue.empty():
                    order_id, pi = queue.get_nowait()
                    if PIPELINE_RATE > 0:  # open loop: the n-th purchase leaves at n / rate
                        sent += 1
                        await asyncio.sleep(max(0.0, started + sent / PIPELINE_RATE - time.time()))
                    _event_id, body = stripe_event("payment_intent.succeeded", pi)
                    sent_at[str(order_id)] = time.time()
                    status, _elapsed = await post_webhook(http, url, body, secret)
                    webhooks_ok += 200 <= status < 300

            business_id = business["id"]
            started = time.time()
            await asyncio.gather(*(sender() for _ in range(PIPELINE_CONNECTIONS)))
            webhook_seconds = time.time() - started
            entitled_at = receipts_at = 0.0
            receipts: list[dict[str, Any]] = []
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not (entitled_at and receipts_at):
                await asyncio.sleep(0.25)
                if not entitled_at:
                    applied = await _scalar(
                        clients_db,
                        "SELECT count(*) FROM purchases_applied WHERE business_id = :b",
                        b=uuid.UUID(business_id),
                    )
                    if applied >= PURCHASES:
                        entitled_at = time.time()
                if not receipts_at:
                    async with http.get(f"{mail_url}/_control/stats") as response:
                        accepted = (await response.json())["accepted"]
                    # Cheap check first (every accepted message), then the receipts.
                    if accepted >= PURCHASES:
                        receipts = [
                            m
                            for m in await _mail(http, mail_url)
                            if str(m.get("subject", "")).startswith("Your receipt from")
                        ]
                        if len(receipts) >= PURCHASES:
                            receipts_at = time.time()
            await asyncio.sleep(2)  # anything more (a duplicate) would arrive now
            receipts = [
                m
                for m in await _mail(http, mail_url)
                if str(m.get("subject", "")).startswith("Your receipt from")
            ]
        async with clients_db.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT order_id, applied_at FROM purchases_applied WHERE business_id = :b"
                    ),
                    {"b": uuid.UUID(business_id)},
                )
            ).all()
        lags = [
            applied_at.replace(tzinfo=applied_at.tzinfo or UTC).timestamp() - sent_at[str(oid)]
            for oid, applied_at in rows
            if str(oid) in sent_at
        ]
        by_buyer: dict[str, int] = {}
        for message in receipts:
            for to in message["rcpt_tos"]:
                by_buyer[to] = by_buyer.get(to, 0) + 1
        buyer_sent = {
            stripe_driver.buyer_email(uuid.UUID(str(oid))): at for oid, at in sent_at.items()
        }
        receipt_lags = [
            _epoch(m["received_at"]) - buyer_sent[m["rcpt_tos"][0]]
            for m in receipts
            if m["rcpt_tos"] and m["rcpt_tos"][0] in buyer_sent
        ]
        paid = await _scalar(payments_db, "SELECT count(*) FROM orders WHERE status = 'paid'")
        payment_rows = await _scalar(payments_db, "SELECT count(*) FROM payments")
    finally:
        await clients_db.dispose()
        await payments_db.dispose()
    return PipelineResult(
        purchases=PURCHASES,
        webhooks_ok=webhooks_ok,
        webhook_seconds=webhook_seconds,
        paid=int(paid),
        payments_rows=int(payment_rows),
        applied=len(rows),
        receipts=len(receipts),
        duplicate_receipts=sum(c - 1 for c in by_buyer.values() if c > 1),
        entitled_seconds=(entitled_at - started) if entitled_at else float("nan"),
        receipts_seconds=(receipts_at - started) if receipts_at else float("nan"),
        entitlement_p50_s=statistics.median(lags) if lags else float("nan"),
        entitlement_p99_s=percentile(lags, 0.99) if lags else float("nan"),
        receipt_p99_s=percentile(receipt_lags, 0.99) if receipt_lags else float("nan"),
    )


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).timestamp()


# -- report -------------------------------------------------------------------------------------


def intake_met(result: IntakeResult) -> bool:
    lost = result.sent - result.stored
    return result.p99_ms < GOAL_INTAKE_P99_MS and lost == 0 and result.ok == result.sent


def intake_table(direct: IntakeResult, gateway: IntakeResult) -> str:
    rows = []
    for path, result in (("direct to payments", direct), ("via gateway", gateway)):
        rows.append(
            [
                path,
                f"{result.sent:,}",
                f"{result.achieved_rate:,.0f}/s",
                f"{result.ok:,}",
                f"{result.p50_ms:.1f}",
                f"{result.p99_ms:.1f}",
                f"{result.max_ms:.0f}",
                f"{result.stored:,} ({result.sent - result.stored} lost)",
                "met" if intake_met(result) else "NOT met",
            ]
        )
    return table(
        rows,
        ["path", "webhooks", "rate", "2xx", "p50 ms", "p99 ms", "max ms", "stored", "p99<50ms"],
    ) + (
        "\nworker backlog at the end of the intake processed "
        f"{direct.drained_s:.1f} s (direct), {gateway.drained_s:.1f} s (gateway) later"
    )


def exact(result: PipelineResult) -> bool:
    return (
        result.webhooks_ok
        == result.paid
        == result.payments_rows
        == result.applied
        == result.receipts
        == result.purchases
        and result.duplicate_receipts == 0
    )


def purchases_per_second(result: PipelineResult) -> float:
    return result.purchases / result.receipts_seconds


def pipeline_met(result: PipelineResult) -> bool:
    return (
        purchases_per_second(result) >= GOAL_PURCHASES_PER_S
        and result.entitlement_p99_s < GOAL_ENTITLEMENT_P99_S
        and exact(result)
    )


def pipeline_table(result: PipelineResult, raw: tuple[float, float] | None) -> str:
    end_to_end = purchases_per_second(result)
    entitled_rate = result.purchases / result.entitled_seconds
    rows = []
    if raw is not None:
        rows += [
            ["raw aio-pika publish (confirms, batches of 500)", f"{raw[0]:,.0f}", "", ""],
            ["raw aio-pika consume (acks, prefetch 500)", f"{raw[1]:,.0f}", "", ""],
        ]
    rows += [
        [
            f"webhooks accepted via gateway ({PIPELINE_CONNECTIONS} in flight)",
            f"{result.purchases / result.webhook_seconds:,.0f}",
            "",
            "",
        ],
        [
            "webhook -> paid -> entitlement applied (clients)",
            f"{entitled_rate:,.0f}",
            f"p50 {result.entitlement_p50_s:.2f} s, p99 {result.entitlement_p99_s:.2f} s",
            "",
        ],
        [
            "webhook -> ... -> receipt accepted by SMTP sink",
            f"{end_to_end:,.0f}",
            f"p99 {result.receipt_p99_s:.2f} s",
            "met" if pipeline_met(result) else "NOT met",
        ],
    ]
    counts = (
        f"counts: {result.purchases:,} orders, {result.webhooks_ok:,} webhooks 2xx, "
        f"{result.paid:,} paid, {result.payments_rows:,} payments rows, "
        f"{result.applied:,} purchases applied, {result.receipts:,} receipts "
        f"({result.duplicate_receipts} duplicate) -> {'exact' if exact(result) else 'NOT exact'}"
    )
    return table(rows, ["path", "per s", "latency", "goal 150/s, p99 < 1 s"]) + "\n" + counts


@dataclass
class WebhookRun:
    raw: tuple[float, float]  # raw aio-pika publish/s, consume/s (the pipeline's baseline)
    intake_direct: IntakeResult
    intake_gateway: IntakeResult
    pipeline: PipelineResult
    memory: dict[str, float]

    def report(self) -> str:
        return (
            f"Webhook intake ({INTAKE_RATE}/s for {INTAKE_SECONDS} s each, signed, aiohttp "
            f"open loop; straight at payments, then through the gateway)\n"
            f"{intake_table(self.intake_direct, self.intake_gateway)}\n\n"
            f"Purchase pipeline ({PURCHASES:,} purchases"
            f"{f', offered at {PIPELINE_RATE:g}/s' if PIPELINE_RATE > 0 else ''}, "
            f"raw aio-pika {RAW_EVENTS:,} messages "
            f"in the same run)\n{pipeline_table(self.pipeline, self.raw)}"
        )

    def figures(self) -> list[Figure]:
        direct, gateway, result = self.intake_direct, self.intake_gateway, self.pipeline
        rate = purchases_per_second(result)
        return [
            Figure(
                "webhook intake",
                f"via gateway p99 {gateway.p99_ms:.1f} ms at {gateway.achieved_rate:,.0f}/s, "
                f"{gateway.sent - gateway.stored} lost",
                f"direct to payments p99 {direct.p99_ms:.1f} ms",
                f"{gateway.p99_ms / direct.p99_ms:.1f}x p99",
                f"p99 < {GOAL_INTAKE_P99_MS:.0f} ms, none lost",
                intake_met(gateway),
                {
                    "gateway_p99_ms": gateway.p99_ms,
                    "gateway_p50_ms": gateway.p50_ms,
                    "direct_p99_ms": direct.p99_ms,
                    "lost": gateway.sent - gateway.stored,
                },
            ),
            Figure(
                "purchase pipeline",
                f"{rate:,.0f} purchases/s, entitlement p99 {result.entitlement_p99_s:.2f} s, "
                f"{'exact' if exact(result) else 'NOT exact'}",
                f"raw aio-pika consume {self.raw[1]:,.0f} msg/s",
                f"{rate / self.raw[1]:.1%}",
                f">= {GOAL_PURCHASES_PER_S:.0f}/s, p99 < {GOAL_ENTITLEMENT_P99_S:.0f} s, exact",
                pipeline_met(result),
                {
                    "purchases_per_s": rate,
                    "entitlement_p99_s": result.entitlement_p99_s,
                    "raw_consume_per_s": self.raw[1],
                    "raw_publish_per_s": self.raw[0],
                },
            ),
        ]


def measure() -> WebhookRun:
    raw = asyncio.run(event_pipeline.raw_aio_pika(RAW_EVENTS))
    system = start_system()
    try:
        secret = system.processes.env["PAYMENTS_STRIPE_WEBHOOK_SECRET"]
        direct = asyncio.run(intake(system, secret, direct=True))
        gateway = asyncio.run(intake(system, secret))
        pipeline_result = asyncio.run(pipeline(system, secret))
        memory = system.processes.rss_mb()
    finally:
        system.stop()
    return WebhookRun(raw, direct, gateway, pipeline_result, memory)


# -- 3. the purchase pipeline with several replicas of every worker ------------------------------


@dataclass
class ReplicaRun:
    workers: int
    pipeline: PipelineResult
    work: dict[str, Work]  # worker replica -> what it did (its metrics)
    memory: dict[str, float]

    @property
    def every_replica_worked(self) -> bool:
        return all(_did_work(name, work) for name, work in self.work.items())

    def report(self, single: PipelineResult | None = None) -> str:
        rows = [
            [name, work.summary(), "yes" if _did_work(name, work) else "NO"]
            for name, work in sorted(self.work.items())
        ]
        compare = ""
        if single is not None:
            compare = (
                f"\none replica of each worker, same make bench run: "
                f"{purchases_per_second(single):,.0f} purchases/s"
            )
        return (
            f"Purchase pipeline, {self.workers} replicas of every worker ({PURCHASES:,} purchases,"
            f" one RabbitMQ, one database per service)\n{pipeline_table(self.pipeline, None)}"
            f"{compare}\n\n"
            + table(rows, ["worker replica", "what it did (its /metrics)", "did its share"])
        )

    def figure(self, single: PipelineResult | None) -> Figure:
        result = self.pipeline
        rate = purchases_per_second(result)
        idle = [name for name, work in self.work.items() if not _did_work(name, work)]
        return Figure(
            f"purchase pipeline, {self.workers} replicas of each worker",
            f"{rate:,.0f} purchases/s, entitlement p99 {result.entitlement_p99_s:.2f} s, "
            f"{'exact' if exact(result) else 'NOT exact'}, "
            + (f"idle: {', '.join(idle)}" if idle else "every replica worked"),
            f"1 replica {purchases_per_second(single):,.0f}/s" if single else "–",
            f"{rate / purchases_per_second(single):.2f}x" if single else "–",
            f">= {GOAL_PURCHASES_PER_S:.0f}/s, p99 < {GOAL_ENTITLEMENT_P99_S:.0f} s, exact, "
            "every replica works",
            pipeline_met(result) and not idle,
            {
                "purchases_per_s": rate,
                "entitlement_p99_s": result.entitlement_p99_s,
                **{
                    f"{name}.{kind}": getattr(work, kind)
                    for name, work in self.work.items()
                    for kind in ("consumed", "published", "emails_sent")
                },
            },
        )


def _did_work(name: str, work: Work) -> bool:
    """Each worker's part in a purchase: payments settles and publishes, clients applies
    (and publishes what it did), notifications sends the receipt, catalog reads clients."""
    if name.startswith("payments"):
        return work.published > 0
    if name.startswith("notifications"):
        return work.consumed > 0 and work.emails_sent > 0
    return work.consumed > 0


def measure_replicas(workers: int = REPLICA_WORKERS) -> ReplicaRun:
    system = start_system(replicas=Replicas(apis=1, workers=workers))
    try:
        secret = system.processes.env["PAYMENTS_STRIPE_WEBHOOK_SECRET"]
        result = asyncio.run(pipeline(system, secret))
        return ReplicaRun(workers, result, system.work(), system.processes.rss_mb())
    finally:
        system.stop()


def report() -> str:
    return measure().report()


if __name__ == "__main__":
    if sys.argv[1:] == ["replicas"]:
        sys.stdout.write(measure_replicas().report() + "\n")
    else:
        sys.stdout.write(report() + "\n")
