"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

What can be known from the files alone: the compose file parses, every service it
names exists, every image is pinned, every SAKK_* variable is one the engine reads and
holds a value it accepts, every `sakk` command the containers run exists in the CLI,
and the image's health check works against a real metrics server.

Transport security is checked the same way, against the files deploy/tls/make-certs.sh
really makes (run here into a temporary folder) and the ACLs deploy/kafka/acls.sh really
adds (run with a stand-in for kafka-acls.sh that records its arguments): Kafka listens
on TLS only with client certificates required, each Sakk service presents its own
principal's certificate, each principal is granted only what it needs, PostgreSQL takes
TLS connections only, and the engine verifies its certificate.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.config import PREFIX, Settings, SettingsError, load_settings
from engine.kafka.client import STAGE_TOPICS, all_topics, topic_configs
from tests.deploy.support import (
    COMPOSE_FILE,
    CONSUMERS,
    DASHBOARD_PROVIDERS_FILE,
    DATASOURCES_FILE,
    DOCKERFILE,
    DOCKERIGNORE,
    OPERATIONS_DOC,
    PROMETHEUS_CONFIG,
    ROOT,
    SCRAPE_JOB,
    free_port,
    load_yaml,
)

EXPECTED_SERVICES = {
    "kafka",
    "postgres",
    "kafka-acls",
    "init",
    *CONSUMERS,
    "simulator",
    "prometheus",
    "grafana",
}
# The CLI as the brief documents it; compose may use only these commands.
DOCUMENTED_COMMANDS = {
    ("run",),
    ("topics", "create"),
    ("db", "upgrade"),
    ("accounts", "load"),
    ("simulate",),
    ("broker",),
}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SETTINGS_VARIABLES = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
HEALTHCHECK_TIMEOUT_S = 10
APP_DIR = "/app/"  # the image's WORKDIR, holding schemas/ and reference/
CREATED_AT_RUNTIME = {"SAKK_DATA_DIR", "SAKK_NOTIFY_LOG_PATH"}  # under /app/var, made by the image
MAKE_CERTS = ROOT / "deploy" / "tls" / "make-certs.sh"
ACLS_SCRIPT = ROOT / "deploy" / "kafka" / "acls.sh"
PG_HBA = ROOT / "deploy" / "postgres" / "pg_hba.conf"
TLS_OUT = "./deploy/tls/out"  # what make-certs.sh makes (git-ignored): compose mounts from here
MAKE_CERTS_TIMEOUT_S = 120
# The Kafka principal (certificate CN) each Sakk service runs as.
SERVICE_PRINCIPALS = {
    "init": "sakk-init",
    "validator": "sakk-validator",
    "settlement": "sakk-settlement",
    "notification": "sakk-notification",
    "simulator": "sakk-simulator",
}
SUPER_USERS = {"User:CN=kafka", "User:CN=sakk-admin"}


@pytest.fixture(scope="module")
def tls_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy/tls/make-certs.sh makes, in a temporary folder."""
    missing = [tool for tool in ("openssl", "keytool", "bash") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"deploy/tls/make-certs.sh needs {', '.join(missing)}, not installed here")
    out = tmp_path_factory.mktemp("tls") / "out"
    run = subprocess.run(
        ["bash", str(MAKE_CERTS), str(out)],
        capture_output=True,
        text=True,
        timeout=MAKE_CERTS_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def interpolate(value: Any) -> str:
    """A compose value as `docker compose` sees it with no variables set: defaults only."""
    text = str(value).replace("$$", "\0")
    return INTERPOLATION.sub(lambda m: m.group(2) or "", text).replace("\0", "$")


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount (a source that is a path)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def _source_on_host(source: str, tls_tree: Path) -> Path:
    """A mount source on this machine: made files under ``tls_tree``, the rest in the repo."""
    if source == TLS_OUT or source.startswith(TLS_OUT + "/"):
        return tls_tree / source.removeprefix(TLS_OUT).lstrip("/")
    return ROOT / source


def _on_host(service: str, container_path: str, tls_tree: Path) -> str:
    """Where a file a container reads through a bind mount is on this machine."""
    for source, target in bind_mounts(services()[service]):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            rest = container_path.removeprefix(target).lstrip("/")
            return str(_source_on_host(source, tls_tree) / rest)
    return container_path


def container_settings(service: str, tls_tree: Path) -> Settings:
    """The settings a Sakk container starts with, its mounted TLS files read from ``tls_tree``."""
    env = {**dockerfile_env(), **environment(services()[service])}
    return load_settings(
        environ={
            k: _on_host(service, v, tls_tree) if k.startswith(f"{PREFIX}KAFKA_SSL_") else v
            for k, v in env.items()
            if k.startswith(PREFIX)
        }
    )


def built_services() -> dict[str, dict[str, Any]]:
    """The services whose image is built from the project's Dockerfile."""
    return {name: s for name, s in services().items() if "build" in s}


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def dockerfile_exec_form(instruction: str) -> list[str]:
    found = [args for name, args in dockerfile_instructions() if name == instruction]
    if not found:
        pytest.fail(f"the Dockerfile has no {instruction}")
    return json.loads(found[-1])


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in dockerfile_instructions():
        if name == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def healthcheck_command() -> list[str]:
    args = next(args for name, args in dockerfile_instructions() if name == "HEALTHCHECK")
    return json.loads(args.split("CMD", 1)[1].strip())


