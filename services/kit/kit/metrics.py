"""Prometheus metrics of every process (prometheus-client, one registry per process).

Apis serve them at ``/metrics`` (:func:`metrics_router`, added by
``kit.http.create_app``); workers on ``<SERVICE>_METRICS_PORT`` when set
(:func:`start_metrics_server`). No multiprocess mode: each process is a
scrape target of its own, and Prometheus adds ``job``/``instance``.

Labels are bounded: HTTP by route *template* (never the raw path), method
and status; events by their contract name. Service-specific metrics (emails,
Stripe webhooks) live next to the code that counts them.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

from kit.logging import get_logger

log = get_logger(__name__)

METRICS_PATH = "/metrics"
# The route label of a request no route matched (404s of scanners, typos...).
UNMATCHED_ROUTE = "<unmatched>"
# A bare ASGI app (the gateway's proxy) names its route here; routed apps need not.
ROUTE_LABEL_SCOPE_KEY = "kit.metrics_route"

# -- HTTP (kit.http.RequestContextMiddleware) ----------------------------------------

HTTP_REQUESTS = Counter(
    "clientele_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "clientele_http_request_duration_seconds",
    "Time to answer an HTTP request (until the app returned), by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# -- messaging (kit.messaging) ----------------------------------------------------------

EVENTS_PUBLISHED = Counter(
    "clientele_events_published",
    "Outbox events the broker confirmed (the relay marks them published).",
    ["event"],
)
EVENTS_PUBLISH_FAILED = Counter(
    "clientele_events_publish_failed",
    "Outbox publish attempts that failed (returned, unconfirmed, broker away); retried.",
    ["event"],
)
EVENTS_CONSUMED = Counter(
    "clientele_events_consumed",
    "Events handled and committed by this process's consumer.",
    ["event"],
)
EVENTS_FAILED = Counter(
    "clientele_events_failed",
    "Handler failures (the message is retried until the queue's delivery limit).",
    ["event"],
)
EVENTS_DEAD_LETTERED = Counter(
    "clientele_events_dead_lettered",
    "Messages sent to the dead-letter queue: invalid (at once) or retries_exhausted.",
    ["event", "reason"],
)
INBOX_DUPLICATES = Counter(
    "clientele_inbox_duplicates_skipped",
    "Deliveries of an event the inbox had already recorded (nothing done).",
    ["event"],
)
OUTBOX_BACKLOG = Gauge(
    "clientele_outbox_backlog",
    "Unpublished outbox rows, as of the relay's last check (every few seconds).",
)
OUTBOX_OLDEST_AGE = Gauge(
    "clientele_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when there is none).",
)
DLQ_MESSAGES = Gauge(
    "clientele_dlq_messages",
    "Messages waiting in the service's dead-letter queue, as of the worker's last check.",
    ["queue"],
)

# The event label of a message whose name this consumer does not know (bounded).
UNKNOWN_EVENT = "<unknown>"


def metric_names(registry: Any = REGISTRY) -> set[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``... included)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
    }
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def touch(metric: MetricWrapperBase, *label_sets: tuple[str, ...]) -> None:
    """Create the children of ``metric`` for these label values, so their series exist
    at 0 from the start (``rate()`` and alerts see the first increase)."""
    for labels in label_sets:
        metric.labels(*labels)


# -- exposition ---------------------------------------------------------------------


def metrics_response() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(METRICS_PATH, include_in_schema=False)
    def metrics() -> Response:  # sync: rendering runs in a thread, off the event loop
        return metrics_response()

    return router


class MetricsServer:
    """The worker's metrics endpoint: prometheus-client's threaded HTTP server."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> MetricsServer | None:  # noqa: S104
    """Serve ``/metrics`` (any path, in fact) on ``host:port`` in a thread; port 0 = off."""
    if port <= 0:
        return None
    server, thread = start_http_server(port, addr=host)
    log.info("metrics_server_started", host=host, port=port)
    return MetricsServer(server, thread)
