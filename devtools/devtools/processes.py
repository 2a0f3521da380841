"""Every process of the system and the environment that wires them together.

One definition used by ``make run``, the end-to-end tests and the benchmarks,
so what is tested is what runs.
"""

from __future__ import annotations

import socket
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("clients", "notifications", "catalog", "payments")
# Offline Stripe (localstripe, a process of its own, never imported): any sk_test_ key works.
LOCAL_STRIPE_API_KEY = "sk_test_local"
LOCAL_STRIPE_PUBLISHABLE_KEY = "pk_test_local"
LOCAL_STRIPE_WEBHOOK_SECRET = "whsec_clientele_local"
STRIPE_WEBHOOK_NAME = "clientele"
# Without ports of their own, replica k (k >= 2) of an api or of a worker's metrics
# endpoint listens on the first one's port + (k - 1) * 100: 8101, 8201, 8301, ...
REPLICA_PORT_STEP = 100


@dataclass(frozen=True)
class Replicas:
    """How many copies of each api and of each worker run (the gateway runs once)."""

    apis: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        if self.apis < 1 or self.workers < 1:
            raise ValueError("every api and worker runs at least once")

    @classmethod
    def of(cls, n: int) -> Replicas:
        return cls(apis=n, workers=n)

    @property
    def single(self) -> bool:
        return self.apis == self.workers == 1


@dataclass(frozen=True)
class Ports:
    gateway: int = 8000
    clients: int = 8101
    notifications: int = 8102
    catalog: int = 8103
    smtp: int = 1025
    mail_http: int = 8025
    payments: int = 8104
    localstripe: int = 8420
    # Each worker's Prometheus endpoint (<SERVICE>_METRICS_PORT); apis serve /metrics.
    clients_worker_metrics: int = 9101
    notifications_worker_metrics: int = 9102
    catalog_worker_metrics: int = 9103
    payments_worker_metrics: int = 9104
    # Ports of replicas 2..N by field name ({"clients": (p2, p3)}), when they are not the
    # first one's + REPLICA_PORT_STEP per replica (tests and benchmarks take free ports).
    replica_ports: Mapping[str, tuple[int, ...]] = field(
        default_factory=dict, compare=False, hash=False
    )

    def replica_port(self, name: str, replica: int) -> int:
        """The port of replica ``replica`` (1-based) of ``name`` (an api or a worker's
        metrics endpoint); 0 (metrics off) stays 0."""
        first: int = getattr(self, name)
        if replica == 1 or not first:
            return first
        given = self.replica_ports.get(name, ())
        if len(given) >= replica - 1:
            return given[replica - 2]
        return first + REPLICA_PORT_STEP * (replica - 1)

    def api_ports(self, service: str, replicas: Replicas) -> list[int]:
        return [self.replica_port(service, k) for k in range(1, replicas.apis + 1)]


# The ports that have one per replica.
REPLICATED_PORTS = (*SERVICES, *(f"{service}_worker_metrics" for service in SERVICES))


def free_ports(replicas: Replicas | None = None) -> Ports:
    """Ports nobody listens on (tests, benchmarks), one per replica where there are several.

    Every socket stays bound until all are taken, so no port is handed out twice."""
    replicas = replicas or Replicas()
    extra = max(replicas.apis, replicas.workers) - 1
    names = [f.name for f in fields(Ports) if f.name != "replica_ports"]
    with ExitStack() as stack:

        def take() -> int:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

        first = {name: take() for name in names}
        more = {name: tuple(take() for _ in range(extra)) for name in REPLICATED_PORTS}
    return Ports(**first, replica_ports=more)


def process_name(kind: str, replica: int, count: int) -> str:
    """``clients-worker`` when it runs once; ``clients-worker.1``, ``clients-worker.2``..."""
    return kind if count == 1 else f"{kind}.{replica}"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    # Path answering 200 when the process is ready (None: no HTTP endpoint).
    ready_path: str | None = None
    port: int | None = None
    # Variables of this process alone, over the system's (a worker replica's metrics port).
    env: Mapping[str, str] = field(default_factory=dict)
    # Where a worker serves /metrics (None: off, or an api, which serves it on ``port``).
    metrics_port: int | None = None


def local_stripe_url(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.localstripe}"


def stripe_environment(
    ports: Ports, webhook_secret: str = LOCAL_STRIPE_WEBHOOK_SECRET
) -> dict[str, str]:
    """Payments (and the gateway's checkout pages) against the local Stripe double."""
    base = local_stripe_url(ports)
    js_url = f"{base}/js.stripe.com/v3/"
    return {
        "PAYMENTS_STRIPE_API_BASE": base,
        "PAYMENTS_STRIPE_API_KEY": LOCAL_STRIPE_API_KEY,
        "PAYMENTS_STRIPE_PUBLISHABLE_KEY": LOCAL_STRIPE_PUBLISHABLE_KEY,
        "PAYMENTS_STRIPE_WEBHOOK_SECRET": webhook_secret,
        "PAYMENTS_STRIPE_JS_URL": js_url,
        "GATEWAY_STRIPE_JS_URL": js_url,
    }


