"""Settings: defaults, the environment variables read, and how a bad value stops a program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import KindRule, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            names.add(str(choice).upper())
    return names


ENV_NAMES = _env_names()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Taskline variable of the surrounding shell leaks into a test."""
    for key in list(os.environ):
        if key.upper() in ENV_NAMES:
            monkeypatch.delenv(key)


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults() -> None:
    found = settings()
    assert found.worker_queue_maxsize == 10
    assert found.worker_shutdown_timeout_s == 30
    assert found.worker_lease_s == 30
    assert found.redis_queue_name == "taskline"
    assert (found.log_level, found.log_format, found.access_log) == ("INFO", "text", False)
    assert found.api_host == "127.0.0.1" and found.api_port == 8000
    assert found.taskline_handlers == "" and found.handler_modules == ()
    assert found.fault_skip_push is False
    assert found.result_max_bytes == 1024 * 1024
    assert found.event_stream_max_entries == 10_000
    assert found.events_subscriber_queue == 1000 and found.events_heartbeat_s == 15
    assert found.kind_max_backlog == {}
    assert found.database_pooler == "none" and found.worker_processes == 1
    assert found.claim_synchronous_commit == "off"


def test_unset_urls_fall_back_to_the_embedded_dev_stack() -> None:
    found = settings()
    assert found.database_url is None and found.redis_url is None
    assert found.db_url == "postgresql+asyncpg://postgres@127.0.0.1:54329/taskline"
    assert found.cache_url == "redis://127.0.0.1:63799/0"


def test_embedded_ports_move_the_fallback_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDED_PG_PORT", "6000")
    monkeypatch.setenv("EMBEDDED_REDIS_PORT", "6001")
    found = settings()
    assert found.db_url == "postgresql+asyncpg://postgres@127.0.0.1:6000/taskline"
    assert found.cache_url == "redis://127.0.0.1:6001/0"


def test_documented_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "DATABASE_URL": "postgresql+asyncpg://u:p@db:5432/app",
        "REDIS_URL": "redis://cache:6379/2",
        "REDIS_QUEUE_NAME": "orders",
        "WORKER_QUEUE_MAXSIZE": "25",
        "WORKER_PROCESSES": "4",
        "WORKER_SHUTDOWN_TIMEOUT": "12.5",
        "WORKER_LEASE_SECONDS": "90",
        "RECONCILE_INTERVAL_SECONDS": "2",
        "RECONCILE_GRACE_SECONDS": "7",
        "TASKLINE_HANDLERS": "myapp.handlers, myapp.more_handlers",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "JSON",
        "ACCESS_LOG": "true",
        "DB_POOL_SIZE": "3",
        "DATABASE_POOLER": "Transaction",
        "API_PORT": "9000",
        "TASKLINE_DATA_DIR": "/var/lib/taskline",
        "TASKLINE_FAULT_SKIP_PUSH": "true",
        "CLAIM_SYNCHRONOUS_COMMIT": "On",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    found = settings()
    assert found.db_url == "postgresql+asyncpg://u:p@db:5432/app"
    assert found.cache_url == "redis://cache:6379/2"
    assert found.redis_queue_name == "orders"
    assert found.worker_queue_maxsize == 25
    assert found.worker_processes == 4
    assert found.worker_shutdown_timeout_s == 12.5
    assert found.worker_lease_s == 90
    assert found.reconcile_interval_s == 2
    assert found.reconcile_grace_s == 7
    assert found.handler_modules == ("myapp.handlers", "myapp.more_handlers")
    assert found.log_level == "DEBUG"
    assert (found.log_format, found.access_log) == ("json", True)
    assert found.db_pool_size == 3 and found.api_port == 9000
    assert found.database_pooler == "transaction"
    assert found.data_dir == Path("/var/lib/taskline")
    assert found.fault_skip_push is True
    assert found.claim_synchronous_commit == "on"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
    ],
)
def test_database_url_gets_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    assert settings().db_url == expected


def test_env_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("WORKER_QUEUE_MAXSIZE=40\nWORKER_LEASE_SECONDS=15\n")
    monkeypatch.setenv("WORKER_LEASE_SECONDS", "20")
    found = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert (found.worker_queue_maxsize, found.worker_lease_s) == (40, 20)