# --------------------------------------------------------------------------- sakk commands


def sakk_invocations() -> list[tuple[str, list[str]]]:
    """(service, argv after `sakk`) of every sakk command a built container runs."""
    image_entrypoint = dockerfile_exec_form("ENTRYPOINT")
    image_command = dockerfile_exec_form("CMD")
    found = []
    for name, service in built_services().items():
        entrypoint = service.get("entrypoint", image_entrypoint)
        entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint
        command = service.get("command", image_command)
        command = shlex.split(command) if isinstance(command, str) else command
        command = [interpolate(word) for word in command]
        if entrypoint == ["sakk"]:
            found.append((name, command))
        elif entrypoint[:1] in (["sh"], ["/bin/sh"]) and entrypoint[-1].startswith("-"):
            for step in re.split(r"&&|\|\||;", command[0]):
                words = shlex.split(step)
                if words[:1] == ["sakk"]:
                    found.append((name, words[1:]))
        else:
            pytest.fail(f"{name}: unexpected entrypoint {entrypoint!r}")
    return found


def sakk_click_command() -> Any:
    """The `sakk` click group, with every command module registered."""
    import click

    try:
        cli_module = importlib.import_module("sakk.cli")
    except ImportError as exc:
        pytest.fail(
            f"sakk.cli is not importable ({exc}): the image's ENTRYPOINT `sakk` runs sakk.cli:main"
        )
    if isinstance(getattr(cli_module, "main", None), click.Command):
        return cli_module.main
    for module in pkgutil.iter_modules(getattr(cli_module, "__path__", [])):
        importlib.import_module(f"sakk.cli.{module.name}")
    groups = [obj for obj in vars(cli_module).values() if isinstance(obj, click.Group)]
    if len(groups) != 1:
        pytest.fail(
            f"sakk.cli: expected main to be a click command or one click group, "
            f"found {len(groups)} groups"
        )
    return groups[0]


def check_invocation(root: Any, argv: list[str]) -> list[str]:
    """Problems of running `sakk <argv>`: unknown commands, options, or choices."""
    import click

    command, path, rest = root, [], list(argv)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            return [f"`sakk {' '.join(path)}` is a group, not a command"]
        ctx = click.Context(command)
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return [
                f"`sakk {' '.join([*path, rest[0]])}`: no such command "
                f"(`sakk {' '.join(path)}` has {command.list_commands(ctx)})"
            ]
        path.append(rest.pop(0))
        command = sub
    problems = []
    ctx = click.Context(command)
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    while rest:
        word = rest.pop(0)
        if word.startswith("-"):
            name, _, value = word.partition("=")
            param = options.get(name)
            if param is None:
                problems.append(f"`sakk {' '.join(path)}` has no option {name}")
                continue
            if not param.is_flag:
                value = value or (rest.pop(0) if rest else "")
                problems += _convert(ctx, param, value, f"sakk {' '.join(path)} {name}")
        elif not arguments:
            problems.append(f"`sakk {' '.join(path)}` takes no argument {word!r}")
        else:
            param = arguments.pop(0)
            if not isinstance(param.type, click.Path | click.File):  # container paths
                problems += _convert(ctx, param, word, f"sakk {' '.join(path)} {param.name}")
    problems += [
        f"`sakk {' '.join(path)}` lacks its argument {p.name.upper()}"
        for p in arguments
        if p.required
    ]
    return problems


def _convert(ctx: Any, param: Any, value: str, where: str) -> list[str]:
    import click

    try:
        param.type.convert(value, param, ctx)
    except click.BadParameter as exc:
        return [f"`{where}`: {value!r} rejected: {exc.format_message()}"]
    return []


# =========================================================================== compose file


def test_compose_parses_and_has_every_service() -> None:
    missing = EXPECTED_SERVICES - services().keys()
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_every_depends_on_names_a_service_with_a_known_condition() -> None:
    names = services().keys()
    problems = []
    for name, service in services().items():
        for dependency, condition in depends_on(service).items():
            if dependency not in names:
                problems.append(f"{name} depends on {dependency}, which is no service")
            if condition not in DEPENDS_ON_CONDITIONS:
                problems.append(f"{name} -> {dependency}: unknown condition {condition!r}")
    assert not problems, "\n".join(problems)


