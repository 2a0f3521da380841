"""A quick, fixed slice of reliability scenario 8: schemathesis (``--checks all``) on each
service's OpenAPI, directly, with the coach token of a business of its own and the
ids of it and of business A.

The full scenario (three identities, through the gateway too, a larger example budget)
runs in ``make reliability``; this one keeps the criterion in ``make test``: no server
error, no response that breaks its schema, no ignored auth.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from kit.auth import CurrentAccount, OptionalViewer
from kit.errors import PROBLEM_JSON
from kit.http import create_app
from kit.openapi import BEARER_SCHEME
from reliability.scenario_fuzz import MUST_BE_ZERO, access_token, fuzz_config, run_schemathesis
from tests.security.world import Business, build_business
from tests.support.stack import MailSink, SystemStack

SERVICES = ("catalog", "clients", "payments", "notifications")
EXAMPLES = 3
SEED = 8


@pytest.fixture(scope="module")
def gamma(system: SystemStack, mail: MailSink) -> Business:
    """A business of the fuzzer's own: its coach's writes (deletes, archives, revokes)
    must not spoil the businesses the other security tests use."""
    return build_business(system, mail, "gamma")


@pytest.fixture(scope="module")
def fuzz_dir(
    gamma: Business, businesses: tuple[Business, Business], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    work = tmp_path_factory.mktemp("fuzz")
    # Gamma's ids and A's: every A id is one gamma's coach must not reach.
    (work / "schemathesis.toml").write_text(fuzz_config((gamma, businesses[0])))
    return work


@pytest.mark.parametrize("service", SERVICES)
def test_schema_holds_under_fuzzing(
    service: str, system: SystemStack, gamma: Business, fuzz_dir: Path
) -> None:
    token = access_token(system, gamma.coach.session_token)
    run = run_schemathesis(
        system,
        service,
        "direct",
        "G coach",
        token,
        fuzz_dir,
        seed=SEED,
        examples=EXAMPLES,
        # A fixed seed, no example database, no (slow, exhaustive) coverage phase.
        extra=("--phases", "examples,fuzzing,stateful"),
    )
    assert not run.errors, run.line()
    assert run.operations > 0, run.line()
    broken = {
        check: run.failed_operations.get(check) for check in MUST_BE_ZERO if run.failures[check]
    }
    assert not broken, f"{run.line()}\n{broken}\nsee {fuzz_dir}"


def _small_app() -> FastAPI:
    app = create_app(title="fuzzed")

    @app.get("/things")
    async def things(viewer: OptionalViewer) -> list[str]:
        return []

    @app.post("/things", status_code=201)
    async def add_thing(account: CurrentAccount, body: dict[str, str]) -> dict[str, str]:
        return body

    @app.get("/open")
    async def open_() -> dict[str, str]:
        return {}

    return app


def test_document_names_problems_and_the_bearer_token() -> None:
    document = _small_app().openapi()
    listed, added = document["paths"]["/things"]["get"], document["paths"]["/things"]["post"]
    assert listed["security"] == [{}, {"bearer": []}]  # optional: OptionalViewer
    assert added["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/open"]["get"]
    for status in ("400", "401", "403", "404", "409", "422", "429", "503"):
        content = added["responses"][status]["content"]
        assert content == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "201" in added["responses"] and "500" not in added["responses"]
    assert "HTTPValidationError" not in json.dumps(document)
    assert document["components"]["securitySchemes"] == {"bearer": BEARER_SCHEME}


async def test_405_allows_every_method_of_the_resource() -> None:
    transport = httpx.ASGITransport(app=_small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzzed") as http:
        answer = await http.put("/things")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["allow"] == "GET, POST"
