"""Packages page: a business's public offerings through the gateway, against a hello-world.

Starts every process of the system on PostgreSQL and RabbitMQ, signs a coach
up, creates and publishes 12 public offerings through the catalog's coach
API, starts a bare FastAPI JSON hello-world (one uvicorn process, uvloop, no
access log, as our apis run) and drives 50 connections with wrk at
- the hello-world (the baseline),
- ``GET /api/v1/catalog/public/businesses/{slug}/packages`` straight at the catalog api,
- the same JSON through the gateway (anonymous: answered by its public cache),
- the HTML page ``GET /b/{slug}`` through the gateway.
Goal: through the gateway >= 50% of the hello-world's requests/s, p99 < 50 ms.
Every run uses the same wrk script (bench/xcache.lua), which counts the
``X-Cache`` header of each answer.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    LoadResult,
    RunningSystem,
    _free_port,
    env_int,
    signup,
    start_system,
    table,
    wrk,
)
from devtools.processes import ProcessSpec

CONNECTIONS = 50
SECONDS = env_int("BENCH_WRK_SECONDS", 10)
WARMUP_SECONDS = 3
OFFERINGS = 12
GOAL_RATIO = 0.50
GOAL_P99_MS = 50.0
XCACHE_SCRIPT = Path(__file__).with_name("xcache.lua")


@dataclass
class Row:
    target: str
    load: LoadResult | None  # None: not measured (see note)
    note: str = ""
    gated: bool = False  # the goal applies to this row

    @property
    def cache_counts(self) -> dict[str, int]:
        if self.load is None:
            return {}
        match = re.search(r"X-Cache hit=(\d+) miss=(\d+) bypass=(\d+) none=(\d+)", self.load.output)
        if not match:
            return {}
        return dict(zip(("hit", "miss", "bypass", "none"), map(int, match.groups()), strict=True))


def _call(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _parsed(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, _parsed(exc.read()), dict(exc.headers)


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw[:200]  # an HTML page


def _offering(n: int) -> dict[str, Any]:
    """A mix of kinds and billing, like a real price list."""
    variants: list[dict[str, Any]] = [
        {
            "kind": "appointment",
            "details": {"duration_minutes": 60},
            "billing": {"type": "one_time"},
            "price_minor": 12000,
        },
        {
            "kind": "engagement",
            "details": {"credits": 5, "credit_expiry_days": 180},
            "billing": {"type": "one_time"},
            "price_minor": 50000,
        },
        {
            "kind": "course",
            "details": {},
            "billing": {"type": "recurring", "interval": "month", "interval_count": 1},
            "price_minor": 3000,
        },
        {
            "kind": "package",
            "details": {"includes": ["Intake call", "Four sessions", "Email support"]},
            "billing": {
                "type": "payment_plan",
                "installments": 4,
                "interval": "month",
                "interval_count": 1,
            },
            "price_minor": 5000,
        },
        {
            "kind": "worksheet",
            "details": {},
            "billing": {"type": "free"},
            "price_minor": 0,
        },
        {
            "kind": "agreement",
            "details": {"agreement_text": "Sessions can be moved up to 24 hours ahead."},
            "billing": {"type": "free"},
            "price_minor": 0,
        },
    ]
    return {
        "name": f"Offering {n + 1}",
        "description": "A description long enough to look like a real one. " * 4,
        "currency": "USD",
        "visibility": "public",
        **variants[n % len(variants)],
    }


def _wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what} (last: {last!r})")


def publish_offerings(system: RunningSystem) -> str:
    """A business with OFFERINGS published public offerings; returns its slug."""
    auth = signup(system.gateway, business="Harbour Coaching")
    token = str(auth["access_token"])
    business = auth["business"]
    assert isinstance(business, dict)
    business_id, slug = business["id"], business["slug"]
    api = f"{system.gateway}/api/v1/catalog/businesses/{business_id}"

    def create(n: int) -> dict[str, Any] | None:
        status, body, _ = _call("POST", f"{api}/offerings", _offering(n), token)
        return body if status == 201 else None

    for n in range(OFFERINGS):
        # The catalog learns about the business from an event: retry until it has.
        created = _wait_for("the catalog to accept an offering", functools.partial(create, n))
        status, published, _ = _call("POST", f"{api}/offerings/{created['id']}/publish", {}, token)
        if status != 200:
            raise RuntimeError(f"publishing failed: {status} {published}")
    public = f"{system.url_of('catalog')}/api/v1/catalog/public/businesses/{slug}/packages"

    def listed() -> bool:
        status, body, _ = _call("GET", public)
        return status == 200 and len(body["offerings"]) == OFFERINGS

    _wait_for("the packages to be listed", listed)
    return str(slug)


def start_hello_world(system: RunningSystem) -> str:
    port = _free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "bench.hello_app:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--no-access-log", "--no-proxy-headers",
    ]  # fmt: skip
    system.processes.start(ProcessSpec("hello-world", argv, "/", port))
    system.processes.wait_http("hello-world", f"http://127.0.0.1:{port}/")
    return f"http://127.0.0.1:{port}/"


def _load(url: str) -> LoadResult:
    wrk(url, connections=CONNECTIONS, seconds=WARMUP_SECONDS, script=XCACHE_SCRIPT)
    return wrk(url, connections=CONNECTIONS, seconds=SECONDS, script=XCACHE_SCRIPT)


def measure() -> tuple[list[Row], dict[str, float]]:
    system = start_system()
    try:
        slug = publish_offerings(system)
        hello = start_hello_world(system)
        packages = f"/api/v1/catalog/public/businesses/{slug}/packages"
        rows = [
            Row("hello-world (FastAPI, baseline)", _load(hello)),
            Row("catalog JSON, direct", _load(f"{system.url_of('catalog')}{packages}")),
            Row("packages JSON via gateway", _load(f"{system.gateway}{packages}"), gated=True),
        ]
        page = f"{system.gateway}/b/{slug}"
        status, _, _ = _call("GET", page)
        if status == 200:
            rows.append(Row("packages page HTML via gateway", _load(page), gated=True))
        else:
            rows.append(Row("packages page HTML via gateway", None, f"not measured: {status}"))
        return rows, system.processes.rss_mb()
    finally:
        system.stop()


def report(rows: list[Row]) -> str:
    baseline = rows[0].load
    assert baseline is not None
    lines = []
    for row in rows:
        if row.load is None:
            lines.append([row.target, "–", "–", "–", "–", "–", "–", row.note])
            continue
        load = row.load
        ratio = load.requests_per_second / baseline.requests_per_second
        counts = row.cache_counts
        answered = sum(counts.values())
        hits = f"{counts['hit'] / answered:.0%}" if answered and counts["none"] < answered else "–"
        result = ""
        if row.gated:
            met = ratio >= GOAL_RATIO and load.p99_ms < GOAL_P99_MS
            result = "met" if met else "NOT met"
        lines.append(
            [
                row.target,
                f"{load.requests_per_second:,.0f}",
                f"{load.p50_ms:.1f}",
                f"{load.p99_ms:.1f}",
                f"{ratio:.0%}",
                hits,
                str(load.errors),
                result,
            ]
        )
    return table(
        lines,
        ["target", "req/s", "p50 ms", "p99 ms", "vs hello", "X-Cache hit", "errors", "goal"],
    )


GOAL = f">= {GOAL_RATIO:.0%} of hello-world req/s, p99 < {GOAL_P99_MS:.0f} ms"


def figures(rows: list[Row]) -> list[Figure]:
    baseline = rows[0].load
    assert baseline is not None
    hello = f"hello-world {baseline.requests_per_second:,.0f} req/s"
    result = []
    for row in rows:
        if not row.gated:
            continue
        name = "packages page " + ("HTML" if "HTML" in row.target else "JSON")
        if row.load is None:
            result.append(Figure(name, row.note, hello, "–", GOAL, False))
            continue
        load = row.load
        ratio = load.requests_per_second / baseline.requests_per_second
        result.append(
            Figure(
                name,
                f"via gateway {load.requests_per_second:,.0f} req/s, p99 {load.p99_ms:.1f} ms",
                hello,
                f"{ratio:.0%}",
                GOAL,
                ratio >= GOAL_RATIO and load.p99_ms < GOAL_P99_MS,
                {
                    "rps": load.requests_per_second,
                    "p99_ms": load.p99_ms,
                    "hello_rps": baseline.requests_per_second,
                    "errors": load.errors,
                },
            )
        )
    return result


if __name__ == "__main__":
    page_rows, memory = measure()
    print(f"Packages page, {CONNECTIONS} connections, {SECONDS} s each (wrk); goal: {GOAL}\n")
    print(report(page_rows))
    print("\nResident memory (MB):", {k: round(v) for k, v in memory.items()})
