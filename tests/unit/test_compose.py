"""Static checks of the container deployment: docker-compose.yml, Dockerfile, .dockerignore and the
Grafana provisioning files.

No Docker engine is needed: the files are parsed and cross-checked against each other and against
``sms_analytics.settings.Settings`` (the env-var contract of the Python code).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from sms_analytics.dashboards import alerting, build, pipeline_health
from sms_analytics.settings import Settings
from tests import grafana_provisioning

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GRAFANA_DIR = ROOT / "dashboards"
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
DATASOURCE_FILE = PROVISIONING_DIR / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER_FILE = PROVISIONING_DIR / "dashboards" / "sms.yaml"
DASHBOARD_JSON_DIR = GRAFANA_DIR / "json"
PROMETHEUS_DATASOURCE_FILE = PROVISIONING_DIR / "datasources" / "prometheus.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

SERVICES = {"kafka", "clickhouse", "grafana", "prometheus", "receiver", "worker"}
APP_SERVICES = ("receiver", "worker")
GRAFANA_PROVISIONING_TARGET = "/etc/grafana/provisioning"

# Values that make every required (${VAR:?...}) interpolation resolvable.
FAKE_ENV = {
    "CLICKHOUSE_PASSWORD": "ch-pass-1234",
    "SMS_PHONE_HASH_KEY": "hash-key-5678-0123456789",  # settings.py: at least 16 bytes
    "GRAFANA_ADMIN_PASSWORD": "grafana-pass-9012",
    "SMS_QUERY_TOKEN": "query-token-3456",
    "SMS_CALLBACK_TOKEN": "callback-token-7890",
    "GRAFANA_CLICKHOUSE_PASSWORD": "grafana-ch-pass-2468",
}
CLICKHOUSE_DIR = ROOT / "deploy" / "clickhouse"
GRAFANA_CH_USER_FILE = CLICKHOUSE_DIR / "users.d" / "sms-grafana.xml"
CLICKHOUSE_ACCESS_FILE = CLICKHOUSE_DIR / "config.d" / "sms-access.xml"


# --------------------------------------------------------------------------------------------------
# helpers: a small model of Compose's interpolation, ports, volumes and environment syntax
# --------------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)
# A value that is exactly one ${VAR...} reference and nothing else.
_WHOLE_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_SECRET_KEY = re.compile(r"PASSWORD|KEY|TOKEN|SECRET")


class MissingVariable(LookupError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Resolve ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?m}``, ``${VAR?m}``,
    ``${VAR:+r}``, ``${VAR+r}`` and ``$$`` the way docker compose does (no nesting)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation ${{{match.group('braced')}}}")
        name, op, arg = braced.group("name", "op", "arg")
        if op is None:
            return env.get(name, "")
        is_set = bool(env.get(name)) if op.startswith(":") else name in env
        if op.endswith("-"):
            return env[name] if is_set else arg
        if op.endswith("?"):
            if not is_set:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        return arg if is_set else ""  # "+"

    return _INTERPOLATION.sub(replace, value)


def environment(service: Mapping) -> dict[str, str]:
    """A service's environment as a dict of strings (raw, before interpolation)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return dict(pairs)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def resolved_environment(service: Mapping, host_env: Mapping[str, str]) -> dict[str, str]:
    return {key: interpolate(value, host_env) for key, value in environment(service).items()}


def published_ports(service: Mapping) -> list[tuple[str | None, int | None, int]]:
    """(host_ip, host_port, container_port) for every entry of ``ports`` (short or long syntax)."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, Mapping):
            published = entry.get("published")
            result.append(
                (entry.get("host_ip"), int(published) if published is not None else None, int(entry["target"]))
            )
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            result.append((None, int(parts[0]), int(parts[1])))
        else:
            result.append((None, None, int(parts[0])))
    return result


def mounts(service: Mapping) -> list[dict]:
    """Every ``volumes`` entry as {type, source, target, read_only}."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, Mapping):
            result.append(
                {
                    "type": entry.get("type", "volume"),
                    "source": entry.get("source"),
                    "target": entry["target"],
                    "read_only": bool(entry.get("read_only", False)),
                }
            )
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:
            result.append({"type": "volume", "source": None, "target": parts[0], "read_only": False})
            continue
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        result.append({"type": kind, "source": source, "target": target, "read_only": "ro" in options})
    return result


