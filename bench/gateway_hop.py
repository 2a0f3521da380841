"""Gateway hop: the same JSON endpoints directly and through the gateway, in one run.

Starts every process of the system on PostgreSQL and RabbitMQ, signs a coach
up, then drives 50 connections with wrk at
- ``GET /api/v1/clients/.well-known/jwks.json`` (public, no database), and
- ``GET /api/v1/clients/me`` (token checked by the gateway and the service,
  one database read),
first straight at the clients api, then through the gateway.
Goal: through the gateway >= 40% of direct requests/s, p99 < 50 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Figure, LoadResult, env_int, signup, start_system, table, wrk

CONNECTIONS = 50
SECONDS = env_int("BENCH_WRK_SECONDS", 10)
GOAL = ">= 40% of direct req/s, p99 < 50 ms"


@dataclass
class HopResult:
    endpoint: str
    direct: LoadResult
    gateway: LoadResult

    @property
    def ratio(self) -> float:
        return self.gateway.requests_per_second / self.direct.requests_per_second

    @property
    def met(self) -> bool:
        return self.ratio >= 0.40 and self.gateway.p99_ms < 50


def measure() -> tuple[list[HopResult], dict[str, float]]:
    system = start_system()
    try:
        gateway, direct = system.gateway, system.url_of("clients")
        token = {"Authorization": f"Bearer {signup(gateway)['access_token']}"}
        results = []
        for endpoint, headers in (
            ("/api/v1/clients/.well-known/jwks.json", {}),
            ("/api/v1/clients/me", token),
        ):
            for base in (direct, gateway):  # warm both paths: pools, caches, lazy imports
                wrk(f"{base}{endpoint}", connections=CONNECTIONS, seconds=3, headers=headers)
            direct_load = wrk(
                f"{direct}{endpoint}", connections=CONNECTIONS, seconds=SECONDS, headers=headers
            )
            gateway_load = wrk(
                f"{gateway}{endpoint}", connections=CONNECTIONS, seconds=SECONDS, headers=headers
            )
            results.append(HopResult(endpoint, direct_load, gateway_load))
        return results, system.processes.rss_mb()
    finally:
        system.stop()


def report(results: list[HopResult]) -> str:
    rows = [
        [
            r.endpoint,
            f"{r.direct.requests_per_second:,.0f}",
            f"{r.gateway.requests_per_second:,.0f}",
            f"{r.ratio:.0%}",
            f"{r.direct.p99_ms:.1f}",
            f"{r.gateway.p99_ms:.1f}",
            str(r.direct.errors + r.gateway.errors),
            ">=40%, p99<50ms",
            "met" if r.met else "NOT met",
        ]
        for r in results
    ]
    return table(
        rows,
        [
            "endpoint",
            "direct req/s",
            "gateway req/s",
            "ratio",
            "direct p99 ms",
            "gateway p99 ms",
            "errors",
            "goal",
            "result",
        ],
    )


def figures(results: list[HopResult]) -> list[Figure]:
    return [
        Figure(
            f"gateway hop {r.endpoint.removeprefix('/api/v1/clients')}",
            f"via gateway {r.gateway.requests_per_second:,.0f} req/s, "
            f"p99 {r.gateway.p99_ms:.1f} ms",
            f"direct {r.direct.requests_per_second:,.0f} req/s, p99 {r.direct.p99_ms:.1f} ms",
            f"{r.ratio:.0%}",
            GOAL,
            r.met,
            {
                "gateway_rps": r.gateway.requests_per_second,
                "gateway_p99_ms": r.gateway.p99_ms,
                "direct_rps": r.direct.requests_per_second,
                "direct_p99_ms": r.direct.p99_ms,
                "errors": r.direct.errors + r.gateway.errors,
            },
        )
        for r in results
    ]


if __name__ == "__main__":
    hop_results, memory = measure()
    print(f"Gateway hop, {CONNECTIONS} connections, {SECONDS} s each (wrk)\n")
    print(report(hop_results))
    print("\nResident memory (MB):", {k: round(v) for k, v in memory.items()})
