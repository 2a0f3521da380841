"""What the benchmarks share: real services, processes, wrk, memory readings."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from devtools.processes import (
    ROOT,
    SERVICES,
    Ports,
    ProcessSpec,
    Replicas,
    free_ports,
    system_environment,
    system_processes,
)
from kit.migrations import upgrade

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def asyncpg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def create_database(prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(asyncpg_url(DATABASE_URL)).set(database=name)
    return name, url.render_as_string(hide_password=False)


async def drop_database(name: str) -> None:
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Processes:
    """Started processes, stopped together; their logs go to a work directory."""

    work_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, spec: ProcessSpec) -> None:
        log = (self.work_dir / f"{spec.name}.log").open("ab")
        self.procs[spec.name] = subprocess.Popen(
            spec.argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_http(self, name: str, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.work_dir / (name + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready at {url}")

    def wait_log(self, name: str, marker: str, timeout: float = 60) -> None:
        """Until the process's log has ``marker`` (a worker's ``worker_started``)."""
        log = self.work_dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while marker not in log.read_text(errors="replace"):
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not log {marker!r}; see {log}")
            time.sleep(0.2)

    def rss_mb(self) -> dict[str, float]:
        return {
            name: psutil.Process(proc.pid).memory_info().rss / 2**20
            for name, proc in self.procs.items()
            if proc.poll() is None
        }

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    # wrk's whole report (and what a Lua script printed), for figures only some runs have.
    output: str = field(default="", repr=False, compare=False)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    connections: int = 50,
    seconds: int = 10,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> LoadResult:
    """Load from wrk (C, one thread: the machine's cores are for the system under test)."""
    if shutil.which("wrk") is None:
        raise SystemExit("the benchmarks need wrk: apt-get install wrk")
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        argv += ["-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult(rps, p50, p99, errors, out)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@dataclass(frozen=True)
class Work:
    """A worker's counters (clientele_* metrics): what this one process did."""

    consumed: float  # events handled and committed by its consumer
    published: float  # outbox rows its relay published
    emails_sent: float  # emails its sender had accepted by the SMTP server

    @classmethod
    def read(cls, url: str) -> Work:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(url, timeout=5) as response:
            exposition = response.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == "clientele_emails_total" and sample.labels["outcome"] != "sent":
                    continue
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return cls(
            consumed=totals.get("clientele_events_consumed_total", 0.0),
            published=totals.get("clientele_events_published_total", 0.0),
            emails_sent=totals.get("clientele_emails_total", 0.0),
        )

    def summary(self) -> str:
        parts = (
            ("consumed", self.consumed),
            ("published", self.published),
            ("emails sent", self.emails_sent),
        )
        return ", ".join(f"{name} {value:,.0f}" for name, value in parts if value) or "nothing"


@dataclass(frozen=True)
class Figure:
    """One line of ``make bench``'s summary: a figure beside its same-run baseline."""

    benchmark: str
    figure: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None  # None: no goal of its own (context for the others)
    # The numbers behind it, for comparing runs (the .json file).
    values: dict[str, float] = field(default_factory=dict)

    def row(self) -> list[str]:
        met = "–" if self.met is None else ("met" if self.met else "NOT met")
        return [self.benchmark, self.figure, self.baseline, self.ratio, self.goal, met]


SUMMARY_HEADER = ["benchmark", "figure", "baseline (same run)", "ratio", "goal", "met"]


def env_int(name: str, default: int) -> int:
    """A size from the environment (BENCH_*), for small runs and big ones alike."""
    return int(os.environ.get(name, default))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _free_port() -> int:

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningSystem:
    """Every process of the system on PostgreSQL and RabbitMQ, with its own names."""

    ports: Ports
    processes: Processes
    databases: list[str]
    namespace: str
    replicas: Replicas = field(default_factory=Replicas)
    specs: dict[str, ProcessSpec] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def url_of(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"

    def work(self) -> dict[str, Work]:
        """What each worker process did so far, from its own /metrics."""
        return {
            name: Work.read(f"http://127.0.0.1:{spec.metrics_port}/metrics")
            for name, spec in self.specs.items()
            if spec.metrics_port and self.processes.procs[name].poll() is None
        }

    def stop(self) -> None:
        self.processes.stop()
        for name in self.databases:
            run(drop_database(name))
        run(_delete_namespace(self.namespace))


async def _delete_namespace(prefix: str) -> None:
    import aio_pika

    from kit.messaging import Topology

    topology = Topology(prefix)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for service in SERVICES:
            await channel.queue_delete(topology.queue(service))
            await channel.queue_delete(topology.dead_letter_queue(service))
        await channel.exchange_delete(topology.events_exchange)
        await channel.exchange_delete(topology.dead_letter_exchange)


def start_system(
    extra_env: dict[str, str] | None = None, replicas: Replicas | None = None
) -> RunningSystem:
    """The whole system; ``replicas``: copies of every api and worker (see devtools)."""
    replicas = replicas or Replicas()
    ports = free_ports(replicas)
    work = Path(tempfile.mkdtemp(prefix="bench-system-"))
    namespace = f"bench{uuid.uuid4().hex[:6]}."
    env = system_environment(ports, var_dir=work, amqp_url=AMQP_URL, replicas=replicas)
    env.update(
        {
            "CLIENTELE_DEV": "0",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "BROKER_NAMESPACE": namespace,
            "LOG_FORMAT": "json",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.gateway}",
        }
    )
    env.update(extra_env or {})
    databases = []
    for service in SERVICES:
        name, url = run(create_database(f"bench_{service}"))
        databases.append(name)
        upgrade(ROOT / "services" / service, url)
        env[f"{service.upper()}_DATABASE_URL"] = url
    processes = Processes(work, env)
    system = RunningSystem(ports, processes, databases, namespace, replicas)
    try:
        specs = system_processes(ports, replicas=replicas)
        system.specs = {spec.name: spec for spec in specs}
        for spec in specs:
            processes.start(spec)
        for spec in specs:
            if spec.ready_path:
                processes.wait_http(spec.name, f"http://127.0.0.1:{spec.port}{spec.ready_path}")
            elif "-worker" in spec.name:  # its queue is declared, its loops run
                processes.wait_log(spec.name, "worker_started")
    except BaseException:
        system.stop()
        raise
    return system


def signup(gateway: str, business: str = "Bench") -> dict[str, object]:
    import json

    body = json.dumps(
        {
            "name": "Bench Coach",
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "benchmarking passphrase",
            "business_name": business,
        }
    ).encode()
    request = urllib.request.Request(
        f"{gateway}/api/v1/clients/signup",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        result: dict[str, object] = json.loads(response.read())
        return result
