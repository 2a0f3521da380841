"""The whole system (every api and worker, gateway, localstripe, the SMTP sink) as real
processes, as the end-to-end tests and the benchmarks start it, with RabbitMQ and each
service's PostgreSQL database reached through a proxy of ours (``reliability.proxy``).

Every process of a service (its api and its worker) reaches that service's database
through the proxy ``db:<service>``; every process reaches RabbitMQ through ``amqp``.
The suite itself (the ledger, the drivers) talks to them directly, so a fault only
ever hits the system under test.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url

from devtools.processes import SERVICES, stripe_environment, system_environment
from reliability.proxy import ProxyHub
from tests.support import infra
from tests.support.stack import SystemStack


def _proxied_amqp(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


class ProxiedSystem(SystemStack):
    """A SystemStack whose processes reach RabbitMQ and PostgreSQL through proxies."""

    def __init__(
        self,
        admin_url: str,
        amqp_url: str,
        templates: infra.MigratedTemplates,
        work_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(admin_url, amqp_url, templates, work_dir, extra_env=extra_env or {})
        self.hub = ProxyHub()
        self.direct_urls: dict[str, str] = {}  # service -> database URL without the proxy

    def start(self) -> ProxiedSystem:
        amqp = urlsplit(self.amqp_url)
        amqp_proxy = self.hub.add("amqp", amqp.hostname or "127.0.0.1", amqp.port or 5672)
        env = system_environment(
            self.ports, var_dir=self.work_dir, amqp_url=self.amqp_url, replicas=self.replicas
        )
        env.update(
            {
                "CLIENTELE_DEV": "0",
                "SECRET_KEY": "reliability-secret-" + infra.unique_name("k"),
                "BROKER_NAMESPACE": self.namespace.prefix,
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports.gateway}",
                "LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
                "AMQP_URL": _proxied_amqp(self.amqp_url, amqp_proxy.port),
            }
        )
        env.update(stripe_environment(self.ports, "whsec_" + infra.unique_name("rel")))
        for service in SERVICES:
            template = self.templates.template_for(service)
            name = infra.unique_name(f"rel_{service}")
            url = infra.run(infra.create_database(self.admin_url, name, template=template))
            self.databases[service] = name
            self.direct_urls[service] = url
            parsed = make_url(url)
            proxy = self.hub.add(
                f"db:{service}", parsed.host or "127.0.0.1", int(parsed.port or 5432)
            )
            proxied = parsed.set(host="127.0.0.1", port=proxy.port)
            env[f"{service.upper()}_DATABASE_URL"] = proxied.render_as_string(hide_password=False)
        env.update(self.extra_env)
        self.env = {**os.environ, **env}
        for spec in self.specs.values():
            self._spawn(spec)
        for spec in self.specs.values():
            self.wait_ready(spec.name)
        self.register_webhook()
        return self

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def sigkill(self, name: str) -> None:
        """SIGKILL one process by its pid (nothing of it runs on: no shutdown code)."""
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def respawn(self, name: str, timeout: float = 60) -> None:
        """Start a (dead) process again and wait until this new one is ready."""
        assert self.procs[name].poll() is not None, f"{name} still runs"
        offset = len(self.log(name))
        self._spawn(self.specs[name])
        spec = self.specs[name]
        if spec.ready_path is not None:
            self.wait_ready(name, timeout)
            return
        deadline = time.monotonic() + timeout
        while "worker_started" not in self.log(name)[offset:]:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[offset:][-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not started after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        for name in self.hub.proxies:  # let every process shut down cleanly
            self.hub.restore(name)
        try:
            super().stop()
        finally:
            self.hub.close()
