"""Scenario 8: schemathesis against every service's OpenAPI, directly and via the gateway.

Two businesses are built through the gateway as the security suite builds them
(``tests.security.world``). Then, for each service, for each way in (the service's own
port, the gateway) and for each identity (A's coach, B's coach, A's client), one
``schemathesis run --checks all`` with a fixed seed: the service's own document, the
identity's bearer token, and the real ids of *both* businesses offered for every path
parameter (so each token is tried against the other business's objects too). Each run's
JSON report gives the operations, test cases and failures per check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reliability.scenarios import Context, Result, env_int
from tests.security.world import Business, build_business
from tests.support.stack import MailSink, SystemStack

SERVICES = ("catalog", "clients", "payments", "notifications")
TARGETS = ("direct", "gateway")
# (label, business, role): the coach of each business and a client of the first.
IDENTITIES = (("A coach", 0, "coach"), ("B coach", 1, "coach"), ("A client", 0, "client"))
# Every check schemathesis has; each failure code of a report to the check that raised it.
CHECK_OF_CODE = {
    "ST101": "not_a_server_error",
    "ST102": "not_a_server_error",
    "ST103": "status_code_conformance",
    "ST104": "content_type_conformance",
    "ST105": "content_type_conformance",
    "ST106": "content_type_conformance",
    "ST107": "response_headers_conformance",
    "ST108": "response_schema_conformance",
    "ST109": "response_schema_conformance",
    "ST110": "response_schema_conformance",
    "ST111": "response_schema_conformance",
    "ST201": "negative_data_rejection",
    "ST202": "positive_data_acceptance",
    "ST203": "missing_required_header",
    "ST204": "unsupported_method",
    "ST205": "allow_header_conformance",
    "ST301": "use_after_free",
    "ST302": "ensure_resource_availability",
    "ST401": "ignored_auth",
    "ST402": "object_level_authorization",
}
# The criterion: none of these, ever.
MUST_BE_ZERO = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "ignored_auth",
)
# Limits high enough for the fuzzer (the limits themselves are tested in e2e).
RELAXED_LIMITS = {
    f"GATEWAY_RATE_LIMIT_{kind}": "100000/minute"
    for kind in ("SIGNUP", "LOGIN", "MAGIC_LINK", "PASSWORD_RESET", "CHECKOUT")
}
FUZZ_ENV = {"GATEWAY_TRUSTED_PROXY_COUNT": "1", **RELAXED_LIMITS}
# Path parameters the fuzzer takes from the businesses' real ids instead of inventing.
REAL_ID_PROBABILITY = 0.8


@dataclass
class FuzzRun:
    service: str
    target: str
    identity: str
    operations: int = 0
    cases: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # check -> unique failures
    failed_operations: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        found = ", ".join(f"{c} {n}" for c, n in sorted(self.failures.items())) or "none"
        errors = f"; ERRORS {self.errors}" if self.errors else ""
        return (
            f"{self.service:<13} {self.target:<7} {self.identity:<8} "
            f"{self.operations:>3} operations {self.cases:>5} cases; failures: {found}{errors}"
        )


def fuzz_config(businesses: tuple[Business, ...]) -> str:
    """schemathesis.toml: every path parameter the businesses have ids for draws them
    (from both businesses) most of the time, and invents values the rest."""
    names = sorted({name for b in businesses for name in b.ids})
    lines = []
    for name in names:
        values = sorted({b.ids[name] for b in businesses if name in b.ids})
        lines.append(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")
    lines.append("[parameters]")
    for name in names:
        lines.append(
            f'"path.{name}" = {{ dictionary = "{name}", probability = {REAL_ID_PROBABILITY} }}'
        )
    return "\n".join(lines) + "\n"


def access_token(system: SystemStack, session_token: str) -> str:
    """A fresh access token for a session (they live 15 minutes; a run may outlast one)."""
    answer = httpx.post(
        f"{system.url_of('clients')}/api/v1/clients/sessions/token",
        json={"session_token": session_token},
        timeout=30,
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def run_schemathesis(
    system: SystemStack,
    service: str,
    target: str,
    identity: str,
    token: str,
    work: Path,
    *,
    seed: int,
    examples: int,
    extra: tuple[str, ...] = (),
) -> FuzzRun:
    """One ``schemathesis run`` of a service's document; its counts from the JSON report."""
    name = f"{service}-{target}-{identity.replace(' ', '-')}"
    report = work / f"{name}.json"
    base = system.url_of(service) if target == "direct" else system.gateway_url
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(work / "schemathesis.toml"),
        "run",
        f"{system.url_of(service)}/openapi.json",
        "--url",
        base,
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        # The gateway trusts one proxy hop (FUZZ_ENV): every run is one client address.
        "--header",
        "X-Forwarded-For: 127.0.0.8",
        "--seed",
        str(seed),
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        # Only the seed decides: no examples replayed from earlier runs (nor stored).
        "--generation-database",
        "none",
        "--no-color",
        "--output-truncate",
        "true",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *extra,
    ]
    with (work / f"{name}.txt").open("wb") as output:
        # Our own interpreter and arguments: nothing from outside reaches the command.
        # In the work dir: schemathesis keeps its cache (.schemathesis/) where it runs.
        subprocess.run(  # noqa: S603
            argv, cwd=work, stdout=output, stderr=subprocess.STDOUT, check=False, timeout=1800
        )
    run = FuzzRun(service, target, identity)
    if not report.exists():
        run.errors.append(f"no report; see {work / f'{name}.txt'}")
        return run
    document: dict[str, Any] = json.loads(report.read_text())
    run.operations = int((document.get("operations") or {}).get("tested", 0))
    run.cases = int(document["test_cases"]["generated"])
    for group in document["failures"]:
        check = CHECK_OF_CODE.get(group["code"], group["code"])
        run.failures[check] += int(group["count"])
        run.failed_operations.setdefault(check, []).extend(group["operations"])
    run.errors = [f"{e['title']} x{e['count']}" for e in document["errors"]]
    return run