def test_services_waited_on_as_healthy_have_a_health_check() -> None:
    image_has_healthcheck = any(name == "HEALTHCHECK" for name, _ in dockerfile_instructions())
    problems = []
    for name, service in services().items():
        for dependency, condition in depends_on(service).items():
            if condition != "service_healthy":
                continue
            target = services()[dependency]
            check = target.get("healthcheck")
            if check is not None and check.get("disable"):
                problems.append(f"{name} waits for {dependency} to be healthy; its check is off")
            elif check is None and not ("build" in target and image_has_healthcheck):
                problems.append(f"{name} waits for {dependency} to be healthy; it has no check")
    assert not problems, "\n".join(problems)


def test_startup_order_is_broker_and_database_then_init_then_consumers() -> None:
    s = services()
    assert depends_on(s["init"]) == {
        "kafka": "service_healthy",
        "kafka-acls": "service_completed_successfully",  # init creates topics as CN=sakk-init
        "postgres": "service_healthy",
    }
    assert depends_on(s["kafka-acls"]) == {"kafka": "service_healthy"}
    assert s["kafka-acls"].get("restart", "no") == "no", "a one-shot service must not restart"
    for consumer in CONSUMERS:
        assert depends_on(s[consumer]).get("init") == "service_completed_successfully", consumer
    assert depends_on(s["simulator"]).get("init") == "service_completed_successfully"
    assert s["init"].get("restart", "no") == "no", "a one-shot service must not restart"


def test_simulator_only_runs_when_its_profile_is_asked_for() -> None:
    assert services()["simulator"].get("profiles") == ["simulate"]
    unprofiled = [n for n, s in services().items() if n != "simulator" and s.get("profiles")]
    assert not unprofiled, f"services hidden behind a profile: {unprofiled}"


def test_every_image_is_pinned_to_a_tag() -> None:
    problems = []
    for name, service in services().items():
        image = interpolate(service.get("image", ""))
        if not image:
            problems.append(f"{name}: no image name")
            continue
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            problems.append(f"{name}: {image} has no tag")
        elif tag == "latest":
            problems.append(f"{name}: {image} is pinned to nothing (latest)")
    assert not problems, "\n".join(problems)


def test_built_image_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tags = {
        interpolate(s["image"]): s["build"].get("target", "runtime")
        for s in built_services().values()
    }
    assert tags == {f"sakk:{version}": "runtime", f"sakk-dev:{version}": "dev"}


def test_every_sakk_variable_is_a_settings_field() -> None:
    problems = []
    for name, service in services().items():
        for key in environment(service):
            if key.startswith(PREFIX) and key not in SETTINGS_VARIABLES:
                problems.append(f"{name}: {key} is not a field of engine.config.Settings")
    for key in dockerfile_env():
        if key.startswith(PREFIX) and key not in SETTINGS_VARIABLES:
            problems.append(f"Dockerfile ENV: {key} is not a field of engine.config.Settings")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "service",
    sorted(EXPECTED_SERVICES - {"kafka", "postgres", "kafka-acls", "prometheus", "grafana"}),
)
def test_sakk_container_settings_pass_the_engine_checks(service: str, tls_tree: Path) -> None:
    """With the mounted files where the container sees them: the engine checks read them."""
    try:
        settings = container_settings(service, tls_tree)
    except SettingsError as exc:
        pytest.fail(f"{service}: {exc}")
    assert not settings.uses_embedded_broker, f"{service} would start an embedded broker"
    assert settings.database_url, f"{service} would use a SQLite file inside the container"


def test_consumers_expose_metrics_where_prometheus_looks(tls_tree: Path) -> None:
    job = next(
        j for j in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if j["job_name"] == SCRAPE_JOB
    )
    (discovery,) = job["dns_sd_configs"]
    assert sorted(discovery["names"]) == sorted(CONSUMERS)
    for consumer in CONSUMERS:
        settings = container_settings(consumer, tls_tree)
        assert settings.metrics_port == discovery["port"], consumer
        assert settings.metrics_host == "0.0.0.0", f"{consumer} metrics unreachable off-container"


def test_consumer_services_run_their_consumer() -> None:
    for consumer in CONSUMERS:
        assert services()[consumer]["command"] == ["run", consumer]


