"""Prometheus metrics (kit.metrics) and request/correlation ids across processes,
against real PostgreSQL and RabbitMQ; and the Grafana/Prometheus files in deploy/."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

import notifications.emails.sender  # noqa: F401  (registers the email metrics)
import payments.webhooks.endpoints  # noqa: F401  (registers the webhook metrics)
from kit.db import utcnow
from kit.http import create_app
from kit.logging import bound_ids, current_ids
from kit.metrics import UNMATCHED_ROUTE, metric_names, start_metrics_server
from kit.runtime import ServiceContext, Worker
from kit.settings import ServiceSettings
from tests.kit import messaging_app as app
from tests.kit import test_messaging
from tests.kit.test_messaging import Harness, Tap, dead_letters, publish_raw, wait_until

harness = test_messaging.harness  # the fixture, for these tests too

ROOT = Path(__file__).resolve().parents[2]
EVENT = app.ThingHappenedV1.name
REQUESTS = "clientele_http_requests_total"
DEAD_LETTERED = "clientele_events_dead_lettered_total"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- HTTP ------------------------------------------------------------------------------


def things_app() -> FastAPI:
    api = create_app(title="things")
    router = APIRouter()

    @router.get("/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    api.include_router(router, prefix="/things")  # as services include theirs
    return api


async def test_api_counts_requests_by_route_template_method_and_status() -> None:
    api = things_app()
    route = "/things/{thing_id}"
    ok = {"route": route, "method": "GET", "status": "200"}
    invalid = {**ok, "status": "422"}
    unmatched = {"route": UNMATCHED_ROUTE, "method": "GET", "status": "404"}
    odd_method = {"route": route, "method": "OTHER", "status": "405"}
    before = {
        "ok": value(REQUESTS, **ok),
        "invalid": value(REQUESTS, **invalid),
        "unmatched": value(REQUESTS, **unmatched),
        "odd": value(REQUESTS, **odd_method),
        "latency": value(
            "clientele_http_request_duration_seconds_count", route=route, method="GET"
        ),
    }
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://things") as http:
        for n in range(3):
            assert (await http.get(f"/things/{n}")).status_code == 200
        assert (await http.get("/things/not-a-number")).status_code == 422
        for n in range(2):
            assert (await http.get(f"/no/such/path/{n}")).status_code == 404
        assert (await http.request("BREW", "/things/1")).status_code == 405
        scraped = await http.get("/metrics")

    assert value(REQUESTS, **ok) - before["ok"] == 3
    assert value(REQUESTS, **invalid) - before["invalid"] == 1
    assert value(REQUESTS, **unmatched) - before["unmatched"] == 2
    assert value(REQUESTS, **odd_method) - before["odd"] == 1
    latency = value("clientele_http_request_duration_seconds_count", route=route, method="GET")
    assert latency - before["latency"] == 4
    # No raw path ever becomes a label.
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    series = 'clientele_http_requests_total{method="GET",route="/things/{thing_id}",status="200"}'
    assert series in text
    assert "/things/1" not in text and "/no/such/path" not in text
    assert "clientele_http_request_duration_seconds_bucket" in text


# -- messaging -------------------------------------------------------------------------


async def test_relay_counts_published_events_and_consumer_counts_handled_ones(
    harness: Harness,
) -> None:
    published = value("clientele_events_published_total", event=EVENT)
    consumed = value("clientele_events_consumed_total", event=EVENT)
    duplicates = value("clientele_inbox_duplicates_skipped_total", event=EVENT)
    consumer = harness.consumer()
    await consumer.start()
    events = [app.new_event(i) for i in range(5)]
    await harness.write_events(events)
    relay = harness.relay()
    assert await relay.relay_once() == 5
    assert value("clientele_events_published_total", event=EVENT) - published == 5

    async def all_consumed() -> bool:
        return value("clientele_events_consumed_total", event=EVENT) - consumed >= 5

    await wait_until(all_consumed, timeout=20)
    # Published again (a relay that died before marking): skipped by the inbox, counted.
    await publish_raw(harness, events[0].model_dump_json().encode())

    async def duplicate_seen() -> bool:
        return value("clientele_inbox_duplicates_skipped_total", event=EVENT) - duplicates >= 1

    await wait_until(duplicate_seen, timeout=20)
    assert value("clientele_events_consumed_total", event=EVENT) - consumed == 5


async def test_unroutable_publish_is_counted_as_failed(harness: Harness) -> None:
    name = app.NobodyListensV1.name
    before = value("clientele_events_publish_failed_total", event=name)
    async with harness.sessionmaker() as session, session.begin():
        await harness.outbox.enqueue(session, app.NobodyListensV1())
    assert await harness.relay().relay_once() == 0
    assert value("clientele_events_publish_failed_total", event=name) - before == 1


async def test_handler_failures_and_dead_letters_are_counted(harness: Harness) -> None:
    failed = value("clientele_events_failed_total", event=EVENT)
    exhausted = value(
        "clientele_events_dead_lettered_total", event=EVENT, reason="retries_exhausted"
    )
    invalid = value(DEAD_LETTERED, event=EVENT, reason="invalid")

    async def broken(event: app.ThingHappenedV1, session: AsyncSession) -> None:
        raise RuntimeError("bug")

    consumer = harness.consumer(broken, delivery_limit=1)
    await consumer.start()
    await publish_raw(harness, app.new_event(1).model_dump_json().encode())
    await publish_raw(harness, b"{not json")

    async def both_dead_lettered() -> bool:
        return await consumer.measure_dead_letters() >= 2

    await wait_until(both_dead_lettered, timeout=20)
    dlq = harness.topology.dead_letter_queue(app.SERVICE)
    assert value("clientele_dlq_messages", queue=dlq) >= 2
    assert value("clientele_events_failed_total", event=EVENT) - failed == 2  # 1 + the limit
    assert value(DEAD_LETTERED, event=EVENT, reason="retries_exhausted") - exhausted == 1
    assert value(DEAD_LETTERED, event=EVENT, reason="invalid") - invalid == 1
    await dead_letters(harness)  # emptied: the gauge follows
    assert await consumer.measure_dead_letters() == 0
    assert value("clientele_dlq_messages", queue=dlq) == 0


async def test_outbox_gauges_reflect_the_backlog_and_its_oldest_row(harness: Harness) -> None:
    relay = harness.relay(gauge_interval=0)
    assert await relay.measure_backlog() == (0, 0.0)
    assert value("clientele_outbox_backlog") == 0
    events = [app.new_event(i) for i in range(3)]
    await harness.write_events(events)
    async with harness.sessionmaker() as session, session.begin():
        await session.execute(
            update(app.outbox)
            .where(app.outbox.c.id == events[0].id)
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
    count, age = await relay.measure_backlog()
    assert count == 3 and 120 <= age < 180
    assert value("clientele_outbox_backlog") == 3
    assert 120 <= value("clientele_outbox_oldest_age_seconds") < 180

    # The running relay keeps them current: published, the backlog is gone.
    async with Tap(harness) as tap:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))

        async def drained() -> bool:
            return value("clientele_outbox_backlog") == 0

        try:
            await wait_until(drained, timeout=20)
        finally:
            stop.set()
            await task
        assert len(await tap.drain(3)) == 3
    assert value("clientele_outbox_oldest_age_seconds") == 0


# -- request and correlation ids -------------------------------------------------------


async def test_events_carry_the_requests_correlation_id_and_the_consumer_binds_it(
    harness: Harness,
) -> None:
    """One request (an api with the kit's middleware) enqueues an event; the relay
    publishes it; the consumer's handler runs with the request's ids bound, and the
    events it enqueues in turn carry the same correlation id."""
    api = create_app(title="orders")
    router = APIRouter()

    @router.post("/orders")
    async def order() -> dict[str, str]:
        async with harness.sessionmaker() as session, session.begin():
            await harness.outbox.enqueue(session, app.new_event(1))
        return {"ok": "yes"}

    api.include_router(router)
    seen: list[dict[str, Any]] = []

    async def handler(event: app.ThingHappenedV1, session: AsyncSession) -> None:
        seen.append(current_ids())
        await harness.outbox.enqueue(session, app.NobodyListensV1())  # the next hop

    await harness.consumer(handler).start()
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
        response = await http.post(
            "/orders", headers={"X-Request-ID": "req-42", "X-Correlation-ID": "purchase-42"}
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"

    async with harness.sessionmaker() as session:
        [row] = (await session.execute(select(app.outbox))).all()
    assert json.loads(row.payload)["correlation_id"] == "purchase-42"
    assert json.loads(row.headers) == {"correlation_id": "purchase-42", "request_id": "req-42"}

    assert await harness.relay().relay_once() == 1

    async def handled() -> bool:
        return bool(seen)

    await wait_until(handled, timeout=20)
    ids = seen[0]
    assert ids["correlation_id"] == "purchase-42"
    assert ids["request_id"] == "req-42"
    assert ids["event_name"] == EVENT
    async with harness.sessionmaker() as session:
        rows = (
            await session.execute(
                select(app.outbox).where(app.outbox.c.name == app.NobodyListensV1.name)
            )
        ).all()
    [next_hop] = rows
    assert json.loads(next_hop.payload)["correlation_id"] == "purchase-42"
    assert json.loads(next_hop.headers)["request_id"] == "req-42"


async def test_an_event_caused_by_no_request_starts_its_own_correlation(
    harness: Harness,
) -> None:
    event = app.new_event(1)
    with bound_ids(service="kit-test"):
        await harness.write_events([event])
    async with harness.sessionmaker() as session:
        [row] = (await session.execute(select(app.outbox))).all()
    assert json.loads(row.payload)["correlation_id"] == str(event.id)


# -- workers ---------------------------------------------------------------------------


async def test_a_worker_serves_its_metrics_on_its_port(fresh_database: str, amqp_url: str) -> None:
    assert start_metrics_server(0) is None, "0 = off"
    port = free_port()
    settings = ServiceSettings(
        dev_mode=True,
        database_url=fresh_database,
        amqp_url=amqp_url,
        metrics_port=port,
        metrics_host="127.0.0.1",
    )
    worker = Worker(ServiceContext.create(settings, "metrics-test-worker"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    response = await http.get(url)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the worker's metrics endpoint never answered")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "clientele_outbox_backlog" in response.text
        assert "process_resident_memory_bytes" in response.text
    finally:
        stop.set()
        await task
    async with httpx.AsyncClient() as http:
        try:
            await http.get(url)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the metrics endpoint outlived its worker")


# -- deploy/grafana and deploy/prometheus ----------------------------------------------

_METRIC = re.compile(r"\bclientele_[a-z_]+\b")


def _referenced(text: str) -> set[str]:
    return set(_METRIC.findall(text))


def test_alert_rules_parse_and_use_metrics_that_exist() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"DeadLetterQueueNotEmpty", "OutboxStuck", "StripeWebhookRejectionsRising"} <= set(
        alerts
    )
    known = metric_names()
    for name, rule in alerts.items():
        used = _referenced(rule["expr"])
        assert used <= known, (name, used - known)
        assert rule["annotations"]["summary"], name
    assert "clientele_dlq_messages" in alerts["DeadLetterQueueNotEmpty"]["expr"]
    assert "clientele_outbox_oldest_age_seconds" in alerts["OutboxStuck"]["expr"]
    assert "clientele_stripe_webhooks_total" in alerts["StripeWebhookRejectionsRising"]["expr"]
    assert "60" in alerts["OutboxStuck"]["expr"]


def test_scrape_config_parses_and_loads_the_alert_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yaml").read_text())
    assert "alerts.yaml" in " ".join(config["rule_files"])
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"gateway", "clients-api", "clients-worker", "payments-worker"} <= jobs


def test_dashboard_parses_and_every_query_uses_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/clientele-dashboard.json").read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    used = set().union(*(_referenced(expr) for expr in expressions))
    known = metric_names()
    assert used <= known, used - known
    # Every family of the brief has a panel.
    for needed in (
        "clientele_http_requests_total",
        "clientele_http_request_duration_seconds_bucket",
        "clientele_events_published_total",
        "clientele_events_consumed_total",
        "clientele_outbox_backlog",
        "clientele_outbox_oldest_age_seconds",
        "clientele_dlq_messages",
        "clientele_emails_total",
        "clientele_stripe_webhooks_total",
    ):
        assert needed in used, needed