def system_environment(
    ports: Ports,
    *,
    var_dir: Path,
    amqp_url: str,
    public_base_url: str | None = None,
    local_stripe: bool = True,
    replicas: Replicas | None = None,
) -> dict[str, str]:
    """Defaults for a local system (SQLite under var_dir); real env variables win.

    ``local_stripe``: payments talks to localstripe (a process of the system);
    without it the PAYMENTS_STRIPE_* variables must come from the environment.
    ``replicas``: the gateway is given every api replica of a service (comma-separated);
    other processes that call an api (JWKS, payments -> catalog) use the first.
    """
    public = public_base_url or f"http://localhost:{ports.gateway}"
    replicas = replicas or Replicas()

    def api_urls(service: str) -> str:
        return ",".join(f"http://127.0.0.1:{port}" for port in ports.api_ports(service, replicas))

    return {
        "CLIENTELE_DEV": "1",
        "AMQP_URL": amqp_url,
        "PUBLIC_BASE_URL": public,
        "JWKS_URL": f"http://127.0.0.1:{ports.clients}/api/v1/clients/.well-known/jwks.json",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports.smtp),
        "CLIENTS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'clients.db'}",
        "CLIENTS_PORT": str(ports.clients),
        "CLIENTS_CATALOG_URL": f"http://127.0.0.1:{ports.catalog}",
        "NOTIFICATIONS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'notifications.db'}",
        "NOTIFICATIONS_PORT": str(ports.notifications),
        "CATALOG_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'catalog.db'}",
        "CATALOG_PORT": str(ports.catalog),
        "PAYMENTS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'payments.db'}",
        "PAYMENTS_PORT": str(ports.payments),
        "PAYMENTS_CATALOG_URL": f"http://127.0.0.1:{ports.catalog}",
        **(stripe_environment(ports) if local_stripe else {}),
        **{
            f"{service.upper()}_{name}": value
            for service in SERVICES
            for name, value in (
                ("METRICS_PORT", str(getattr(ports, f"{service}_worker_metrics"))),
                ("METRICS_HOST", "127.0.0.1"),
            )
        },
        "GATEWAY_PORT": str(ports.gateway),
        **{f"GATEWAY_{service.upper()}_URL": api_urls(service) for service in SERVICES},
        "GATEWAY_DEV_MAIL_URL": f"http://127.0.0.1:{ports.mail_http}",
        "MAILSINK_SMTP_PORT": str(ports.smtp),
        "MAILSINK_HTTP_PORT": str(ports.mail_http),
        "MAILSINK_DIR": str(var_dir / "mail"),
    }


def _uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory,
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        # Forwarding headers are the gateway's call (GATEWAY_TRUSTED_PROXY_COUNT), not uvicorn's.
        "--no-proxy-headers",
    ]  # fmt: skip


def system_processes(
    ports: Ports,
    *,
    with_mailsink: bool = True,
    local_stripe: bool = True,
    replicas: Replicas | None = None,
) -> list[ProcessSpec]:
    """Every process of the system; with ``replicas``, each api and worker that many times.

    Api replicas listen on ports of their own (:meth:`Ports.replica_port`); worker
    replicas are identical but for their metrics port (``<SERVICE>_METRICS_PORT``)."""
    replicas = replicas or Replicas()
    specs = []
    if with_mailsink:
        specs.append(
            ProcessSpec(
                "mailsink", [sys.executable, "-m", "devtools.mailsink"], "/healthz", ports.mail_http
            )
        )
    if local_stripe:
        # --from-scratch: it pickles its state to a fixed file; never load another run's.
        argv = [sys.executable, "-m", "localstripe", "--port", str(ports.localstripe)]
        specs.append(
            ProcessSpec(
                "localstripe", [*argv, "--from-scratch"], "/js.stripe.com/v3/", ports.localstripe
            )
        )
    for service in SERVICES:
        for k, port in enumerate(ports.api_ports(service, replicas), start=1):
            api = _uvicorn(f"{service}.main:build_app", port)
            name = process_name(f"{service}-api", k, replicas.apis)
            specs.append(ProcessSpec(name, api, "/readyz", port))
        worker = [sys.executable, "-m", f"{service}.worker"]
        for k in range(1, replicas.workers + 1):
            metrics = ports.replica_port(f"{service}_worker_metrics", k)
            specs.append(
                ProcessSpec(
                    process_name(f"{service}-worker", k, replicas.workers),
                    worker,
                    env={f"{service.upper()}_METRICS_PORT": str(metrics)},
                    metrics_port=metrics or None,
                )
            )
    gateway = _uvicorn("gateway.main:build_app", ports.gateway)
    specs.append(ProcessSpec("gateway", gateway, "/readyz", ports.gateway))
    return specs


def register_stripe_webhook(stripe_base: str, gateway_url: str, secret: str) -> None:
    """Tell localstripe where to send events: the gateway's ``/webhooks/stripe``.

    localstripe keeps this in memory only, so it is done after every start.
    """
    data = urllib.parse.urlencode(
        {"url": f"{gateway_url.rstrip('/')}/webhooks/stripe", "secret": secret}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (our own local process)
        f"{stripe_base.rstrip('/')}/_config/webhooks/{STRIPE_WEBHOOK_NAME}",
        data=data,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()