def unhandled_errors(system: SystemStack) -> dict[str, int]:
    """``unhandled_error`` lines in each api's log: 500s, whoever saw them."""
    return {
        name: system.log(name).count('"unhandled_error"')
        for name in system.specs
        if name.endswith("-api") or name == "gateway"
    }


async def fuzzing(ctx: Context, result: Result) -> None:
    examples = env_int("RELIABILITY_FUZZ_EXAMPLES", 20)
    services = [s for s in os.environ.get("RELIABILITY_FUZZ_SERVICES", "").split(",") if s]
    system = await ctx.start(8, FUZZ_ENV)
    result.work_dir = str(system.work_dir)
    work = system.work_dir / "fuzz"
    work.mkdir()
    try:
        mail = MailSink(system.mail_url)
        businesses = (
            await asyncio.to_thread(build_business, system, mail, "alpha"),
            await asyncio.to_thread(build_business, system, mail, "beta"),
        )
        (work / "schemathesis.toml").write_text(fuzz_config(businesses))
        result.say(
            f"schemathesis --checks all, seed {ctx.seed}, {examples} examples per operation; "
            f"ids of both businesses offered for every path parameter; reports in {work}"
        )
        runs = []
        for service in services or SERVICES:
            for target in TARGETS:
                for identity, which, role in IDENTITIES:
                    person = getattr(businesses[which], role)
                    token = await asyncio.to_thread(access_token, system, person.session_token)
                    run = await asyncio.to_thread(
                        run_schemathesis,
                        system,
                        service,
                        target,
                        identity,
                        token,
                        work,
                        seed=ctx.seed,
                        examples=examples,
                    )
                    result.say(run.line())
                    runs.append(run)
        totals: Counter[str] = Counter()
        for run in runs:
            totals.update(run.failures)
        crashes = unhandled_errors(system)
        result.say(
            f"{len(runs)} runs, {sum(r.cases for r in runs)} test cases; failures by check: "
            f"{dict(sorted(totals.items())) or 'none'}; unhandled errors logged: {crashes}"
        )
        for check in sorted(totals):
            operations = sorted({op for r in runs for op in r.failed_operations.get(check, [])})
            result.say(f"{check}: {operations}")
        result.passed = (
            all(totals[check] == 0 for check in MUST_BE_ZERO)
            and not any(r.errors for r in runs)
            and all(r.operations > 0 for r in runs)
            and sum(crashes.values()) == 0
        )
    finally:
        await asyncio.to_thread(system.stop)


SCENARIOS: dict[int, tuple[str, Callable[[Context, Result], Awaitable[None]]]] = {
    8: ("schemathesis on every service's OpenAPI, directly and via the gateway", fuzzing),
}
