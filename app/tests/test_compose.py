"""docker-compose.yml and the Dockerfile: the stack they describe can be built and started."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker", "gateway")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_the_five_services_are_declared(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", *APP_SERVICES} <= set(services)
    assert services["postgres"]["image"].split(":") == ["postgres", "16"]
    assert services["redis"]["image"].split(":") == ["redis", "7"]


def test_services_run_the_expected_commands(services: dict[str, Any]) -> None:
    assert command_of(services["migrate"]) == ["taskline", "migrate"]
    assert command_of(services["api"])[:2] == ["taskline", "api"]
    assert command_of(services["worker"]) == ["python", "worker.py"]
    assert command_of(services["gateway"]) == ["taskline", "gateway"]


def test_app_services_share_the_image_built_from_the_dockerfile(
    services: dict[str, Any],
) -> None:
    builders = [name for name in APP_SERVICES if "build" in services[name]]
    assert len(builders) == 1, builders
    build = services[builders[0]]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).is_file()
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images, images


def _depends(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: rule.get("condition", "service_started") for name, rule in depends.items()}


def test_start_order(services: dict[str, Any]) -> None:
    assert _depends(services["migrate"]).get("postgres") == "service_healthy"
    for name in ("api", "worker", "gateway"):
        depends = _depends(services[name])
        assert depends.get("migrate") == "service_completed_successfully", name
        assert depends.get("redis") == "service_healthy", name
    for name in ("postgres", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), name


def test_app_services_reach_the_stores_by_service_name(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"], name
        assert environment["DATABASE_URL"].startswith("postgresql://"), name
        assert environment.get("REDIS_URL", "redis://redis:6379").startswith("redis://redis:"), name
    assert services["api"]["environment"]["REDIS_URL"].startswith("redis://redis:6379")


def test_api_port_is_published_on_loopback_only(services: dict[str, Any]) -> None:
    ports = [str(port) for port in services["api"]["ports"]]
    assert ports == ["127.0.0.1:8000:8000"]
    api_host = services["api"]["environment"].get("API_HOST")
    assert api_host == "0.0.0.0"  # inside the container; compose maps it to loopback
    for name in ("postgres", "redis", "migrate", "worker"):
        assert "ports" not in services[name], name
    for port in services["prometheus"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port


def test_prometheus_scrapes_the_api_metrics(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = [str(volume).split(":") for volume in prometheus["volumes"]]
    config = next(host for host, target, *_ in mounts if target.endswith("prometheus.yml"))
    target = next(t for h, t, *_ in mounts if h == config)
    command = " ".join(command_of(prometheus))
    assert f"--config.file={target}" in command
    scrape = yaml.safe_load((ROOT / config).read_text())["scrape_configs"]
    targets = [t for job in scrape for group in job["static_configs"] for t in group["targets"]]
    assert [job.get("metrics_path", "/metrics") for job in scrape] == ["/metrics"]
    assert targets == ["api:8000"]  # the API's service name and port inside compose
    assert "api" in _depends(prometheus)
    # AUTH=keys in compose: the scrape sends METRICS_TOKEN, written where the config reads it
    [job] = scrape
    token_file = job["authorization"]["credentials_file"]
    assert f'"$$METRICS_TOKEN" > {token_file}' in command
    assert prometheus["env_file"] == "compose.env"


def test_gateway_port_is_published_on_loopback_only(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert [str(port) for port in gateway["ports"]] == ["127.0.0.1:8001:8001"]
    assert gateway["environment"].get("GATEWAY_HOST") == "0.0.0.0"
    assert gateway.get("profiles") == ["gateway"]  # not started until a target is set


def test_the_workers_know_the_gateway_target(services: dict[str, Any]) -> None:
    # The target's host is the one the http kind may always reach: workers need it.
    for name in ("worker", "gateway"):
        assert "GATEWAY_TARGET_BASE_URL" in services[name]["environment"], name


def test_worker_gets_time_to_finish_its_tasks(services: dict[str, Any]) -> None:
    grace = str(services["worker"]["stop_grace_period"])
    assert grace.endswith("s") and float(grace[:-1]) > 30  # WORKER_SHUTDOWN_TIMEOUT default


def test_taskline_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["taskline"] == "taskline.cli:main"


def test_cli_accepts_the_subcommands_compose_uses() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskline", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for subcommand in ("migrate", "api", "worker", "dev", "gateway"):
        assert subcommand in done.stdout, done.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "taskline", "no-such-command"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode != 0


def test_worker_entry_point_exists_at_the_root() -> None:
    source = (ROOT / "worker.py").read_text()
    assert "__main__" in source and "main()" in source


def _dockerfile_copies() -> list[str]:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0].upper() in ("COPY", "ADD"):
            arguments = [word for word in words[1:] if not word.startswith("--")]
            sources.extend(arguments[:-1])
    return sources


def test_every_file_the_dockerfile_copies_exists() -> None:
    sources = _dockerfile_copies()
    assert {
        "pyproject.toml",
        "app",
        "auth",
        "gateway",
        "tasks",
        "taskline",
        "alembic",
        "worker.py",
        "main.py",
        "metrics",
        "dashboard",
    } <= set(sources)
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert missing == []


def test_dockerfile_copies_are_not_excluded_by_dockerignore() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not ignored & set(_dockerfile_copies())


def test_readme_the_package_declares_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = project.get("readme")
    assert readme is None or (ROOT / str(readme)).is_file(), readme


# Access control and secrets ---------------------------------------------------

ENV_FILE = "compose.env"


def _env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str) else files
    return [entry if isinstance(entry, str) else entry["path"] for entry in files]


def _example() -> dict[str, str]:
    values = {}
    for line in (ROOT / f"{ENV_FILE}.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_api_runs_with_api_keys(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert services[name]["environment"]["AUTH"] == "keys", name


def test_secrets_come_from_a_git_ignored_env_file_with_an_example(
    services: dict[str, Any],
) -> None:
    for name in ("postgres", *APP_SERVICES):
        assert _env_files(services[name]) == [ENV_FILE], name
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ENV_FILE in ignored
    assert ENV_FILE in (ROOT / ".dockerignore").read_text().splitlines()
    done = subprocess.run(
        ["git", "check-ignore", "-q", f"{ENV_FILE}.example"], cwd=ROOT, timeout=30
    )
    assert done.returncode == 1  # the example is committed, not ignored
    example = _example()
    assert {"POSTGRES_PASSWORD", "PGPASSWORD", "AUTH_PEPPER", "METRICS_TOKEN"} <= set(example)
    assert all(value == "" for value in example.values()), "the example holds no secret"


def test_no_secret_is_written_in_the_compose_file(services: dict[str, Any]) -> None:
    for name, service in services.items():
        environment = service.get("environment", {})
        for variable in ("POSTGRES_PASSWORD", "PGPASSWORD", "AUTH_PEPPER", "METRICS_TOKEN"):
            assert variable not in environment, (name, variable)
        url = str(environment.get("DATABASE_URL", "postgresql://u@h/d"))
        assert ":" not in url.split("://", 1)[1].split("@", 1)[0], "a password in DATABASE_URL"


def test_the_compose_file_says_how_to_make_the_first_admin_key() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "taskline keys create --owner" in text and "--scopes admin" in text
    assert f"cp {ENV_FILE}.example {ENV_FILE}" in text


def test_the_image_loads_the_projects_handlers(services: dict[str, Any]) -> None:
    """handlers/ is copied to /app/handlers and /app is importable by every
    command, so TASKLINE_HANDLERS=handlers.media works in the containers."""
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert ["WORKDIR", "/app"] in lines
    assert ["COPY", "handlers", "./handlers"] in lines
    assert ["ENV", "PYTHONPATH=/app"] in lines
    assert (ROOT / "handlers" / "__init__.py").is_file()
    for name in ("api", "worker"):
        assert "TASKLINE_HANDLERS" in services[name]["environment"], name
