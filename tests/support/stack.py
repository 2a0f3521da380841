"""The whole system as real processes, for end-to-end and browser tests.

Uses the same process definitions as ``make run`` (devtools.processes), with
PostgreSQL databases of its own, a broker namespace of its own and free
ports, so several stacks and other tests can share one machine. Stripe is
localstripe, started as one of the processes, with the gateway's
``/webhooks/stripe`` registered under a webhook secret of this stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.processes import (
    SERVICES,
    ProcessSpec,
    Replicas,
    free_ports,
    local_stripe_url,
    register_stripe_webhook,
    stripe_environment,
    system_environment,
    system_processes,
)
from tests.support import infra

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SystemStack:
    admin_url: str
    amqp_url: str
    templates: infra.MigratedTemplates
    work_dir: Path
    dev_mode: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    with_mailsink: bool = True
    # Copies of every api and worker (names then end in .1, .2, ...: see devtools.processes).
    replicas: Replicas = field(default_factory=Replicas)

    def __post_init__(self) -> None:
        self.ports = free_ports(self.replicas)
        self.namespace = infra.BrokerNamespace(prefix=f"{infra.unique_name('e2e')}.")
        self.namespace.services.update(SERVICES)
        self.databases: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.specs = {
            s.name: s
            for s in system_processes(
                self.ports, with_mailsink=self.with_mailsink, replicas=self.replicas
            )
        }
        self.env: dict[str, str] = {}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def mail_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.mail_http}"

    def url_of(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"

    def metrics_url(self, name: str) -> str:
        """A process's Prometheus endpoint: a worker's metrics port, an api's own."""
        spec = self.specs[name]
        return f"http://127.0.0.1:{spec.metrics_port or spec.port}/metrics"

    @property
    def stripe_url(self) -> str:
        return local_stripe_url(self.ports)

    @property
    def webhook_secret(self) -> str:
        return self.env["PAYMENTS_STRIPE_WEBHOOK_SECRET"]

    def start(self) -> SystemStack:
        env = system_environment(
            self.ports, var_dir=self.work_dir, amqp_url=self.amqp_url, replicas=self.replicas
        )
        env.update(
            {
                "CLIENTELE_DEV": "1" if self.dev_mode else "0",
                "SECRET_KEY": "e2e-secret-" + infra.unique_name("k"),
                "BROKER_NAMESPACE": self.namespace.prefix,
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports.gateway}",
                "LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(stripe_environment(self.ports, "whsec_" + infra.unique_name("e2e")))
        for service in SERVICES:
            template = self.templates.template_for(service)
            name = infra.unique_name(f"e2e_{service}")
            url = infra.run(infra.create_database(self.admin_url, name, template=template))
            self.databases[service] = name
            env[f"{service.upper()}_DATABASE_URL"] = url
        env.update(self.extra_env)
        self.env = {**os.environ, **env}
        for spec in self.specs.values():
            self._spawn(spec)
        for spec in self.specs.values():
            self.wait_ready(spec.name)
        self.register_webhook()
        return self

    def register_webhook(self) -> None:
        """(Again after restarting localstripe, which keeps webhooks in memory only.)"""
        register_stripe_webhook(self.stripe_url, self.gateway_url, self.webhook_secret)

    def _spawn(self, spec: ProcessSpec) -> None:
        log = (self.work_dir / f"{spec.name}.log").open("ab")
        self.procs[spec.name] = subprocess.Popen(
            spec.argv,
            cwd=ROOT,
            env={**self.env, **spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        spec = self.specs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}"
                )
            if spec.ready_path is None:
                if "worker_started" in self.log(name):
                    return
            else:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{spec.port}{spec.ready_path}", timeout=2
                    ) as response:
                        if response.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.work_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def restart(self, name: str) -> None:
        if self.procs[name].poll() is None:
            self.kill(name, signal.SIGTERM)
        self._spawn(self.specs[name])
        self.wait_ready(name)
        if name == "localstripe":
            self.register_webhook()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in self.databases.values():
            infra.run(infra.drop_database(self.admin_url, name))
        infra.run(self.namespace.delete_all(self.amqp_url))


class MailSink:
    """Reads what the SMTP sink captured, through its HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as response:
            return json.loads(response.read())

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        query = f"?to={urllib.request.quote(to)}" if to else ""
        result: list[dict[str, Any]] = self._get(f"/messages{query}")
        return result

    def message(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/messages/{message_id}")
        return result

    def wait_for(
        self, to: str, subject_contains: str = "", timeout: float = 30, count: int = 1
    ) -> list[dict[str, Any]]:
        """The full messages to ``to`` whose subject contains the text (waits for ``count``)."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [
                m for m in self.messages(to) if subject_contains.lower() in m["subject"].lower()
            ]
            if len(found) >= count:
                return [self.message(m["id"]) for m in found]
            time.sleep(0.2)
        raise AssertionError(
            f"no email to {to} with {subject_contains!r} after {timeout}s (saw {len(found)})"
        )

    def link(self, message: dict[str, Any], contains: str) -> str:
        for link in message["links"]:
            if contains in link:
                return str(link)
        raise AssertionError(f"no link containing {contains!r} in {message['links']}")