def command(service: Mapping) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def healthcheck_text(service: Mapping) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def setting_default(name: str):
    return Settings.model_fields[name].default


def listener_map(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)} (an empty host stays empty)."""
    result = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def env_references(text: str) -> set[str]:
    """Names of the environment variables a Grafana provisioning file reads ($VAR / ${VAR})."""
    without_escapes = text.replace("$$", "")
    pattern = r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)"
    return {braced or bare for braced, bare in re.findall(pattern, without_escapes)}


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def datasource() -> dict:
    document = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    [entry] = document["datasources"]
    return entry


@pytest.fixture(scope="module")
def dashboard_provider() -> dict:
    document = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    [entry] = document["providers"]
    return entry


# --------------------------------------------------------------------------------------------------
# the helpers themselves (so that a wrong helper cannot make a check vacuous)
# --------------------------------------------------------------------------------------------------


def test_interpolate_follows_compose_rules():
    env = {"A": "x", "EMPTY": ""}
    assert interpolate("${A}-${B:-d}-${EMPTY:-d}-${EMPTY-d}-$$A-$A", env) == "x-d-d--$A-x"
    assert interpolate("${A:?need A}", env) == "x"
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?need it}", env)
    with pytest.raises(MissingVariable):
        interpolate("${B?need it}", env)


def test_port_and_volume_parsers():
    service = {
        "ports": [
            "127.0.0.1:81:8081",
            "8080:8080/tcp",
            "9000",
            {"target": 3000, "published": "3001", "host_ip": "::1"},
        ],
        "volumes": [
            "data:/var/lib/x",
            "./dir:/etc/x:ro",
            {"type": "bind", "source": "/a", "target": "/b", "read_only": True},
        ],
    }
    assert published_ports(service) == [
        ("127.0.0.1", 81, 8081),
        (None, 8080, 8080),
        (None, None, 9000),
        ("::1", 3001, 3000),
    ]
    assert mounts(service) == [
        {"type": "volume", "source": "data", "target": "/var/lib/x", "read_only": False},
        {"type": "bind", "source": "./dir", "target": "/etc/x", "read_only": True},
        {"type": "bind", "source": "/a", "target": "/b", "read_only": True},
    ]


# --------------------------------------------------------------------------------------------------
# docker-compose.yml: services, health, ordering
# --------------------------------------------------------------------------------------------------


def test_exactly_the_six_services(services):
    assert set(services) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_real_healthcheck(services, name):
    healthcheck = services[name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False)
    test = healthcheck["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, test


@pytest.mark.parametrize("name, dependencies", [("receiver", {"kafka"}), ("worker", {"kafka", "clickhouse"})])
def test_app_services_wait_for_healthy_dependencies(services, name, dependencies):
    depends_on = services[name]["depends_on"]
    assert isinstance(depends_on, Mapping), "long depends_on syntax is needed for conditions"
    assert set(depends_on) == dependencies  # the receiver never opens the warehouse
    for dependency in dependencies:
        assert depends_on[dependency]["condition"] == "service_healthy"


def test_grafana_waits_for_healthy_clickhouse(services):
    assert services["grafana"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


@pytest.mark.parametrize(
    "name, repository",
    [("kafka", "apache/kafka"), ("clickhouse", "clickhouse/clickhouse-server"), ("grafana", "grafana/grafana"),
     ("prometheus", "prom/prometheus")],
)
def test_third_party_images_are_pinned(services, name, repository):
    image = services[name]["image"]
    repo, _, tag = image.partition(":")
    assert repo == repository
    assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{image} is not pinned to a version tag"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_build_the_repo_image_and_run_their_command(services, name):
    service = services[name]
    build = service["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE_FILE.parent / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert command(service) == ["sms-analytics", name]
    assert service["restart"] == "unless-stopped"


# --------------------------------------------------------------------------------------------------
# ports: the receiver is public, the worker's query endpoint is loopback-only
# --------------------------------------------------------------------------------------------------


def test_receiver_publishes_the_settings_http_port(services, monkeypatch):
    port = setting_default("sms_http_port")
    monkeypatch.delenv("SMS_HTTP_PORT", raising=False)
    assert Settings(_env_file=None).sms_http_port == port
    env = environment(services["receiver"])
    assert int(env["SMS_HTTP_PORT"]) == port
    assert env["SMS_HTTP_HOST"] == "0.0.0.0", "must listen on all interfaces inside the container"
    ports = published_ports(services["receiver"])
    assert any(host_port == port and target == port for _, host_port, target in ports), ports


def test_worker_query_port_is_published_on_loopback_only(services):
    port = setting_default("sms_query_port")
    env = environment(services["worker"])
    assert int(env["SMS_QUERY_PORT"]) == port
    assert env["SMS_QUERY_HOST"] == "0.0.0.0", "must listen on all interfaces inside the container"
    ports = published_ports(services["worker"])
    assert ("127.0.0.1", port, port) in ports, ports
    for host_ip, _, target in ports:
        assert host_ip == "127.0.0.1", f"worker port {target} published beyond loopback"


@pytest.mark.parametrize("name, field", [("receiver", "sms_http_port"), ("worker", "sms_query_port")])
def test_app_healthchecks_probe_their_own_healthz(services, name, field):
    port = int(environment(services[name])[field.upper()])
    text = healthcheck_text(services[name])
    assert services[name]["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert "urllib" in text
    assert f"http://127.0.0.1:{port}/healthz" in text


# --------------------------------------------------------------------------------------------------
# environment of the Python services
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_env_names_are_settings_fields(services, name):
    fields = {field.upper() for field in Settings.model_fields}
    unknown = set(environment(services[name])) - fields
    assert not unknown, f"{name} sets env vars that Settings does not read: {sorted(unknown)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_env_is_parsed_by_settings(services, name, monkeypatch):
    env = resolved_environment(services[name], FAKE_ENV)
    fields = {field.upper() for field in Settings.model_fields}
    for key in [key for key in os.environ if key.upper() in fields]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.kafka_bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert settings.warehouse_url == env.get("CLICKHOUSE_URL", settings.warehouse_url)
    assert settings.sms_phone_hash_key is not None
    assert settings.sms_phone_hash_key.get_secret_value() == FAKE_ENV["SMS_PHONE_HASH_KEY"]
    assert settings.callback_token == FAKE_ENV["SMS_CALLBACK_TOKEN"]
    assert settings.sms_log_json is True


def test_kafka_bootstrap_servers_point_at_the_kafka_listener(services):
    kafka_env = environment(services["kafka"])
    controllers = set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    advertised = listener_map(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    bound = listener_map(kafka_env["KAFKA_LISTENERS"])
    client_listeners = {
        (host, port): name for name, (host, port) in advertised.items() if name not in controllers
    }
    for name in APP_SERVICES:
        servers = environment(services[name])["KAFKA_BOOTSTRAP_SERVERS"].split(",")
        for server in servers:
            host, _, port = server.strip().rpartition(":")
            assert host == "kafka", f"{name}: {server} is not the kafka service"
            listener = client_listeners.get((host, int(port)))
            assert listener is not None, f"{name}: {server} is not an advertised broker listener"
            assert bound[listener][1] == int(port), f"listener {listener} is not bound on port {port}"


def test_kafka_is_kraft_combined_with_a_persistent_log_dir(services):
    kafka = services["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    node_id, _, address = voters.partition("@")
    assert node_id == env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert listener_map(env["KAFKA_LISTENERS"])[controller][1] == int(address.rpartition(":")[2])
    log_dir = env["KAFKA_LOG_DIRS"]
    assert any(m["type"] == "volume" and m["source"] and m["target"] == log_dir for m in mounts(kafka)), (
        "KAFKA_LOG_DIRS must live on a named volume"
    )


def test_kafka_is_the_version_and_the_settings_the_tests_run(services):
    """The kafka service is the Apache Kafka the tests start (sms_analytics/broker/apache.py, from the
    pom's version): same release, same node settings. Only the addresses and the storage differ."""
    from sms_analytics.broker.apache import HEAP, NODE_SETTINGS, kafka_version

    image = services["kafka"]["image"]
    assert image == f"apache/kafka:{kafka_version()}", f"{image}: the tests run Kafka {kafka_version()}"
    env = environment(services["kafka"])
    assert env.get("KAFKA_HEAP_OPTS", "").split() == list(HEAP)
    as_properties = {name.removeprefix("KAFKA_").lower().replace("_", "."): value
                     for name, value in env.items() if name.startswith("KAFKA_") and name != "KAFKA_HEAP_OPTS"}
    differ = {name: (as_properties.get(name), value) for name, value in NODE_SETTINGS.items()
              if _same_setting(name, as_properties.get(name)) != _same_setting(name, value)}
    assert not differ, f"compose vs tested node (compose, tests): {differ}"


def _same_setting(name: str, value: str | None) -> object:
    """A setting's value to compare: listed values as sets (their order means nothing)."""
    if value is not None and name in ("process.roles", "listener.security.protocol.map"):
        return frozenset(value.split(","))
    return value


def test_kafka_healthcheck_queries_the_local_broker(services):
    env = environment(services["kafka"])
    controllers = set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    ports = {port for name, (_, port) in listener_map(env["KAFKA_LISTENERS"]).items() if name not in controllers}
    text = healthcheck_text(services["kafka"])
    assert re.search(r"/opt/kafka/bin/(kafka-broker-api-versions|kafka-topics)\.sh", text), text
    assert any(f"--bootstrap-server localhost:{port}" in text for port in ports), text


def test_clickhouse_url_points_at_the_clickhouse_service(services):
    clickhouse = services["clickhouse"]
    clickhouse_ports = {target for _, _, target in published_ports(clickhouse)}
    for user_env in ({}, {"CLICKHOUSE_USER": "analyst"}):
        host_env = {**FAKE_ENV, **user_env}
        server_env = resolved_environment(clickhouse, host_env)
        for name in ("worker",):
            url = urlsplit(resolved_environment(services[name], host_env)["CLICKHOUSE_URL"])
            assert url.scheme == "http"
            assert url.hostname == "clickhouse"
            assert url.port == 8123 and 8123 in clickhouse_ports
            assert url.username == server_env["CLICKHOUSE_USER"], "must use the user the server creates"
            assert url.password == server_env["CLICKHOUSE_PASSWORD"] == FAKE_ENV["CLICKHOUSE_PASSWORD"]
    database = environment(clickhouse)["CLICKHOUSE_DB"]
    app_database = environment(services["worker"]).get("CLICKHOUSE_DATABASE", setting_default("clickhouse_database"))
    assert app_database == database


def test_only_the_worker_gets_the_writers_clickhouse_credentials(services):
    for name, service in services.items():
        env = environment(service)
        carries = {key for key, value in env.items() if "CLICKHOUSE_PASSWORD" in re.findall(r"\$\{(\w+)", value)}
        expected = {"worker": {"CLICKHOUSE_URL"}, "clickhouse": {"CLICKHOUSE_PASSWORD"}}.get(name, set())
        assert carries == expected, (name, carries)


def test_clickhouse_has_volume_ulimits_and_both_ports(services):
    clickhouse = services["clickhouse"]
    assert any(m["type"] == "volume" and m["target"] == "/var/lib/clickhouse" for m in mounts(clickhouse))
    assert {8123, 9000} <= {target for _, _, target in published_ports(clickhouse)}
    nofile = clickhouse["ulimits"]["nofile"]
    assert int(nofile["soft"]) >= 262144 and int(nofile["hard"]) >= 262144
    assert "SELECT 1" in healthcheck_text(clickhouse)


# --------------------------------------------------------------------------------------------------
# secrets and volumes
# --------------------------------------------------------------------------------------------------


def test_no_literal_secrets(services):
    for name, service in services.items():
        for key, value in environment(service).items():
            if not _SECRET_KEY.search(key):
                continue
            reference = _WHOLE_REFERENCE.fullmatch(value)
            assert reference, f"{name}.{key} must be a ${{...}} interpolation, not a literal"
            if reference.group("op") and reference.group("op").endswith("-"):
                assert reference.group("arg") == "", f"{name}.{key} has a literal default"
        url = environment(service).get("CLICKHOUSE_URL")
        if url:
            # The password in the DSN must be exactly what the host environment supplies.
            for password in ("first-secret", "second-secret"):
                resolved = urlsplit(interpolate(url, {**FAKE_ENV, "CLICKHOUSE_PASSWORD": password}))
                assert resolved.password == password, f"{name}.CLICKHOUSE_URL embeds a literal password"


def test_required_secrets_fail_fast_when_unset(services):
    required = {
        "clickhouse": ["CLICKHOUSE_PASSWORD"],
        "grafana": ["GF_SECURITY_ADMIN_PASSWORD", "GRAFANA_CLICKHOUSE_PASSWORD"],
        "receiver": ["SMS_PHONE_HASH_KEY", "SMS_CALLBACK_TOKEN"],
        "worker": ["SMS_PHONE_HASH_KEY", "SMS_CALLBACK_TOKEN", "CLICKHOUSE_URL", "SMS_QUERY_TOKEN"],
    }
    for name, keys in required.items():
        env = environment(services[name])
        for key in keys:
            with pytest.raises(MissingVariable):
                interpolate(env[key], {})
            assert interpolate(env[key], FAKE_ENV)


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    used = {m["source"] for s in services.values() for m in mounts(s) if m["type"] == "volume" and m["source"]}
    assert used, "no named volumes used at all"
    assert used <= declared, f"undeclared named volumes: {sorted(used - declared)}"
    for name, target in (("grafana", "/var/lib/grafana"), ("clickhouse", "/var/lib/clickhouse")):
        assert any(m["type"] == "volume" and m["target"] == target for m in mounts(services[name])), name


# --------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_as_non_root():
    instructions = dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in instructions:
        by_keyword.setdefault(keyword, []).append(args)

    assert by_keyword["FROM"] == ["python:3.11-slim"]
    copied = " ".join(by_keyword["COPY"]).split()
    for source in ("pyproject.toml", "README.md", "src"):
        assert source in copied, f"Dockerfile does not copy {source}"
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", run) for run in by_keyword["RUN"])
    assert by_keyword["WORKDIR"][-1] == "/app"
    assert any(re.search(r"(^|\s)SMS_DATA_DIR=/app/data(\s|$)", env) for env in by_keyword["ENV"])

    exposed = {int(port.split("/")[0]) for args in by_keyword["EXPOSE"] for port in args.split()}
    assert {setting_default("sms_http_port"), setting_default("sms_query_port")} <= exposed
    assert 8080 in exposed

    user = by_keyword["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}, "the image must run as a non-root user"
    # USER comes after the install, so pip runs as root and the runtime does not.
    keywords = [keyword for keyword, _ in instructions]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")

    assert json.loads(by_keyword["CMD"][-1]) == ["sms-analytics", "receiver"]


def test_pyproject_declares_the_console_script_the_image_runs():
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("pyproject.toml not written yet")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert "sms-analytics" in project["project"]["scripts"]
    assert project["build-system"]["build-backend"].startswith("hatchling")


def test_dockerignore_keeps_local_state_out_but_not_the_build_inputs():
    patterns = {
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", "data", ".git", ".env", ".pytest_cache"):
        assert required in patterns, f".dockerignore misses {required}"
    assert any("__pycache__" in pattern for pattern in patterns)
    for needed in ("pyproject.toml", "README.md", "src", "src/", "*", "*.md", "*.toml"):
        assert needed not in patterns, f".dockerignore excludes {needed}, which the build copies"


# --------------------------------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------------------------------


def test_grafana_installs_the_clickhouse_plugin_and_takes_its_admin_password_from_env(services):
    env = environment(services["grafana"])
    assert "GF_INSTALL_PLUGINS" not in env  # deprecated: GF_PLUGINS_PREINSTALL_SYNC replaces it
    plugins = dict(entry.strip().split("@", 1) for entry in env["GF_PLUGINS_PREINSTALL_SYNC"].split(","))
    # pinned to the release whose macros dashboards/macros.py reproduces (../shared/notes/grafana-clickhouse-plugin.md)
    assert plugins["grafana-clickhouse-datasource"] == "4.20.0"
    assert _WHOLE_REFERENCE.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])
    assert 3000 in {target for _, _, target in published_ports(services["grafana"])}
    assert "/api/health" in healthcheck_text(services["grafana"])


def test_grafana_datasource_provisioning(services, datasource):
    assert datasource["uid"] == "sms-clickhouse"
    assert datasource["type"] == "grafana-clickhouse-datasource"
    assert datasource["name"] == "ClickHouse (sms)"
    json_data = datasource["jsonData"]
    assert json_data["host"] == "clickhouse" and json_data["host"] in services
    assert json_data["port"] == 8123
    assert json_data["protocol"] == "http"
    assert json_data["defaultDatabase"] == environment(services["clickhouse"])["CLICKHOUSE_DB"]
    # Grafana's own read-only user, defined in the server's users.d, never the pipeline's writer
    user = ET.parse(GRAFANA_CH_USER_FILE).getroot().find("users")[0]
    assert json_data["username"] == user.tag == "sms_grafana"
    assert env_references(str(datasource["secureJsonData"]["password"])) == {"GRAFANA_CLICKHOUSE_PASSWORD"}
    assert user.find("password").get("from_env") == "GRAFANA_CLICKHOUSE_PASSWORD"


def test_grafana_container_defines_every_env_var_the_provisioning_reads(services):
    grafana_env = environment(services["grafana"])
    clickhouse_env = environment(services["clickhouse"])
    referenced = set()
    for path in PROVISIONING_DIR.rglob("*.y*ml"):  # only the fields Grafana interpolates (grafana_provisioning)
        referenced |= grafana_provisioning.env_references(yaml.safe_load(path.read_text(encoding="utf-8")),
                                                          grafana_provisioning.schema_of(path))
    assert "GRAFANA_CLICKHOUSE_PASSWORD" in referenced and "CLICKHOUSE_PASSWORD" not in referenced
    for name in referenced:
        assert name in grafana_env, f"provisioning reads ${name} but the grafana container does not set it"
    # The same password the ClickHouse server reads for sms_grafana (users.d, from_env), from the same host variable.
    for host_env in (FAKE_ENV, {**FAKE_ENV, "GRAFANA_CLICKHOUSE_PASSWORD": "other"}):
        assert (interpolate(grafana_env["GRAFANA_CLICKHOUSE_PASSWORD"], host_env)
                == interpolate(clickhouse_env["GRAFANA_CLICKHOUSE_PASSWORD"], host_env))


def test_grafana_mounts_provisioning_and_dashboards_where_the_provider_looks(services, dashboard_provider):
    grafana_mounts = {m["target"]: m for m in mounts(services["grafana"])}

    provisioning = grafana_mounts[GRAFANA_PROVISIONING_TARGET]
    assert provisioning["type"] == "bind" and provisioning["read_only"]
    assert (COMPOSE_FILE.parent / provisioning["source"]).resolve() == PROVISIONING_DIR
    assert DATASOURCE_FILE.parent.parent == PROVISIONING_DIR  # provisioning/datasources/…
    assert DASHBOARD_PROVIDER_FILE.parent == PROVISIONING_DIR / "dashboards"

    assert dashboard_provider["type"] == "file"
    assert dashboard_provider["folder"] == "SMS"
    dashboards_path = dashboard_provider["options"]["path"]
    assert dashboards_path == "/var/lib/grafana/dashboards"
    dashboards = grafana_mounts[dashboards_path]
    assert dashboards["type"] == "bind" and dashboards["read_only"]
    assert (COMPOSE_FILE.parent / dashboards["source"]).resolve() == DASHBOARD_JSON_DIR
    assert DASHBOARD_JSON_DIR.is_dir()
    # the generators write where compose mounts from: the top-level dashboards/ (issue 15, "Layout")
    assert build.JSON_DIR == DASHBOARD_JSON_DIR and alerting.PATH.parents[1] == PROVISIONING_DIR
    assert pipeline_health.ALERTS_PATH.parents[1] == PROVISIONING_DIR


# --------------------------------------------------------------------------------------------------
# Prometheus: scrapes the app services' /metrics, and is Grafana's second datasource
# --------------------------------------------------------------------------------------------------


def _flag(service: Mapping, name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command(service) if arg.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} missing from {command(service)}"
    return values[0]


@pytest.fixture(scope="module")
def prometheus_config(services) -> dict:
    config_file = _flag(services["prometheus"], "config.file")
    mount = {m["target"]: m for m in mounts(services["prometheus"])}[config_file]
    assert mount["type"] == "bind" and mount["read_only"]
    assert (COMPOSE_FILE.parent / mount["source"]).resolve() == PROMETHEUS_CONFIG
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))


