"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

What can be known from the files alone: the compose file parses, every service it
names exists, every image is pinned, every SAKK_* variable is one the engine reads and
holds a value it accepts, every `sakk` command the containers run exists in the CLI,
and the image's health check works against a real metrics server.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from engine.config import PREFIX, Settings, SettingsError, load_settings
from tests.deploy.support import (
    COMPOSE_FILE,
    CONSUMERS,
    DASHBOARD_PROVIDERS_FILE,
    DATASOURCES_FILE,
    DOCKERFILE,
    DOCKERIGNORE,
    PROMETHEUS_CONFIG,
    ROOT,
    SCRAPE_JOB,
    free_port,
    load_yaml,
)

EXPECTED_SERVICES = {
    "kafka",
    "postgres",
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
        cli_module = importlib.import_module("engine.cli")
    except ImportError as exc:
        pytest.fail(
            f"engine.cli is not importable ({exc}): the image's ENTRYPOINT `sakk` "
            "runs engine.cli:main"
        )
    if isinstance(getattr(cli_module, "main", None), click.Command):
        return cli_module.main
    for module in pkgutil.iter_modules(getattr(cli_module, "__path__", [])):
        importlib.import_module(f"engine.cli.{module.name}")
    groups = [obj for obj in vars(cli_module).values() if isinstance(obj, click.Group)]
    if len(groups) != 1:
        pytest.fail(
            f"engine.cli: expected main to be a click command or one click group, "
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
    assert depends_on(s["init"]) == {"kafka": "service_healthy", "postgres": "service_healthy"}
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
    tags = {interpolate(s["image"]) for s in built_services().values()}
    assert tags == {f"sakk:{version}"}


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
    "service", sorted(EXPECTED_SERVICES - {"kafka", "postgres", "prometheus", "grafana"})
)
def test_sakk_container_settings_pass_the_engine_checks(service: str) -> None:
    env = {**dockerfile_env(), **environment(services()[service])}
    sakk_env = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    try:
        settings = load_settings(environ=sakk_env)
    except SettingsError as exc:
        pytest.fail(f"{service}: {exc}")
    assert not settings.uses_embedded_broker, f"{service} would start an embedded broker"
    assert settings.database_url, f"{service} would use a SQLite file inside the container"


def test_consumers_expose_metrics_where_prometheus_looks() -> None:
    job = next(
        j for j in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if j["job_name"] == SCRAPE_JOB
    )
    (discovery,) = job["dns_sd_configs"]
    assert sorted(discovery["names"]) == sorted(CONSUMERS)
    for consumer in CONSUMERS:
        env = {**dockerfile_env(), **environment(services()[consumer])}
        settings = load_settings(environ={k: v for k, v in env.items() if k.startswith(PREFIX)})
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


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    problems = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                if not (ROOT / source).exists():
                    problems.append(f"{name}: bind mount {source} does not exist")
            elif source not in declared:
                problems.append(f"{name}: named volume {source} is not declared")
    assert not problems, "\n".join(problems)


def test_files_the_containers_name_are_in_the_image() -> None:
    """/app/<path> in the image is <path> in the repository (the Dockerfile copies it)."""
    named = set()
    for name in built_services():
        named |= {v for v in environment(services()[name]).values() if v.startswith(APP_DIR)}
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
    assert scripts.get("sakk") == "engine.cli:main"
    module = importlib.import_module("engine.cli")
    assert callable(getattr(module, "main", None)), "engine.cli has no main()"


def test_image_default_command_exists_in_the_cli() -> None:
    problems = check_invocation(sakk_click_command(), dockerfile_exec_form("CMD"))
    assert not problems, "\n".join(problems)


# =========================================================================== Dockerfile


def test_dockerfile_base_images_are_pinned_python_311_slim() -> None:
    bases = [args.split()[0] for name, args in dockerfile_instructions() if name == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        repository, _, tag = base.partition(":")
        assert repository == "python" and tag.startswith("3.11.") and "slim" in tag, base


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