BAD_VALUES = [
    ("WORKER_QUEUE_MAXSIZE", "0"),
    ("WORKER_SHUTDOWN_TIMEOUT", "abc"),
    ("WORKER_LEASE_SECONDS", "0"),
    ("DATABASE_URL", "mysql://x"),
    ("REDIS_URL", "http://x"),
    ("LOG_LEVEL", "LOUD"),
    ("LOG_FORMAT", "xml"),
    ("TASKLINE_HANDLERS", "my handlers"),
    ("DATABASE_POOLER", "session"),
    ("WORKER_PROCESSES", "0"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_in_process(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        settings()


PROGRAMS = [["worker.py"], ["-c", "import main"], ["-m", "taskline", "migrate"]]


@pytest.mark.parametrize("program", PROGRAMS, ids=["worker", "api", "migrate"])
@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_stops_the_program_with_one_line(
    program: list[str], name: str, value: str
) -> None:
    env = {key: val for key, val in os.environ.items() if key.upper() not in ENV_NAMES}
    env[name] = value
    done = subprocess.run(
        [sys.executable, *program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert name in lines[0], lines[0]


# --- scheduling settings: queues, kind rules and limits, fairness, aging -----


def test_scheduling_defaults() -> None:
    found = settings()
    assert found.queues == ("default",)
    assert found.priority_aging_s == 0
    assert found.kind_rules == {} and found.kind_concurrency == {}
    assert found.fairness == "off"
    assert found.level_thresholds == (1, 6, 16, 26, 36)
    assert found.fairness_weights == {}


def test_worker_queues_keep_their_order_and_drop_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_QUEUES", " high, default ,high,,low.eu-1,default")
    assert settings().queues == ("high", "default", "low.eu-1")


def test_fairness_levels_give_the_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRNESS_LEVELS", "2,4,8")
    assert settings().level_thresholds == (2, 4, 8)


def test_kind_rules_are_read_as_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIND_RULES", '{"report.*": {"priority": 2, "queue": "slow"}, "mail": {}}')
    rules = settings().kind_rules
    assert set(rules) == {"report.*", "mail"}
    assert all(isinstance(rule, KindRule) for rule in rules.values())
    assert (rules["report.*"].priority, rules["report.*"].queue) == (2, "slow")
    assert (rules["mail"].priority, rules["mail"].queue) == (None, None)


def test_scheduling_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "KIND_CONCURRENCY": '{"mail": 3, "report": 1}',
        "FAIRNESS": "levels",
        "FAIRNESS_WINDOW_SECONDS": "120",
        "FAIRNESS_WEIGHTS": '{"acme": 0.5, "big": 4}',
        "PRIORITY_AGING_SECONDS": "30",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    found = settings()
    assert found.kind_concurrency == {"mail": 3, "report": 1}
    assert found.fairness == "levels"
    assert found.fairness_window_s == 120
    assert found.fairness_weights == {"acme": 0.5, "big": 4.0}
    assert found.priority_aging_s == 30


SCHEDULING_BAD_VALUES = [
    ("WORKER_QUEUES", "a b"),
    ("WORKER_QUEUES", ","),
    ("WORKER_QUEUES", "ok,bad:name"),
    ("KIND_CONCURRENCY", "not json"),
    ("KIND_CONCURRENCY", '{"mail": 0}'),
    ("KIND_RULES", '{"report.*": {"priority": 12}}'),
    ("KIND_RULES", '{"report.*": {"colour": "red"}}'),
    ("KIND_RULES", '{"report.*": {"queue": "a b"}}'),
    ("KIND_RULES", "not json"),
    ("FAIRNESS", "roundrobin"),
    ("FAIRNESS_LEVELS", "5,3"),
    ("FAIRNESS_LEVELS", "x"),
    ("FAIRNESS_LEVELS", "0,1"),
    ("FAIRNESS_LEVELS", "1,2,3,4,5,6,7,8,9,10"),
    ("FAIRNESS_WEIGHTS", '{"acme": 0}'),
    ("FAIRNESS_WEIGHTS", "not json"),
    ("PRIORITY_AGING_SECONDS", "-1"),
    ("RESULT_MAX_BYTES", "0"),
    ("EVENT_STREAM_MAX_ENTRIES", "10"),
    ("EVENTS_SUBSCRIBER_QUEUE", "0"),
    ("EVENTS_HEARTBEAT_SECONDS", "0"),
    ("KIND_MAX_BACKLOG", '{"mail": -1}'),
    ("KIND_MAX_BACKLOG", "not json"),
]


@pytest.mark.parametrize(("name", "value"), SCHEDULING_BAD_VALUES)
def test_a_bad_scheduling_value_stops_load_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"taskline: invalid setting {name}:"), lines[0]


WORKER_BAD_VALUES = [
    ("WORKER_QUEUES", ","),
    ("KIND_CONCURRENCY", '{"mail": 0}'),
    ("KIND_CONCURRENCY", "not json"),
    ("KIND_RULES", '{"report.*": {"priority": 12}}'),
    ("FAIRNESS", "roundrobin"),
    ("FAIRNESS_LEVELS", "5,3"),
    ("FAIRNESS_WEIGHTS", '{"acme": 0}'),
    ("PRIORITY_AGING_SECONDS", "-1"),
    ("CLAIM_SYNCHRONOUS_COMMIT", "local"),
]


@pytest.mark.parametrize(("name", "value"), WORKER_BAD_VALUES)
def test_a_bad_scheduling_value_stops_the_worker_with_one_line(name: str, value: str) -> None:
    env = {key: val for key, val in os.environ.items() if key.upper() not in ENV_NAMES}
    env[name] = value
    done = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"taskline: invalid setting {name}:"), lines[0]


# --- schedules and workflows -------------------------------------------------


def test_schedule_and_workflow_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    found = settings()
    assert (found.schedule_interval_s, found.schedule_misfire_grace_s) == (1, 10)
    assert (found.schedule_catch_up_max, found.workflow_max_steps) == (100, 100)
    assert found.workflow_max_group == 1000
    values = {
        "SCHEDULE_INTERVAL_SECONDS": "0.5",
        "SCHEDULE_MISFIRE_GRACE_SECONDS": "30",
        "SCHEDULE_CATCH_UP_MAX": "5",
        "WORKFLOW_MAX_STEPS": "7",
        "WORKFLOW_MAX_GROUP": "9",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    found = settings()
    assert (found.schedule_interval_s, found.schedule_misfire_grace_s) == (0.5, 30)
    assert (found.schedule_catch_up_max, found.workflow_max_steps) == (5, 7)
    assert found.workflow_max_group == 9


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCHEDULE_INTERVAL_SECONDS", "0"),
        ("SCHEDULE_MISFIRE_GRACE_SECONDS", "-1"),
        ("SCHEDULE_CATCH_UP_MAX", "0"),
        ("WORKFLOW_MAX_STEPS", "many"),
        ("WORKFLOW_MAX_GROUP", "0"),
    ],
)
def test_a_bad_flow_value_stops_load_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        load_settings()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"taskline: invalid setting {name}:")


# --- access control ------------------------------------------------------------


def test_access_control_defaults() -> None:
    found = settings()
    assert found.auth == "none" and found.allow_unauthenticated is False
    assert found.auth_pepper is None and found.metrics_token is None
    assert found.cors_origin_list == ()
    assert found.unauthenticated_exposure() is None  # 127.0.0.1


def test_access_control_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "AUTH": "KEYS",
        "AUTH_PEPPER": "p" * 32,
        "METRICS_TOKEN": "m" * 40,
        "ALLOW_UNAUTHENTICATED": "true",
        "CORS_ORIGINS": "https://app.example, http://localhost:3000,https://app.example",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    found = settings()
    assert found.auth == "keys" and found.allow_unauthenticated is True
    assert found.auth_pepper is not None and found.auth_pepper.get_secret_value() == "p" * 32
    assert found.metrics_token is not None
    assert found.cors_origin_list == ("https://app.example", "http://localhost:3000")
    assert "p" * 32 not in repr(found)  # secrets do not print


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("api.internal", False)],
)  # fmt: skip
def test_auth_none_serves_only_on_loopback_unless_allowed(host: str, allowed: bool) -> None:
    found = Settings(_env_file=None, api_host=host)  # type: ignore[call-arg]
    assert (found.unauthenticated_exposure() is None) == allowed
    opened = Settings(_env_file=None, api_host=host, allow_unauthenticated=True)  # type: ignore[call-arg]
    keys = Settings(_env_file=None, api_host=host, auth="keys", auth_pepper="p" * 32)  # type: ignore[call-arg]
    assert opened.unauthenticated_exposure() is None and keys.unauthenticated_exposure() is None