def test_prometheus_keeps_its_data_on_a_volume_and_answers_on_loopback(services):
    prometheus = services["prometheus"]
    storage = _flag(prometheus, "storage.tsdb.path")
    assert any(m["type"] == "volume" and m["source"] and m["target"] == storage for m in mounts(prometheus))
    assert published_ports(prometheus) == [("127.0.0.1", 9090, 9090)]
    assert "http://127.0.0.1:9090/-/healthy" in healthcheck_text(prometheus)
    assert prometheus["restart"] == "unless-stopped"


def test_prometheus_scrapes_every_app_service_on_the_port_it_listens_on(services, prometheus_config):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    listening = {"receiver": "SMS_HTTP_PORT", "worker": "SMS_QUERY_PORT"}
    scraped = {}
    for job in jobs.values():
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                scraped[host] = (int(port), job.get("metrics_path", "/metrics"), job["job_name"])
    for name, variable in listening.items():
        env = environment(services[name])
        assert env[variable.replace("PORT", "HOST")] == "0.0.0.0", f"{name} must listen beyond loopback to be scraped"
        port, path, job_name = scraped[name]
        assert (port, path) == (int(env[variable]), "/metrics"), name
        assert job_name.startswith("sms-"), "the dashboard and alert rules select job=~\"sms-.*\""
    assert set(scraped) <= set(services) | {"localhost"}


