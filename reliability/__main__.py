"""``python -m reliability``: run the scenarios, print their counts, exit 1 if any fails.

``RELIABILITY_ONLY=3,7`` runs some of them; ``RELIABILITY_SEED`` (default 8) fixes
every random choice; sizes come from the RELIABILITY_* variables in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback

from reliability import scenario_broker, scenario_database, scenario_fuzz, scenario_load, scenarios
from reliability.scenarios import Context, Result
from tests.support import infra
from tests.support.stack import ROOT

# Each module holds some of issue 8's scenarios, keyed by their number there.
SCENARIOS = {
    **scenarios.SCENARIOS,
    **scenario_broker.SCENARIOS,
    **scenario_database.SCENARIOS,
    **scenario_fuzz.SCENARIOS,
    **scenario_load.SCENARIOS,
}


def main() -> int:
    only = os.environ.get("RELIABILITY_ONLY", "")
    chosen = [int(n) for n in only.split(",") if n.strip()] or sorted(SCENARIOS)
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        print(f"no such scenario: {unknown}; there are {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    seed = int(os.environ.get("RELIABILITY_SEED", 8))
    admin_url = infra.postgres_admin_url()
    amqp_url = infra.amqp_url()
    templates = infra.MigratedTemplates(admin_url, ROOT)
    context = Context(admin_url, amqp_url, templates, seed)
    results: list[Result] = []
    started = time.monotonic()
    print(f"reliability suite: scenarios {chosen}, seed {seed}", flush=True)
    try:
        for number in chosen:
            title, scenario = SCENARIOS[number]
            result = Result(number, title)
            print(f"\n== scenario {number}: {title}", flush=True)
            begun = time.monotonic()
            try:
                asyncio.run(scenario(context, result))
            except Exception:
                result.passed = False
                result.say("ERROR\n" + traceback.format_exc())
            result.seconds = time.monotonic() - begun
            print(
                f"== scenario {number}: {'PASS' if result.passed else 'FAIL'} in "
                f"{result.seconds:.0f} s (logs: {result.work_dir})",
                flush=True,
            )
            results.append(result)
    finally:
        templates.drop_all()
        infra.stop_containers()
    print(f"\nreliability suite, {time.monotonic() - started:.0f} s, seed {seed}")
    for result in results:
        verdict = "PASS" if result.passed else "FAIL"
        print(f"  {result.number}. {result.title:<60} {verdict}  ({result.seconds:.0f} s)")
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
