"""Scenario 4: PostgreSQL connections terminated, then a restart (a server of its own).

The shared PostgreSQL must never be restarted, so this scenario starts one of its own
(``reliability.private_postgres``), migrates templates there and runs the whole system
against it. While purchases and ordinary API reads flow through the gateway, every
connection to the system's databases is terminated (``pg_terminate_backend``) every few
seconds; then the server restarts (``pg_ctl restart -m fast``) and the load goes on.
Every request's time and answer is kept: a 5xx, a refused connection or a timeout is a
failure, allowed only shortly after a kill or the restart, and rarely.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import httpx

from reliability.driver import Webhooks, copied_purchases, stripe_event
from reliability.ledger import Probe, check
from reliability.private_postgres import PrivatePostgres, own_server
from reliability.scenarios import ALL_COLUMNS, Context, Result, _lines, env_float
from reliability.system import ProxiedSystem
from tests.e2e.conftest import unique_ip
from tests.e2e.test_gateway import unique_email
from tests.security import world
from tests.support.stack import MailSink

# A failed request counts as the fault's when it ended this soon after a kill, or after
# the restart ended (or while it ran).
FAILURE_WINDOW_SECONDS = 2.0
MAX_FAILED_SHARE = 0.01
READ_TIMEOUT_SECONDS = 10.0

TERMINATE = """
SELECT count(*) FROM (
    SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
    WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()
) AS backends WHERE terminated
"""


@dataclass(frozen=True)
class Answer:
    kind: str  # "webhook", or the label of the API read
    started: float  # time.monotonic()
    ended: float
    status: str  # the HTTP status, or the client-side error (refused, reset, timeout)

    @property
    def failed(self) -> bool:
        return self.status.startswith("5") or not self.status.isdigit()


class RecordingWebhooks(Webhooks):
    """Webhooks posted again until answered 2xx (as Stripe does), every attempt kept."""

    def __init__(self, system: ProxiedSystem, answers: list[Answer], in_flight: int) -> None:
        super().__init__(system, in_flight=in_flight)
        self.answers = answers

    def attempted(self, started: float, ended: float, status: str) -> None:
        super().attempted(started, ended, status)
        self.answers.append(Answer("webhook", started, ended, status))


@dataclass(frozen=True)
class Read:
    label: str
    path: str
    token: str


def _build_reads(system: ProxiedSystem) -> tuple[list[Read], dict[str, Any]]:
    """Through the public API: a coach signs up, invites a client who accepts (by the
    emailed link) and publishes an offering. Returns the reads a coach and a client
    make all day (each answered 200 before any fault) and the business."""
    with httpx.Client(base_url=system.gateway_url, headers=unique_ip(), timeout=30) as http:
        coach, signed = world.signup(http, "pgkill")
        business = signed["business"]
        address = unique_email("pgkill-client")
        world.invite(http, business["id"], coach, address)
        token = world.invitation_token(MailSink(system.mail_url), address)
        accepted = world.accept(http, token, "Terminated Client")
        assert accepted.status_code in (200, 201), accepted.text
        client = accepted.json()["access_token"]
        world.offering(http, business["id"], coach, "Terminated agreement")
        mine = f"businesses/{business['id']}"
        reads = [
            Read("coach clients", f"{world.CLIENTS}/{mine}/clients", coach.token),
            Read("coach activity", f"{world.PAYMENTS}/{mine}/activity", coach.token),
            Read("coach offerings", f"{world.CATALOG}/{mine}/offerings", coach.token),
            Read("coach orders", f"{world.PAYMENTS}/{mine}/orders", coach.token),
            Read("coach emails", f"{world.NOTIFY}/{mine}/emails", coach.token),
            Read("client orders", f"{world.PAYMENTS}/me/orders", client),
            Read("client me", f"{world.CLIENTS}/me", client),
            Read("client purchases", f"{world.CLIENTS}/me/purchases", client),
        ]
        for read in reads:
            answer = http.get(read.path, headers=world.bearer(read.token))
            assert answer.status_code == 200, (read.path, answer.status_code, answer.text[:300])
    return reads, business


async def _read_stream(
    gateway: str, reads: list[Read], answers: list[Answer], rate: float, seconds: float
) -> None:
    """The reads in turn, ``rate`` a second for ``seconds``; one try each."""
    started = time.monotonic()
    async with aiohttp.ClientSession(
        headers=unique_ip(), timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_SECONDS)
    ) as http:

        async def one(n: int) -> None:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            read = reads[n % len(reads)]
            begun = time.monotonic()
            try:
                async with http.get(gateway + read.path, headers=world.bearer(read.token)) as r:
                    await r.read()
                    status = str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            answers.append(Answer(read.label, begun, time.monotonic(), status))

        await asyncio.gather(*(one(n) for n in range(int(rate * seconds))))


@dataclass
class Faults:
    kills: list[tuple[float, int]] = field(default_factory=list)  # (when, backends ended)
    restart: tuple[float, float] | None = None  # (began, server up again)

    def since_last(self, at: float) -> float:
        """Seconds from the latest fault before ``at`` (0 during the restart); inf if none."""
        gaps = [at - when for when, _ in self.kills if when <= at]
        if self.restart is not None and self.restart[0] <= at:
            gaps.append(max(0.0, at - self.restart[1]))
        return min(gaps, default=math.inf)


async def _terminate(dsn: str, databases: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(TERMINATE, databases))
    finally:
        await conn.close()


async def _inject(
    server: PrivatePostgres,
    databases: list[str],
    faults: Faults,
    *,
    every: float,
    seconds: float,
    started: float,
) -> None:
    """Kill every connection each ``every`` s until ``seconds``, then restart the server."""
    k = 1
    while k * every < seconds:
        await asyncio.sleep(max(0.0, started + k * every - time.monotonic()))
        when = time.monotonic()
        faults.kills.append((when, await _terminate(server.dsn, databases)))
        k += 1
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    began = time.monotonic()
    await asyncio.to_thread(server.restart)
    faults.restart = (began, time.monotonic())


def _log_counts(system: ProxiedSystem, event: str) -> dict[str, int]:
    counts = {name: len(_lines(system.log(name), event)) for name in system.specs}
    return {name: n for name, n in counts.items() if n}


async def connections_terminated(ctx: Context, result: Result) -> None:
    seconds = env_float("RELIABILITY_PG_SECONDS", 300)
    after = env_float("RELIABILITY_PG_AFTER_SECONDS", 30)
    rate = env_float("RELIABILITY_PG_RATE", 5)
    read_rate = env_float("RELIABILITY_PG_READ_RATE", 10)
    every = env_float("RELIABILITY_PG_KILL_EVERY", 10)
    async with own_server(ctx) as (own, server):
        system = await own.start(4, {})
        result.work_dir = str(system.work_dir)
        try:
            await _run(system, server, result, seconds, after, rate, read_rate, every)
        finally:
            await asyncio.to_thread(system.stop)
            (system.work_dir / "postgres.log").write_text(server.server_log())


async def _run(
    system: ProxiedSystem,
    server: PrivatePostgres,
    result: Result,
    seconds: float,
    after: float,
    rate: float,
    read_rate: float,
    every: float,
) -> None:
    reads, business = await asyncio.to_thread(_build_reads, system)
    n = round(rate * (seconds + after))
    purchases, intents = await copied_purchases(system, business, n)
    payloads = [stripe_event("payment_intent.succeeded", pi) for pi in intents]
    answers: list[Answer] = []
    webhooks = RecordingWebhooks(system, answers, in_flight=16)
    faults = Faults()
    databases = sorted(system.databases.values())
    result.say(
        f"own PostgreSQL {server.version} on port {server.port}; {n} purchases at {rate:g}/s "
        f"and {len(reads)} kinds of API reads at {read_rate:g}/s through the gateway for "
        f"{seconds + after:g} s; every connection to the {len(databases)} databases "
        f"terminated every {every:g} s for {seconds:g} s, then the server restarted "
        f"(-m fast) and the load kept on for {after:g} s"
    )
    started = time.monotonic()
    try:
        await asyncio.gather(
            webhooks.stream(payloads, rate),
            _read_stream(system.gateway_url, reads, answers, read_rate, seconds + after),
            _inject(server, databases, faults, every=every, seconds=seconds, started=started),
        )
    finally:
        await webhooks.close()
    killed = [k for _, k in faults.kills]
    restart = faults.restart
    result.say(
        f"{len(killed)} kills in {seconds:g} s: {sum(killed)} backends terminated "
        f"(per kill min {min(killed, default=0)}, max {max(killed, default=0)}); restart "
        + (f"took {restart[1] - restart[0]:.2f} s" if restart else "NEVER DONE")
    )

    failed = [a for a in answers if a.failed]
    share = len(failed) / len(answers) if answers else 1.0
    gaps = [faults.since_last(a.ended) for a in failed]
    worst = max(gaps, default=0.0)
    late = [(a, g) for a, g in zip(failed, gaps, strict=True) if g > FAILURE_WINDOW_SECONDS]
    by_kind: dict[str, Counter[str]] = {}
    for answer in answers:
        by_kind.setdefault(answer.kind, Counter())[answer.status] += 1
    result.say(f"webhooks: {webhooks.summary()}")
    result.say(
        "reads: "
        + "; ".join(f"{kind} {dict(c)}" for kind, c in sorted(by_kind.items()) if kind != "webhook")
    )
    result.say(
        f"requests {len(answers)}, failed (5xx, refused, timeout) {len(failed)} = "
        f"{100 * share:.2f} % (allowed {100 * MAX_FAILED_SHARE:g} %): "
        f"{dict(Counter(a.status for a in failed))}; worst time from the last kill/restart "
        f"to a failure {worst:.2f} s (allowed {FAILURE_WINDOW_SECONDS:g} s); "
        f"{len(late)} failed later than that"
        + (
            ": "
            + ", ".join(
                f"{a.kind} {a.status} +{g:.1f}s @{a.ended - started:.0f}s" for a, g in late[:8]
            )
            if late
            else ""
        )
    )
    after_restart = [a for a in failed if restart and a.ended > restart[1]]
    result.say(
        f"failures after the restart ended: {len(after_restart)}; the apis' unhandled errors: "
        f"{_log_counts(system, 'unhandled_error')}; reads run again on a fresh connection: "
        f"{_log_counts(system, 'read_retried_after_disconnect')}; webhook intakes tried again: "
        f"{_log_counts(system, 'database_disconnect_retried')}"
    )
    dead = [name for name, proc in system.procs.items() if proc.poll() is not None]
    probe = Probe(system)
    try:
        ledger = await check(probe, purchases, columns=ALL_COLUMNS)
    finally:
        await probe.close()
    result.say("\n" + ledger.report())
    result.say(
        f"processes that exited: {dead or 'none'}; workers' retry traces: relay errors "
        f"{_log_counts(system, 'outbox_relay_error')}, consumers holding "
        f"{_log_counts(system, 'database_unreachable_holding_messages')}, jobs failed "
        f"{_log_counts(system, 'job_failed')}"
    )
    result.passed = (
        webhooks.never_taken == 0
        and ledger.clean()
        and bool(answers)
        and share <= MAX_FAILED_SHARE
        and not late
        and restart is not None
        and not dead
    )


SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {
    4: ("PostgreSQL connections terminated, then a restart", connections_terminated),
}