def test_grafana_reads_the_prometheus_service(services):
    document = yaml.safe_load(PROMETHEUS_DATASOURCE_FILE.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    [entry] = document["datasources"]
    assert (entry["uid"], entry["type"], entry["access"]) == ("sms-prometheus", "prometheus", "proxy")
    url = urlsplit(entry["url"])
    assert url.hostname == "prometheus" and url.hostname in services
    assert url.port in {target for _, _, target in published_ports(services["prometheus"])}
    assert not entry.get("isDefault"), "the ClickHouse datasource stays the default"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_every_datasource_the_dashboards_and_rules_name_is_provisioned():
    provisioned = set()
    for path in (PROVISIONING_DIR / "datasources").glob("*.y*ml"):
        provisioned |= {d["uid"] for d in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]}
    named = set()
    for path in DASHBOARD_JSON_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r'"uid": "(sms-[a-z-]+)"', text)) - {json.loads(text)["uid"]}
    for path in (PROVISIONING_DIR / "alerting").glob("*.y*ml"):
        named |= set(re.findall(r"datasourceUid: (sms-[a-z-]+)", path.read_text(encoding="utf-8")))
    assert {"sms-clickhouse", "sms-prometheus"} <= named
    assert named <= provisioned, sorted(named - provisioned)


def _bytes(limit: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(limit).strip().lower())
    assert match, f"not a memory size: {limit!r}"
    return int(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)]


