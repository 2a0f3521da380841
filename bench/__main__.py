"""``make bench``: every benchmark, one report (also written to bench/results/).

The report opens with one summary table, each figure beside its baseline
measured in the same run, the ratio, the goal and whether it is met; then each
benchmark's own table, and the resident memory of every process. It is saved as
``bench/results/<stamp>.txt`` and, for comparing runs, ``<stamp>.json``.
``BENCH_ONLY=webhooks,replicas`` runs some of them (names: BENCHMARKS); sizes
come from the BENCH_* variables in bench/README.md.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import event_pipeline, gateway_hop, invitations, packages_page, webhooks
from bench.common import SUMMARY_HEADER, Figure, table

RSS_GOAL_MB = 150
BENCHMARKS = (
    "gateway_hop",
    "packages_page",
    "event_pipeline",
    "webhooks",
    "invitations",
    "replicas",
)
# The sizes a run was made with (written beside its figures).
SIZE_VARIABLES = (
    "BENCH_WRK_SECONDS",
    "BENCH_EVENTS",
    "BENCH_WEBHOOK_RATE",
    "BENCH_WEBHOOK_SECONDS",
    "BENCH_PURCHASES",
    "BENCH_PIPELINE_RATE",
    "BENCH_INVITATIONS",
    "BENCH_REPLICA_WORKERS",
)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (title, table)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # run -> process -> MB
    seconds: dict[str, float] = field(default_factory=dict)  # how long each benchmark took

    def section(self, title: str, body: str) -> None:
        self.sections.append((title, body))


def _gateway_hop(report: Report) -> None:
    results, memory = gateway_hop.measure()
    report.figures += gateway_hop.figures(results)
    report.section(
        f"Gateway hop ({gateway_hop.CONNECTIONS} connections, {gateway_hop.SECONDS} s, wrk)",
        gateway_hop.report(results),
    )
    report.memory["gateway hop"] = memory


def _packages_page(report: Report) -> None:
    rows, memory = packages_page.measure()
    report.figures += packages_page.figures(rows)
    report.section(
        f"Packages page ({packages_page.CONNECTIONS} connections, {packages_page.SECONDS} s, "
        f"wrk; goal {packages_page.GOAL})",
        packages_page.report(rows),
    )
    report.memory["packages page"] = memory


def _event_pipeline(report: Report) -> None:
    run = event_pipeline.measure_run()
    report.figures.append(run.figure())
    report.section(
        f"Event pipeline ({run.events:,} events)",
        table(run.rows(), ["path", "events/s", "vs raw", "goal 1,500/s"]),
    )
    # Its own two processes, not the system's: the relay and the consumer of the benchmark.
    report.memory["event pipeline"] = {f"bench-{role}": mb for role, mb in run.memory.items()}


# The one-replica purchase pipeline, the baseline of the replicated one.
_single_pipeline: list[webhooks.PipelineResult] = []


def _webhooks(report: Report) -> None:
    run = webhooks.measure()
    _single_pipeline.append(run.pipeline)
    report.figures += run.figures()
    report.section("Webhooks", run.report())
    report.memory["webhooks"] = run.memory


def _invitations(report: Report) -> None:
    run, memory = invitations.measure()
    report.figures.append(invitations.figure(run))
    report.section(f"Inviting {run.addresses:,} addresses in one request", invitations.report(run))
    report.memory["invitations"] = memory


def _replicas(report: Report) -> None:
    run = webhooks.measure_replicas()
    single = _single_pipeline[0] if _single_pipeline else None
    report.figures.append(run.figure(single))
    report.section("Replicas", run.report(single))
    report.memory[f"{run.workers} worker replicas"] = run.memory


RUNNERS: dict[str, Callable[[Report], None]] = {
    "gateway_hop": _gateway_hop,
    "packages_page": _packages_page,
    "event_pipeline": _event_pipeline,
    "webhooks": _webhooks,
    "invitations": _invitations,
    "replicas": _replicas,
}


def memory_table(memory: dict[str, dict[str, float]]) -> str:
    """One row per process kind, one column per run (the largest replica of a kind)."""
    runs = list(memory)
    kinds: dict[str, dict[str, float]] = {}
    for run, processes in memory.items():
        for name, mb in processes.items():
            kind = re.sub(r"\.\d+$", "", name)  # clients-worker.2 -> clients-worker
            kinds.setdefault(kind, {})
            kinds[kind][run] = max(mb, kinds[kind].get(run, 0.0))
    rows = []
    for kind, by_run in sorted(kinds.items()):
        largest = max(by_run.values())
        rows.append(
            [
                kind,
                *(f"{by_run[run]:.0f}" if run in by_run else "" for run in runs),
                "met" if largest <= RSS_GOAL_MB else "NOT met",
            ]
        )
    return table(rows, ["process", *runs, f"<= {RSS_GOAL_MB} MB"])


def _revision() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' (uncommitted changes)' if dirty else ''}"


def main() -> int:
    only = [name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        sys.stderr.write(f"BENCH_ONLY: no benchmark {sorted(unknown)}; there are {BENCHMARKS}\n")
        return 2
    chosen = [name for name in BENCHMARKS if not only or name in only]
    report = Report()
    for name in chosen:
        started = time.monotonic()
        sys.stderr.write(f"bench: {name}...\n")
        RUNNERS[name](report)
        report.seconds[name] = time.monotonic() - started

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    revision = _revision()
    sizes = {name: os.environ[name] for name in SIZE_VARIABLES if name in os.environ}
    met = [f for f in report.figures if f.met is not None]
    summary = table([f.row() for f in report.figures], SUMMARY_HEADER)
    heading = (
        f"Clientele benchmarks, {stamp}, {revision}, {platform.node()} "
        f"({os.cpu_count()} cores); {sum(bool(f.met) for f in met)} of {len(met)} goals met"
        + (f"\nsizes: {' '.join(f'{k}={v}' for k, v in sizes.items())}" if sizes else "")
    )
    parts = [f"{heading}\n\n{summary}"]
    parts += [f"{title}\n{body}" for title, body in report.sections]
    parts.append(
        f"Resident memory after each run, MB (goal <= {RSS_GOAL_MB} MB each)\n"
        + memory_table(report.memory)
    )
    parts.append(f"Summary\n{summary}")
    text = "\n\n".join(parts) + "\n"
    sys.stdout.write(text)

    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stamp}.txt").write_text(text)
    (results / f"{stamp}.json").write_text(
        json.dumps(
            {
                "stamp": stamp,
                "revision": revision,
                "host": platform.node(),
                "cores": os.cpu_count(),
                "sizes": sizes,
                "benchmarks": chosen,
                "seconds": report.seconds,
                "figures": [asdict(f) for f in report.figures],
                "memory_mb": report.memory,
            },
            indent=2,
        )
        + "\n"
    )
    sys.stderr.write(f"bench: written to {results / stamp}.txt and .json\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
