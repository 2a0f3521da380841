"""Every process of the system and the environment that wires them together.

One definition used by ``make run``, the end-to-end tests and the benchmarks,
so what is tested is what runs.
"""

from __future__ import annotations

import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("clients", "notifications", "catalog", "payments")
# Offline Stripe (localstripe, a process of its own, never imported): any sk_test_ key works.
LOCAL_STRIPE_API_KEY = "sk_test_local"
LOCAL_STRIPE_PUBLISHABLE_KEY = "pk_test_local"
LOCAL_STRIPE_WEBHOOK_SECRET = "whsec_clientele_local"
STRIPE_WEBHOOK_NAME = "clientele"


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


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    # Path answering 200 when the process is ready (None: no HTTP endpoint).
    ready_path: str | None = None
    port: int | None = None


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
) -> dict[str, str]:
    """Defaults for a local system (SQLite under var_dir); real env variables win.

    ``local_stripe``: payments talks to localstripe (a process of the system);
    without it the PAYMENTS_STRIPE_* variables must come from the environment.
    """
    public = public_base_url or f"http://localhost:{ports.gateway}"
    return {
        "CLIENTELE_DEV": "1",
        "AMQP_URL": amqp_url,
        "PUBLIC_BASE_URL": public,
        "JWKS_URL": f"http://127.0.0.1:{ports.clients}/api/v1/clients/.well-known/jwks.json",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports.smtp),
        "CLIENTS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'clients.db'}",
        "CLIENTS_PORT": str(ports.clients),
        "NOTIFICATIONS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'notifications.db'}",
        "NOTIFICATIONS_PORT": str(ports.notifications),
        "CATALOG_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'catalog.db'}",
        "CATALOG_PORT": str(ports.catalog),
        "PAYMENTS_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'payments.db'}",
        "PAYMENTS_PORT": str(ports.payments),
        "PAYMENTS_CATALOG_URL": f"http://127.0.0.1:{ports.catalog}",
        **(stripe_environment(ports) if local_stripe else {}),
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_CLIENTS_URL": f"http://127.0.0.1:{ports.clients}",
        "GATEWAY_NOTIFICATIONS_URL": f"http://127.0.0.1:{ports.notifications}",
        "GATEWAY_CATALOG_URL": f"http://127.0.0.1:{ports.catalog}",
        "GATEWAY_PAYMENTS_URL": f"http://127.0.0.1:{ports.payments}",
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
    ports: Ports, *, with_mailsink: bool = True, local_stripe: bool = True
) -> list[ProcessSpec]:
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
        port = getattr(ports, service)
        api = _uvicorn(f"{service}.main:build_app", port)
        specs.append(ProcessSpec(f"{service}-api", api, "/readyz", port))
        specs.append(ProcessSpec(f"{service}-worker", [sys.executable, "-m", f"{service}.worker"]))
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
