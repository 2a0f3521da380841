"""``make bench``: every benchmark, one report (also written to bench/results/)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from bench import event_pipeline, gateway_hop, packages_page, webhooks
from bench.common import table

RSS_GOAL_MB = 150


def main() -> int:
    sections = []
    hop_results, hop_memory = gateway_hop.measure()
    sections.append(
        f"Gateway hop ({gateway_hop.CONNECTIONS} connections, {gateway_hop.SECONDS} s, wrk)\n"
        + gateway_hop.report(hop_results)
    )
    page_rows, page_memory = packages_page.measure()
    sections.append(
        f"Packages page ({packages_page.CONNECTIONS} connections, {packages_page.SECONDS} s, "
        f"wrk; goal {packages_page.GOAL})\n" + packages_page.report(page_rows)
    )
    pipeline_rows, pipeline_memory = event_pipeline.measure()
    sections.append(
        f"Event pipeline ({event_pipeline.EVENTS:,} events)\n"
        + table(pipeline_rows, ["path", "events/s", "vs raw", "goal 1,500/s"])
    )
    sections.append(webhooks.report())
    memory = {
        **hop_memory,
        **{f"page-{k}": v for k, v in page_memory.items() if k != "hello-world"},
        **{f"pipeline-{k}": v for k, v in pipeline_memory.items()},
    }
    sections.append(
        f"Resident memory after the runs (goal <= {RSS_GOAL_MB} MB each)\n"
        + table(
            [
                [name, f"{mb:.0f}", "met" if mb <= RSS_GOAL_MB else "NOT met"]
                for name, mb in sorted(memory.items())
            ],
            ["process", "RSS MB", "result"],
        )
    )
    report = "\n\n".join(sections)
    sys.stdout.write(report + "\n")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}.txt").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
