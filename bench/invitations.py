"""Inviting 10,000 addresses in one request, through the gateway, end to end.

Times the request itself, then the time until every invitation email was
accepted by a real SMTP server (the SMTP sink), and checks that every
address got exactly one. Goal: request < 3 s, all emails < 120 s, none twice.
Baseline, in the same run: BASELINE_EMAILS messages of the same size sent
straight to the same SMTP sink over one connection (aiosmtplib), emails/s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from bench.common import Figure, env_int, signup, start_system, table

ADDRESSES = env_int("BENCH_INVITATIONS", 10_000)
BASELINE_EMAILS = 1_000
GOAL = "request < 3 s, all < 120 s, none twice"


@dataclass(frozen=True)
class InvitationRun:
    addresses: int
    request_seconds: float
    delivered_seconds: float
    delivered: int
    duplicates: int
    raw_smtp_per_s: float  # the baseline: straight to the same SMTP sink

    @property
    def emails_per_s(self) -> float:
        return self.delivered / self.delivered_seconds

    @property
    def met(self) -> bool:
        return (
            self.request_seconds < 3
            and self.delivered_seconds < 120
            and self.delivered == self.addresses
            and self.duplicates == 0
        )


def _messages(mail_url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{mail_url}/messages") as response:
        result: list[dict[str, object]] = json.loads(response.read())
        return result


async def raw_smtp(port: int, n: int, size: int) -> float:
    """Emails/s of n messages of ``size`` bytes sent over one SMTP connection."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await smtp.connect()
    try:
        started = time.perf_counter()
        for i in range(n):
            message = EmailMessage()
            message["From"], message["To"] = "bench@example.com", f"raw{i}@example.com"
            message["Subject"] = "Baseline"
            message.set_content("x" * size)
            await smtp.send_message(message)
        return n / (time.perf_counter() - started)
    finally:
        await smtp.quit()


def measure(count: int = ADDRESSES) -> tuple[InvitationRun, dict[str, float]]:
    system = start_system({"CLIENTS_INVITATION_DAILY_CAP": str(count * 2)})
    try:
        # An invitation email is a few kB of HTML and text: the baseline sends as much.
        raw_rate = asyncio.run(raw_smtp(system.ports.smtp, min(BASELINE_EMAILS, count), 6000))
        coach = signup(system.gateway)
        business = coach["business"]["id"]  # type: ignore[index]
        run_id = uuid.uuid4().hex[:6]
        addresses = [f"invitee{i}-{run_id}@example.com" for i in range(count)]
        mail_url = f"http://127.0.0.1:{system.ports.mail_http}"
        request = urllib.request.Request(
            f"{system.gateway}/api/v1/clients/businesses/{business}/invitations",
            data=json.dumps({"addresses": ",".join(addresses)}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {coach['access_token']}",
            },
            method="POST",
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())
        request_seconds = time.perf_counter() - started
        if result["counts"]["invited"] != count:
            raise RuntimeError(f"unexpected outcomes: {result['counts']}")

        wanted = set(addresses)
        deadline = started + 300

        def delivered() -> Counter[str]:
            return Counter(
                str(r)
                for m in _messages(mail_url)
                for r in m["rcpt_tos"]
                if r in wanted  # type: ignore[attr-defined]
            )

        while len(delivered()) < count and time.perf_counter() < deadline:
            time.sleep(1)
        delivered_seconds = time.perf_counter() - started
        time.sleep(3)  # a duplicate would show up now
        seen = delivered()
        run = InvitationRun(
            addresses=count,
            request_seconds=request_seconds,
            delivered_seconds=delivered_seconds,
            delivered=len(seen),
            duplicates=sum(n - 1 for n in seen.values()),
            raw_smtp_per_s=raw_rate,
        )
        return run, system.processes.rss_mb()
    finally:
        system.stop()


def report(run: InvitationRun) -> str:
    return table(
        [
            [
                f"{run.addresses:,}",
                f"{run.request_seconds:.2f}",
                f"{run.delivered_seconds:.1f}",
                f"{run.delivered:,}",
                str(run.duplicates),
                f"{run.emails_per_s:,.0f}",
                f"{run.raw_smtp_per_s:,.0f}",
                GOAL,
                "met" if run.met else "NOT met",
            ]
        ],
        [
            "addresses",
            "request s",
            "all delivered s",
            "delivered",
            "duplicates",
            "emails/s",
            "raw SMTP/s",
            "goal",
            "result",
        ],
    )


def figure(run: InvitationRun) -> Figure:
    return Figure(
        f"invitation of {run.addresses:,} addresses",
        f"request {run.request_seconds:.2f} s, all delivered {run.delivered_seconds:.1f} s "
        f"({run.emails_per_s:,.0f} emails/s), {run.duplicates} twice",
        f"raw SMTP to the sink {run.raw_smtp_per_s:,.0f} emails/s",
        f"{run.emails_per_s / run.raw_smtp_per_s:.0%}",
        GOAL,
        run.met,
        {
            "request_s": run.request_seconds,
            "delivered_s": run.delivered_seconds,
            "emails_per_s": run.emails_per_s,
            "raw_smtp_per_s": run.raw_smtp_per_s,
            "duplicates": run.duplicates,
        },
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else ADDRESSES
    invitation_run, memory = measure(n)
    sys.stdout.write(f"Inviting {n:,} addresses in one request\n\n{report(invitation_run)}\n")
    sys.stdout.write(f"\nResident memory (MB): { {k: round(v) for k, v in memory.items()} }\n")