def test_database_url_matches_the_postgres_service() -> None:
    from sqlalchemy.engine import make_url

    postgres = environment(services()["postgres"])
    for name in built_services():
        url = make_url(environment(services()[name])["SAKK_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port) == ("postgres", 5432), name
        assert url.username == postgres["POSTGRES_USER"], name
        assert url.password == postgres["POSTGRES_PASSWORD"], name
        assert url.database == postgres["POSTGRES_DB"], name


def test_bootstrap_servers_are_the_brokers_advertised_listener() -> None:
    advertised = environment(services()["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {listener.split("://", 1)[1] for listener in advertised.split(",")}
    for name in built_services():
        servers = environment(services()[name])["SAKK_KAFKA_BOOTSTRAP_SERVERS"].split(",")
        assert set(servers) <= addresses, f"{name}: {servers} not in {sorted(addresses)}"


def test_bind_mounts_exist_and_named_volumes_are_declared(tls_tree: Path) -> None:
    """Mounts under deploy/tls/out exist once make-certs.sh ran; every other one is in git."""
    declared = set(compose().get("volumes") or {})
    problems = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                if not _source_on_host(source, tls_tree).exists():
                    problems.append(f"{name}: bind mount {source} does not exist")
            elif source not in declared:
                problems.append(f"{name}: named volume {source} is not declared")
    assert not problems, "\n".join(problems)


def test_files_the_containers_name_are_in_the_image() -> None:
    """/app/<path> in the image is <path> in the repository (the Dockerfile copies it)."""
    named = set()
    for service in built_services().values():
        mounted = tuple(target.rstrip("/") + "/" for _, target in bind_mounts(service))
        named |= {
            v
            for v in environment(service).values()
            if v.startswith(APP_DIR) and not v.startswith(mounted)
        }
        for _, argv in sakk_invocations():
            named |= {word for word in argv if word.startswith(APP_DIR)}
    named |= {
        v
        for k, v in dockerfile_env().items()
        if v.startswith(APP_DIR) and k not in CREATED_AT_RUNTIME
    }
    missing = sorted(p for p in named if not (ROOT / p.removeprefix(APP_DIR)).exists())
    assert not missing, f"not in the repository, so not in the image: {missing}"


def test_grafana_mounts_reach_its_provisioning() -> None:
    mounts = dict(v.split(":")[:2] for v in services()["grafana"]["volumes"])
    providers = load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"]
    assert mounts["./deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (datasource,) = load_yaml(DATASOURCES_FILE)["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services()


# =========================================================================== sakk commands


def test_containers_run_only_documented_sakk_commands() -> None:
    problems = []
    for service, argv in sakk_invocations():
        if not any(tuple(argv[: len(c)]) == c for c in DOCUMENTED_COMMANDS):
            problems.append(f"{service}: `sakk {' '.join(argv)}` is not a documented command")
    assert not problems, "\n".join(problems)
    assert {tuple(argv[:2]) for _, argv in sakk_invocations() if argv[0] != "run"} >= {
        ("db", "upgrade"),
        ("accounts", "load"),
        ("topics", "create"),
    }


def test_sakk_commands_the_containers_run_exist_in_the_cli() -> None:
    root = sakk_click_command()
    problems = [
        f"{service}: {problem}"
        for service, argv in sakk_invocations()
        for problem in check_invocation(root, argv)
    ]
    assert not problems, "\n".join(problems)


def test_image_entrypoint_is_the_sakk_console_script() -> None:
    assert dockerfile_exec_form("ENTRYPOINT") == ["sakk"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("sakk") == "sakk.cli:main"
    module = importlib.import_module("sakk.cli")
    assert callable(getattr(module, "main", None)), "sakk.cli has no main()"


def test_image_default_command_exists_in_the_cli() -> None:
    problems = check_invocation(sakk_click_command(), dockerfile_exec_form("CMD"))
    assert not problems, "\n".join(problems)


# =========================================================================== Dockerfile


def dockerfile_stages() -> list[tuple[str, str]]:
    """(base, stage name) of every FROM, in order; the name is "" for an unnamed stage."""
    stages = []
    for name, args in dockerfile_instructions():
        if name == "FROM":
            words = args.split()
            stages.append(
                (words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else "")
            )
    return stages


def test_dockerfile_base_images_are_pinned_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert stages, "no FROM"
    earlier: set[str] = set()
    for base, stage in stages:
        if base not in earlier:  # a stage built on an earlier one inherits its base
            repository, _, tag = base.partition(":")
            assert repository == "python" and tag.startswith("3.11.") and "slim" in tag, base
        earlier.add(stage)


def test_the_production_image_leaves_the_development_tools_out() -> None:
    assert dockerfile_stages()[-1][1] == "runtime", "the last stage is the default target"
    copies = [args for name, args in dockerfile_instructions() if name == "COPY"]
    assert [c for c in copies if c.split()[0] == "tooling"] == ["tooling ./tooling"]
    stage_of_copy, stage = {}, ""
    for name, args in dockerfile_instructions():
        if name == "FROM":
            stage = args.split()[-1]
        elif name == "COPY":
            stage_of_copy[args] = stage
    assert stage_of_copy["tooling ./tooling"] == "build-dev"
    assert stage_of_copy["--from=build-runtime /opt/sakk /opt/sakk"] == "runtime"


def test_only_the_simulator_runs_the_image_with_the_development_tools() -> None:
    dev = {n for n, s in built_services().items() if s["build"].get("target") == "dev"}
    assert dev == {"simulator"}
    for name, service in built_services().items():
        if name not in dev:
            assert service["build"].get("target") in (None, "runtime"), name


def test_image_runs_as_a_non_root_user() -> None:
    users = [args for name, args in dockerfile_instructions() if name == "USER"]
    assert users, "the image runs as root: no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    problems = []
    for name, args in dockerfile_instructions():
        if name != "COPY" or "--from=" in args:
            continue
        for source in args.split()[:-1]:
            if source.startswith("--"):
                continue
            if not (ROOT / source).exists():
                problems.append(f"COPY {source}: no such file in the repository")
            if source in ignored:
                problems.append(f"COPY {source}: excluded by .dockerignore")
    assert not problems, "\n".join(problems)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "var", "tests", "*.db"} <= ignored


def test_image_health_check_uses_python_not_curl() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "urllib" in command[2] and "/healthz" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")


def test_image_health_check_passes_on_a_live_process_and_fails_otherwise() -> None:
    from engine.metrics import HealthState, MetricsServer

    command = [sys.executable, *healthcheck_command()[1:]]
    health = HealthState()
    server = MetricsServer("127.0.0.1", 0, health).start()
    env = {**os.environ, "SAKK_METRICS_PORT": str(server.port)}

    def check() -> int:
        return subprocess.run(
            command, env=env, capture_output=True, timeout=HEALTHCHECK_TIMEOUT_S
        ).returncode

    try:
        assert check() == 0, "healthy process reported unhealthy"
        health.set_alive(False)
        assert check() != 0, "dead process reported healthy"
    finally:
        server.stop()
    env["SAKK_METRICS_PORT"] = str(free_port())
    assert check() != 0, "nothing listening, reported healthy"


# =========================================================================== Docker engine


def docker_compose_unavailable() -> str | None:
    """None when `docker compose` can run here, else why not."""
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "no Docker engine reachable"
    if info.returncode != 0:
        return "no Docker engine reachable"
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
    if version.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


@pytest.mark.docker
@pytest.mark.parametrize("profiles", [[], ["--profile", "simulate"]], ids=["default", "simulate"])
def test_docker_compose_accepts_the_file(profiles: list[str], tmp_path: Path) -> None:
    reason = docker_compose_unavailable()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


# =========================================================================== transport security


@dataclass(frozen=True)
class Grant:
    """One ACL deploy/kafka/acls.sh adds: principal may do operation on a resource."""

    principal: str
    operation: str
    resource: str  # topic, group or cluster
    name: str
    pattern: str  # literal or prefixed

    def covers(self, resource: str, name: str) -> bool:
        if self.resource != resource:
            return False
        return name.startswith(self.name) if self.pattern == "prefixed" else name == self.name


def acls_script_env() -> dict[str, str]:
    """The environment compose gives the kafka-acls service (the script's defaults otherwise)."""
    return environment(services()["kafka-acls"])


@pytest.fixture(scope="module")
def acl_grants(tmp_path_factory: pytest.TempPathFactory) -> list[Grant]:
    """Run deploy/kafka/acls.sh with a kafka-acls.sh stand-in that records each call."""
    if shutil.which("bash") is None:
        pytest.skip("deploy/kafka/acls.sh is a bash script; bash is not installed here")
    work = tmp_path_factory.mktemp("acls")
    record = work / "calls.jsonl"
    stub = work / "kafka-acls.sh"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['ACLS_RECORD'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", ""),
        **acls_script_env(),
        "KAFKA_ACLS": str(stub),
        "ACLS_RECORD": str(record),
    }
    run = subprocess.run(
        ["bash", str(ACLS_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return [_grant_of(call) for call in calls]


def _grant_of(argv: list[str]) -> Grant:
    options: dict[str, str] = {}
    flags = set()
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("--add", "--cluster"):
            flags.add(word)
        else:
            options[word] = words.pop(0)
    assert "--add" in flags, f"not an --add: {argv}"
    assert set(options) <= {
        "--bootstrap-server",
        "--command-config",
        "--allow-principal",
        "--operation",
        "--topic",
        "--group",
        "--resource-pattern-type",
    }, f"unexpected options (a deny, a host restriction?): {argv}"
    assert options["--bootstrap-server"] == "kafka:9092", argv
    if "--cluster" in flags:
        resource, name = "cluster", "kafka-cluster"
    elif "--topic" in options:
        resource, name = "topic", options["--topic"]
    else:
        resource, name = "group", options["--group"]
    return Grant(
        options["--allow-principal"],
        options["--operation"],
        resource,
        name,
        options.get("--resource-pattern-type", "literal"),
    )


def grants_of(grants: list[Grant], cn: str) -> set[tuple[str, str, str, str]]:
    return {
        (g.operation, g.resource, g.name, g.pattern)
        for g in grants
        if g.principal == f"User:CN={cn}"
    }


def certificate_cn(path: Path) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def certificate_hosts(path: Path) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in names.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def openssl_verifies(ca_file: Path, cert_file: Path) -> bool:
    run = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return run.returncode == 0


def kafka_listeners() -> dict[str, str]:
    """Listener name -> security protocol, from the broker's environment."""
    env = environment(services()["kafka"])
    protocols = dict(
        pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    names = [listener.split("://")[0] for listener in env["KAFKA_LISTENERS"].split(",")]
    return {name: protocols[name] for name in names}


def test_kafka_listens_on_tls_only_and_requires_client_certificates() -> None:
    env = environment(services()["kafka"])
    listeners = kafka_listeners()
    assert set(listeners.values()) == {"SSL"}, f"a listener without TLS: {listeners}"
    advertised = {a.split("://")[0] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert advertised <= set(listeners)
    assert listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "SSL"
    assert listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]] == "SSL"
    assert env["KAFKA_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"] == "https"
    assert set(env["KAFKA_SSL_ENABLED_PROTOCOLS"].split(",")) <= {"TLSv1.3", "TLSv1.2"}
    assert not any("SASL_PLAINTEXT" in v or "PLAINTEXT:" in v for v in env.values())


def test_kafka_refuses_whatever_no_acl_allows() -> None:
    env = environment(services()["kafka"])
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert set(env["KAFKA_SUPER_USERS"].split(";")) == SUPER_USERS


def test_kafka_key_and_trust_stores_are_made_by_make_certs(tls_tree: Path) -> None:
    """The files the image reads from /etc/kafka/secrets exist, open, and prove CN=kafka."""
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    env = environment(services()["kafka"])
    secrets = Path(_on_host("kafka", "/etc/kafka/secrets", tls_tree))
    keystore = secrets / env["KAFKA_SSL_KEYSTORE_FILENAME"]
    password = (secrets / env["KAFKA_SSL_KEYSTORE_CREDENTIALS"]).read_bytes()
    assert env["KAFKA_SSL_KEY_CREDENTIALS"] == env["KAFKA_SSL_KEYSTORE_CREDENTIALS"]  # PKCS#12
    assert env["KAFKA_SSL_KEYSTORE_TYPE"] == env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PKCS12"
    key, cert, chain = pkcs12.load_key_and_certificates(keystore.read_bytes(), password)
    assert key is not None and cert is not None
    (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert f"User:CN={cn.value}" in SUPER_USERS  # the broker's own connections (KRaft)
    broker_cert = secrets / "kafka.crt"
    advertised_hosts = {
        a.split("://")[1].rsplit(":", 1)[0] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert advertised_hosts <= certificate_hosts(broker_cert), "hostname verification fails"
    truststore = secrets / env["KAFKA_SSL_TRUSTSTORE_FILENAME"]
    listed = subprocess.run(
        ["keytool", "-list", "-storetype", "PKCS12", "-keystore", str(truststore),
         "-storepass:file", str(secrets / env["KAFKA_SSL_TRUSTSTORE_CREDENTIALS"])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and "trustedCertEntry" in listed.stdout, listed.stderr
    assert openssl_verifies(tls_tree / "ca" / "ca.crt", broker_cert)


def java_client_problems(service: str, properties_path: str, tls_tree: Path) -> list[str]:
    """What is wrong with a Kafka CLI client config as ``service`` would read it."""
    text = Path(_on_host(service, properties_path, tls_tree)).read_text()
    problems = [] if "security.protocol=SSL" in text else [f"{properties_path}: not SSL"]
    for line in text.splitlines():
        if ".location=" in line:
            location = line.split("=", 1)[1]
            if not Path(_on_host(service, location, tls_tree)).is_file():
                problems.append(f"{service}: {line} is not mounted")
    if "ssl.keystore.location=" not in text:
        problems.append(f"{properties_path}: no client certificate (mutual TLS is required)")
    return problems


def test_kafka_health_check_and_admin_tools_connect_with_a_certificate(tls_tree: Path) -> None:
    test = services()["kafka"]["healthcheck"]["test"][-1]
    config = re.search(r"--command-config (\S+)", test)
    assert config, f"the health check connects without TLS settings: {test}"
    problems = java_client_problems("kafka", config.group(1), tls_tree)
    for service in ("kafka", "kafka-acls"):  # operators run the Kafka tools in the broker's
        problems += java_client_problems(service, acls_script_env()["ADMIN_CONFIG"], tls_tree)
    assert not problems, "\n".join(problems)
    assert certificate_cn(tls_tree / "kafka-admin" / "admin.crt") == "sakk-admin"


@pytest.mark.parametrize("service", sorted(SERVICE_PRINCIPALS))
def test_sakk_service_speaks_mutual_tls_as_its_own_principal(service: str, tls_tree: Path) -> None:
    settings = container_settings(service, tls_tree)
    assert settings.kafka_security_protocol == "SSL"
    assert settings.kafka_ssl_certfile is not None and settings.kafka_ssl_cafile is not None
    assert certificate_cn(settings.kafka_ssl_certfile) == SERVICE_PRINCIPALS[service]
    assert openssl_verifies(settings.kafka_ssl_cafile, settings.kafka_ssl_certfile)
    assert openssl_verifies(settings.kafka_ssl_cafile, tls_tree / "kafka" / "kafka.crt"), (
        "the service would not trust the broker"
    )


def test_no_two_sakk_services_share_a_principal() -> None:
    mounts = {
        service: [s for s, t in bind_mounts(services()[service]) if t == "/app/tls"]
        for service in built_services()
    }
    assert set(mounts) == set(SERVICE_PRINCIPALS), "a built service without its principal"
    sources = [m for found in mounts.values() for m in found]
    assert len(sources) == len(set(sources)) == len(mounts), mounts


def test_bank_may_only_publish_payments_and_read_nothing(
    acl_grants: list[Grant], tls_tree: Path
) -> None:
    settings = load_settings(environ={})
    only_publish = {
        ("Write", "topic", settings.topic("initiated"), "literal"),
        ("IdempotentWrite", "cluster", "kafka-cluster", "literal"),
    }  # no schema store: the switch approves writer schemas in the ledger, banks cannot
    codes = [bank["code"] for bank in json.loads(settings.reference_file.read_text())["banks"]]
    for code in codes:
        assert grants_of(acl_grants, f"bank-{code}") == only_publish, code
        assert certificate_cn(tls_tree / "banks" / f"bank-{code}" / "client.crt") == f"bank-{code}"
    assert grants_of(acl_grants, "sakk-simulator") == only_publish
    bank_grants = [g for g in acl_grants if g.principal.startswith("User:CN=bank-")]
    assert not [g for g in bank_grants if g.operation in ("Read", "All", "Describe")]
    assert not [g for g in bank_grants if g.resource == "group"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_consumer_may_read_its_inputs_and_write_its_outputs_only(
    consumer: str, acl_grants: list[Grant]
) -> None:
    from sakk.app import build_stage

    settings = load_settings(environ={})
    outputs = {
        "validator": ("validated", "rejected", "steps-refused"),
        # settlement's expiry scheduler publishes the expiries that are due to its input
        "settlement": ("settled", "failed", "steps", "steps-refused", "validated"),
        "notification": ("notified",),
    }
    expected = {
        *{("Read", "topic", t, "literal") for t in build_stage(consumer, settings).input_topics()},
        ("Read", "group", settings.group(consumer), "literal"),
        *{("Write", "topic", settings.topic(t), "literal") for t in (*outputs[consumer], "dlq")},
        ("IdempotentWrite", "cluster", "kafka-cluster", "literal"),
    }
    assert grants_of(acl_grants, SERVICE_PRINCIPALS[consumer]) == expected


def test_no_principal_may_write_a_schema_store_on_kafka(acl_grants: list[Grant]) -> None:
    """Writer schemas are approved in the ledger (sakk schemas approve), never on Kafka."""
    prefix = load_settings(environ={}).topic_prefix
    assert not [g for g in acl_grants if g.resource == "topic" and "_schemas" in g.name]
    writes = {g.name for g in acl_grants if g.operation in ("Write", "All")}
    assert writes <= {load_settings(environ={}).topic(t) for t in STAGE_TOPICS}, writes
    assert all(w.startswith(prefix + ".") for w in writes)


def test_init_may_create_the_payment_topics_and_nothing_else(acl_grants: list[Grant]) -> None:
    prefix = load_settings(environ={}).topic("")
    assert grants_of(acl_grants, "sakk-init") == {
        ("Create", "topic", prefix, "prefixed"),
        ("Describe", "topic", prefix, "prefixed"),
    }
    assert grants_of(acl_grants, "sakk-auditor") == {("Read", "topic", prefix, "prefixed")}


def test_every_principal_granted_holds_a_certificate_from_make_certs(
    acl_grants: list[Grant], tls_tree: Path
) -> None:
    made = {certificate_cn(p) for p in tls_tree.glob("**/client.crt")}
    granted = {g.principal.removeprefix("User:CN=") for g in acl_grants}
    assert granted <= made, f"ACLs for principals without a certificate: {granted - made}"
    assert made - granted == set(), f"certificates with no rights at all: {made - granted}"
    assert not {f"User:CN={cn}" for cn in granted} & SUPER_USERS
    assert not [g for g in acl_grants if g.operation == "All" or g.name in ("*", "")]


def test_payments_initiated_is_created_with_the_brokers_log_append_time() -> None:
    """init's `sakk topics create` gives payments.initiated the config; banks cannot backdate."""
    settings = load_settings(environ={})
    assert ("init", ["topics", "create"]) in sakk_invocations()
    assert topic_configs(settings, settings.topic("initiated")) == {
        "message.timestamp.type": "LogAppendTime"
    }
    others = [t for t in all_topics(settings) if t != settings.topic("initiated")]
    assert all(topic_configs(settings, t) == {} for t in others)


def test_postgres_takes_tls_connections_only(tls_tree: Path) -> None:
    service = services()["postgres"]
    command = " ".join(service["command"])
    for option in ("ssl=on", "ssl_min_protocol_version=TLSv1.2"):
        assert f"-c {option}" in command, option
    copied = dict(re.findall(r"-c (ssl_cert_file|ssl_key_file|ssl_ca_file)=(\S+)", command))
    assert set(copied) == {"ssl_cert_file", "ssl_key_file", "ssl_ca_file"}
    install = re.search(r"install -o postgres -g postgres -m 0600 (.*?) (/\S+)/ &&", command)
    assert install, "the server key is not put in place with the owner PostgreSQL demands"
    sources, destination = install.group(1).split(), install.group(2)
    for path in copied.values():
        name = Path(path).name
        assert path == f"{destination}/{name}" and f"/tls/{name}" in sources, path
        assert Path(_on_host("postgres", f"/tls/{name}", tls_tree)).is_file(), name
    server_cert = Path(_on_host("postgres", "/tls/server.crt", tls_tree))
    assert "postgres" in certificate_hosts(server_cert)
    assert openssl_verifies(tls_tree / "ca" / "ca.crt", server_cert)
    hba = re.search(r"-c hba_file=(\S+)", command)
    assert hba and _on_host("postgres", hba.group(1), tls_tree) == str(
        ROOT / PG_HBA.relative_to(ROOT)
    )
    rules = [line.split() for line in PG_HBA.read_text().splitlines() if line.split()[:1] != []]
    rules = [r for r in rules if not r[0].startswith("#")]
    network = [r for r in rules if r[0] != "local"]
    assert network, "no rule for TCP connections"
    for rule in network:
        assert rule[0] == "hostssl" or (rule[0] == "hostnossl" and rule[-1] == "reject"), rule
    assert ["hostnossl", "all", "all", "all", "reject"] in rules
    assert not [r for r in network if r[-1] in ("trust", "password", "md5")], network


def test_engine_verifies_the_postgres_certificate(tls_tree: Path) -> None:
    from sqlalchemy.engine import make_url

    for name in built_services():
        url = make_url(environment(services()[name])["SAKK_DATABASE_URL"])
        assert url.query.get("sslmode") == "verify-full", name
        root_cert = Path(_on_host(name, str(url.query["sslrootcert"]), tls_tree))
        assert root_cert.is_file(), f"{name}: {url.query['sslrootcert']} is not mounted"
        server_cert = Path(_on_host("postgres", "/tls/server.crt", tls_tree))
        assert openssl_verifies(root_cert, server_cert), name
        assert url.host in certificate_hosts(server_cert), name


def test_operations_guide_shows_how_to_make_certificates_and_acls() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    assert "## Transport security" in text
    section = text.split("## Transport security", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "deploy/tls/make-certs.sh",
        "deploy/kafka/acls.sh",
        "openssl req",
        "openssl x509 -req",
        "keytool -importcert",
        "kafka-acls.sh",
        "--allow-principal",
        "sslmode=verify-full",
        "SAKK_KAFKA_SECURITY_PROTOCOL",
        "message.timestamp.type=LogAppendTime",
    ):
        assert needed in section, f"docs/operations.md, Transport security: no {needed!r}"
    for principal in {*SERVICE_PRINCIPALS.values(), "sakk-auditor", "bank-"}:
        assert principal in section, principal
