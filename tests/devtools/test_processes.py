"""Replicas in the one process definition `make run`, the tests and the benchmarks share."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.processes import (
    SERVICES,
    Ports,
    Replicas,
    free_ports,
    system_environment,
    system_processes,
)


def test_one_replica_is_the_system_as_it_always_was() -> None:
    names = [spec.name for spec in system_processes(Ports())]
    assert names == [
        "mailsink",
        "localstripe",
        *(f"{s}-{kind}" for s in SERVICES for kind in ("api", "worker")),
        "gateway",
    ]
    env = system_environment(Ports(), var_dir=Path("/tmp/x"), amqp_url="amqp://")
    assert env["GATEWAY_CLIENTS_URL"] == "http://127.0.0.1:8101"


def test_make_run_replicas_take_the_next_hundred() -> None:
    replicas = Replicas.of(3)
    specs = {spec.name: spec for spec in system_processes(Ports(), replicas=replicas)}
    assert [specs[f"clients-api.{k}"].port for k in (1, 2, 3)] == [8101, 8201, 8301]
    assert [specs[f"payments-worker.{k}"].metrics_port for k in (1, 2, 3)] == [9104, 9204, 9304]
    assert specs["notifications-worker.2"].env == {"NOTIFICATIONS_METRICS_PORT": "9202"}
    assert specs["gateway"].port == 8000 and "gateway.2" not in specs
    env = system_environment(Ports(), var_dir=Path("/tmp/x"), amqp_url="amqp://", replicas=replicas)
    assert env["GATEWAY_CATALOG_URL"] == (
        "http://127.0.0.1:8103,http://127.0.0.1:8203,http://127.0.0.1:8303"
    )
    # Everything else that calls an api uses the first replica.
    assert env["PAYMENTS_CATALOG_URL"] == "http://127.0.0.1:8103"


def test_worker_metrics_that_are_off_stay_off_in_every_replica() -> None:
    specs = system_processes(Ports(clients_worker_metrics=0), replicas=Replicas(workers=2))
    workers = [spec for spec in specs if spec.name.startswith("clients-worker")]
    assert [(w.name, w.metrics_port, dict(w.env)) for w in workers] == [
        ("clients-worker.1", None, {"CLIENTS_METRICS_PORT": "0"}),
        ("clients-worker.2", None, {"CLIENTS_METRICS_PORT": "0"}),
    ]
    # Apis once, workers twice.
    assert [s.name for s in specs if s.name.startswith("clients-api")] == ["clients-api"]


def test_free_ports_give_every_replica_a_port_of_its_own() -> None:
    replicas = Replicas(apis=2, workers=3)
    ports = free_ports(replicas)
    specs = system_processes(ports, replicas=replicas)
    taken = [spec.port for spec in specs if spec.port] + [
        spec.metrics_port for spec in specs if spec.metrics_port
    ]
    assert len(taken) == len(set(taken)) == 2 + 4 * 2 + 1 + 4 * 3  # sink, stripe, apis, gateway


def test_a_system_runs_everything_at_least_once() -> None:
    with pytest.raises(ValueError, match="at least once"):
        Replicas(apis=0)
