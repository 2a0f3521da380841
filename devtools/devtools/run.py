"""``make run``: the whole system on one machine, under one supervisor.

Checks RabbitMQ, migrates every service's SQLite database under ``var/``,
seeds a demo coach (and, once running, a few demo offerings), then starts
the SMTP sink, localstripe (the offline Stripe, unless PAYMENTS_STRIPE_API_KEY
is set), every api and worker and the gateway with honcho. Ctrl-C stops
everything. Every setting can be overridden with the environment variables
listed in the README.

``CLIENTELE_REPLICAS=N`` runs N copies of every api and worker
(``CLIENTELE_API_REPLICAS`` / ``CLIENTELE_WORKER_REPLICAS`` set each kind apart):
api replica k listens on its service's port + (k - 1) * 100 (8101, 8201, ...), a
worker replica's metrics likewise (9101, 9201, ...), and the gateway spreads
requests over a service's api replicas. Several copies need PostgreSQL
(``<SERVICE>_DATABASE_URL``): SQLite has no ``SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aio_pika
from honcho.manager import Manager

from devtools.processes import (
    ROOT,
    SERVICES,
    Ports,
    Replicas,
    local_stripe_url,
    register_stripe_webhook,
    system_environment,
    system_processes,
)
from kit.migrations import upgrade

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "harbour-sunrise-2026"


def _ports() -> Ports:
    env = os.environ
    return Ports(
        gateway=int(env.get("GATEWAY_PORT", 8000)),
        clients=int(env.get("CLIENTS_PORT", 8101)),
        notifications=int(env.get("NOTIFICATIONS_PORT", 8102)),
        catalog=int(env.get("CATALOG_PORT", 8103)),
        smtp=int(env.get("MAILSINK_SMTP_PORT", 1025)),
        mail_http=int(env.get("MAILSINK_HTTP_PORT", 8025)),
        payments=int(env.get("PAYMENTS_PORT", 8104)),
        localstripe=int(env.get("LOCALSTRIPE_PORT", 8420)),
        clients_worker_metrics=int(env.get("CLIENTS_METRICS_PORT", 9101)),
        notifications_worker_metrics=int(env.get("NOTIFICATIONS_METRICS_PORT", 9102)),
        catalog_worker_metrics=int(env.get("CATALOG_METRICS_PORT", 9103)),
        payments_worker_metrics=int(env.get("PAYMENTS_METRICS_PORT", 9104)),
    )


def _replicas() -> Replicas:
    env = os.environ
    both = int(env.get("CLIENTELE_REPLICAS", 1))
    return Replicas(
        apis=int(env.get("CLIENTELE_API_REPLICAS", both)),
        workers=int(env.get("CLIENTELE_WORKER_REPLICAS", both)),
    )


async def _broker_answers(url: str) -> str | None:
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # we explain the failure ourselves
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    await connection.close()
    return None


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _wait_for(url: str, attempts: int = 120) -> bool:
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(1)
    return False


def _register_webhook_when_ready(ports: Ports, secret: str) -> None:
    """localstripe forgets its webhooks when it restarts: register ours once it answers."""
    base = local_stripe_url(ports)
    if not _wait_for(f"{base}/js.stripe.com/v3/"):
        _say(f"localstripe did not start at {base}; paid checkout will not work")
        return
    try:
        register_stripe_webhook(base, f"http://127.0.0.1:{ports.gateway}", secret)
    except OSError as exc:
        _say(f"could not register the Stripe webhook with localstripe: {exc}")


def _announce_when_ready(url: str, stripe: str | None) -> None:
    _wait_for(f"{url}/readyz")
    from devtools.demo_catalog import ensure_demo_catalog

    storefront = ensure_demo_catalog(url, DEMO_EMAIL, DEMO_PASSWORD)
    shop = f"    Storefront  {url}{storefront}\n" if storefront else ""
    cards = (
        f"    Stripe      offline (localstripe at {stripe}); test card 4242 4242 4242 4242\n"
        if stripe
        else ""
    )
    _say(
        "\n  Clientele is running.\n"
        f"    Open        {url}\n"
        f"    Demo login  {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
        f"{shop}"
        f"{cards}"
        f"    Email sent  {url}/dev/mail\n"
        "    Ctrl-C stops everything.\n"
    )


def main() -> int:
    os.chdir(ROOT)
    ports = _ports()
    replicas = _replicas()
    var_dir = Path(os.environ.get("CLIENTELE_VAR_DIR", ROOT / "var")).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    # A real Stripe key set in the environment: use it; otherwise the offline double.
    local_stripe = not os.environ.get("PAYMENTS_STRIPE_API_KEY")
    defaults = system_environment(
        ports, var_dir=var_dir, amqp_url=amqp_url, local_stripe=local_stripe, replicas=replicas
    )
    env = {**defaults, **os.environ}
    env.setdefault("LOG_FORMAT", "console")
    os.environ.update(env)

    on_sqlite = [s for s in SERVICES if env[f"{s.upper()}_DATABASE_URL"].startswith("sqlite")]
    if not replicas.single and on_sqlite:
        _say(
            f"\nSeveral replicas need PostgreSQL, but {', '.join(on_sqlite)} "
            "use SQLite (no SKIP LOCKED: two workers could take the same work).\n"
            "Set <SERVICE>_DATABASE_URL=postgresql+asyncpg://... for every service, "
            "or unset CLIENTELE_REPLICAS.\n"
        )
        return 2

    problem = asyncio.run(_broker_answers(env["AMQP_URL"]))
    if problem:
        _say(
            f"\nRabbitMQ is not answering at {env['AMQP_URL']} ({problem}).\n"
            "Start it, for example with one of:\n"
            "    rabbitmq-server -detached\n"
            "    docker run -d -p 5672:5672 rabbitmq:3.13\n"
            "or point AMQP_URL at a running broker, then run `make run` again.\n"
        )
        return 2

    for service in SERVICES:
        url = env[f"{service.upper()}_DATABASE_URL"]
        _say(f"migrating {service} ({url})")
        upgrade(ROOT / "services" / service, url)

    from clients.config import ClientsSettings
    from clients.demo import ensure_demo_coach

    if asyncio.run(ensure_demo_coach(ClientsSettings(), DEMO_EMAIL, DEMO_PASSWORD)):
        _say(f"created the demo coach {DEMO_EMAIL}")

    manager = Manager()
    for spec in system_processes(ports, local_stripe=local_stripe, replicas=replicas):
        manager.add_process(
            spec.name, shlex.join(spec.argv), env={**env, **spec.env}, cwd=str(ROOT)
        )
    public = env["PUBLIC_BASE_URL"].rstrip("/")
    stripe = local_stripe_url(ports) if local_stripe else None
    if local_stripe:
        secret = env["PAYMENTS_STRIPE_WEBHOOK_SECRET"]
        threading.Thread(
            target=_register_webhook_when_ready, args=(ports, secret), daemon=True
        ).start()
    threading.Thread(target=_announce_when_ready, args=(public, stripe), daemon=True).start()
    manager.loop()
    return int(manager.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