AUTH_BAD_VALUES = [
    ({"AUTH": "maybe"}, "AUTH"),
    ({"AUTH": "keys"}, "AUTH_PEPPER"),
    ({"AUTH": "keys", "AUTH_PEPPER": "   "}, "AUTH_PEPPER"),
    ({"AUTH_PEPPER": "too short"}, "AUTH_PEPPER"),
    ({"METRICS_TOKEN": "too short"}, "METRICS_TOKEN"),
    ({"CORS_ORIGINS": "app.example"}, "CORS_ORIGINS"),
    ({"CORS_ORIGINS": "https://ok.example,ftp://files.example"}, "CORS_ORIGINS"),
    ({"ALLOW_UNAUTHENTICATED": "perhaps"}, "ALLOW_UNAUTHENTICATED"),
]


@pytest.mark.parametrize(("values", "name"), AUTH_BAD_VALUES)
def test_a_bad_access_control_value_stops_load_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    values: dict[str, str],
    name: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"taskline: invalid setting {name}:"), lines[0]
    for secret in values.values():
        if len(secret) > 8:
            assert secret not in lines[0] or name == "CORS_ORIGINS"


# --- Redis Cluster -----------------------------------------------------------


def test_redis_cluster_is_off_by_default_and_read_with_a_seed_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings().redis_cluster is False
    monkeypatch.setenv("REDIS_URL", "redis://cache-0:6379/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    found = settings()
    assert found.redis_cluster is True and found.cache_url == "redis://cache-0:6379/0"


CLUSTER_BAD_VALUES = [
    {"REDIS_CLUSTER": "true"},  # the embedded Valkey is no cluster
    {"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///run/redis.sock"},
    {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://cache:6379/2"},
    {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://cache:6379", "REDIS_QUEUE_NAME": "a{b}"},
    {"REDIS_CLUSTER": "maybe"},
]


@pytest.mark.parametrize("values", CLUSTER_BAD_VALUES)
def test_a_cluster_setting_that_cannot_work_stops_load_settings_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    values: dict[str, str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("taskline: invalid setting REDIS_CLUSTER:"), lines[0]