def test_every_service_has_a_memory_limit_and_rotated_logs(services):
    for name, service in services.items():
        assert 128 * 2**20 <= _bytes(service.get("mem_limit", "0")) <= 8 * 2**30, (name, service.get("mem_limit"))
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", (name, logging)
        options = logging.get("options") or {}
        assert _bytes(options.get("max-size", "0")) > 0 and int(options.get("max-file", 0)) >= 2, (name, options)


# --------------------------------------------------------------------------------------------------
# ClickHouse users: the writer (the image's CLICKHOUSE_USER) and Grafana's read-only sms_grafana
# --------------------------------------------------------------------------------------------------


def test_clickhouse_mounts_the_grafana_user_and_the_access_config(services):
    targets = {m["target"]: m for m in mounts(services["clickhouse"])}
    for path, target in ((GRAFANA_CH_USER_FILE, "/etc/clickhouse-server/users.d/sms-grafana.xml"),
                         (CLICKHOUSE_ACCESS_FILE, "/etc/clickhouse-server/config.d/sms-access.xml")):
        mount = targets[target]
        assert mount["type"] == "bind" and mount["read_only"]
        assert (ROOT / mount["source"]).resolve() == path.resolve()


def test_grafana_runs_a_supported_patch_line(services):
    tag = services["grafana"]["image"].partition(":")[2]
    # 12.4, the last 12.x minor, is patched until May 2027; its minor tag is its current patch release
    assert tag == "12.4" or (tag.startswith("12.4.") and int(tag.split(".")[2]) >= 5), tag
