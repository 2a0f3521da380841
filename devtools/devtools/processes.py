"""Every process of the system and the environment that wires them together.

One definition used by ``make run``, the end-to-end tests and the benchmarks,
so what is tested is what runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("clients", "notifications", "catalog")


@dataclass(frozen=True)
class Ports:
    gateway: int = 8000
    clients: int = 8101
    notifications: int = 8102
    catalog: int = 8103
    smtp: int = 1025
    mail_http: int = 8025


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    # Path answering 200 when the process is ready (None: no HTTP endpoint).
    ready_path: str | None = None
    port: int | None = None


def system_environment(
    ports: Ports, *, var_dir: Path, amqp_url: str, public_base_url: str | None = None
) -> dict[str, str]:
    """Defaults for a local system (SQLite under var_dir); real env variables win."""
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
        "GATEWAY_PORT": str(ports.gateway),
        "GATEWAY_CLIENTS_URL": f"http://127.0.0.1:{ports.clients}",
        "GATEWAY_NOTIFICATIONS_URL": f"http://127.0.0.1:{ports.notifications}",
        "GATEWAY_CATALOG_URL": f"http://127.0.0.1:{ports.catalog}",
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


def system_processes(ports: Ports, *, with_mailsink: bool = True) -> list[ProcessSpec]:
    specs = []
    if with_mailsink:
        specs.append(
            ProcessSpec(
                "mailsink", [sys.executable, "-m", "devtools.mailsink"], "/healthz", ports.mail_http
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
