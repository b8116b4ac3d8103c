"""One typed settings object, read from the environment and an optional `.env`.

A bad value stops the program with one line that names the variable.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


QUEUE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_PRIORITY = 9
MAX_WORKER_PROCESSES = 256
# A gateway request's body travels base64-encoded in a task payload (256 KiB of JSON).
MAX_GATEWAY_REQUEST_BYTES = 160 * 1024
GATEWAY_RETRY_REASONS = ("5xx", "connect", "timeout")


class KindRule(BaseModel):
    """Defaults for tasks whose kind matches a KIND_RULES pattern (fnmatch)."""

    model_config = ConfigDict(extra="forbid")

    priority: int | None = Field(None, ge=0, le=MAX_PRIORITY)
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # Unset means "the embedded dev stack" (`taskline dev` / `make run` starts it).
    database_url: str | None = None
    redis_url: str | None = None
    redis_queue_name: str = Field("taskline", min_length=1, max_length=100)
    # REDIS_URL names one node of a Redis (or Valkey) cluster, to find the rest from.
    redis_cluster: bool = False

    worker_queue_maxsize: int = Field(10, ge=1, le=1000)
    # Above 1: `taskline worker` supervises this many worker processes (app/fleet.py).
    worker_processes: int = Field(1, ge=1, le=MAX_WORKER_PROCESSES)
    worker_shutdown_timeout_s: float = Field(
        30.0, ge=0, le=3600, validation_alias=_env("WORKER_SHUTDOWN_TIMEOUT")
    )
    worker_lease_s: float = Field(
        30.0, ge=1, le=3600, validation_alias=_env("WORKER_LEASE_SECONDS")
    )
    reconcile_interval_s: float = Field(
        5.0, gt=0, le=3600, validation_alias=_env("RECONCILE_INTERVAL_SECONDS")
    )
    reconcile_grace_s: float = Field(
        5.0, ge=0, le=3600, validation_alias=_env("RECONCILE_GRACE_SECONDS")
    )
    default_max_attempts: int = Field(
        3, ge=1, le=100, validation_alias=_env("DEFAULT_MAX_ATTEMPTS")
    )
    default_timeout_s: float = Field(
        300.0, gt=0, le=86400, validation_alias=_env("TASK_TIMEOUT_SECONDS")
    )
    retry_backoff_base_s: float = Field(
        1.0, gt=0, le=3600, validation_alias=_env("RETRY_BACKOFF_BASE_SECONDS")
    )
    retry_backoff_cap_s: float = Field(
        300.0, gt=0, le=86400, validation_alias=_env("RETRY_BACKOFF_CAP_SECONDS")
    )
    retention_days: float = Field(30, ge=0, le=36500, description="0 keeps finished tasks")
    queue_max_pending: int = Field(0, ge=0, le=1_000_000_000, description="per queue; 0: none")
    rate_limit: str = ""

    # Scheduling: order, fairness and fleet-wide limits (README "Scheduling").
    worker_queues: str = Field("default", min_length=1, max_length=2000)
    priority_aging_s: float = Field(
        0.0, ge=0, le=86400, validation_alias=_env("PRIORITY_AGING_SECONDS")
    )
    kind_rules: dict[str, KindRule] = Field(default_factory=dict)
    kind_concurrency: dict[str, int] = Field(default_factory=dict)
    fairness: Literal["off", "levels"] = "off"
    fairness_window_s: float = Field(
        600.0, gt=0, le=7 * 86400, validation_alias=_env("FAIRNESS_WINDOW_SECONDS")
    )
    fairness_levels: str = "1,6,16,26,36"
    fairness_weights: dict[str, float] = Field(default_factory=dict)
    # Schedules and workflows (README "Schedules", "Workflows").
    schedule_interval_s: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("SCHEDULE_INTERVAL_SECONDS")
    )
    schedule_misfire_grace_s: float = Field(
        10.0, ge=0, le=86400, validation_alias=_env("SCHEDULE_MISFIRE_GRACE_SECONDS")
    )
    schedule_catch_up_max: int = Field(100, ge=1, le=10_000)
    workflow_max_steps: int = Field(100, ge=1, le=10_000)
    workflow_max_group: int = Field(1000, ge=1, le=10_000)

    taskline_handlers: str = ""

    # Topics and HTTP consumers (README "Topics and HTTP consumers").
    # Unset: a key is made once and kept in PostgreSQL, shared by every API process.
    receipt_handle_secret: SecretStr | None = None
    long_poll_max_waiters: int = Field(100, ge=1, le=10_000)
    # Results, waiting and the event stream (README "Wait for results").
    result_max_bytes: int = Field(1024 * 1024, ge=1, le=256 * 1024 * 1024)
    event_stream_max_entries: int = Field(10_000, ge=100, le=10_000_000)
    events_subscriber_queue: int = Field(1000, ge=1, le=100_000)
    events_heartbeat_s: float = Field(
        15.0, gt=0, le=3600, validation_alias=_env("EVENTS_HEARTBEAT_SECONDS")
    )
    kind_max_backlog: dict[str, int] = Field(default_factory=dict)
    # The gateway and the `http` kind (README "Gateway").
    gateway_target_base_url: str = Field("", max_length=2000)
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8001, ge=1, le=65535)
    gateway_paths: str = Field("", max_length=100_000)
    gateway_path_prefixes: str = Field("", max_length=100_000)
    gateway_listed_priority: int = Field(9, ge=0, le=MAX_PRIORITY)
    gateway_default_priority: int = Field(0, ge=0, le=MAX_PRIORITY)
    gateway_normalize_paths: bool = True
    gateway_pass_through: str = Field("/health", max_length=100_000)
    gateway_wait_s: float = Field(
        60.0, gt=0, le=3600, validation_alias=_env("GATEWAY_WAIT_SECONDS")
    )
    gateway_ttl_s: float = Field(
        300.0, gt=0, le=86400, validation_alias=_env("GATEWAY_TTL_SECONDS")
    )
    gateway_retry_on: str = "5xx,connect"
    gateway_max_body_bytes: int = Field(512 * 1024, ge=1, le=64 * 1024 * 1024)
    gateway_max_request_bytes: int = Field(128 * 1024, ge=0, le=MAX_GATEWAY_REQUEST_BYTES)
    gateway_connect_timeout_s: float = Field(
        5.0, gt=0, le=300, validation_alias=_env("GATEWAY_CONNECT_TIMEOUT_SECONDS")
    )
    gateway_read_timeout_s: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("GATEWAY_READ_TIMEOUT_SECONDS")
    )
    http_allowed_hosts: str = Field("", max_length=100_000)

    # Access control (README "Access control"). `auth` comes before the fields
    # whose checks depend on it: pydantic validates in this order.
    auth: Literal["none", "keys"] = "none"
    allow_unauthenticated: bool = False
    auth_pepper: SecretStr | None = Field(None, validate_default=True)
    metrics_token: SecretStr | None = None
    cors_origins: str = Field("", max_length=4000)

    # Logs (README "Logs").
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    db_pool_size: int = Field(10, ge=1, le=200)
    # `transaction`: DATABASE_URL is a pooler in transaction mode (PgBouncer), so
    # no statement may rely on the server connection of the one before it.
    database_pooler: Literal["none", "transaction"] = "none"
    # `off`: a claim does not wait for its WAL flush (tasks/repository/claims.py).
    claim_synchronous_commit: Literal["on", "off"] = "off"

    data_dir: Path = Field(Path(".taskline"), validation_alias=_env("TASKLINE_DATA_DIR"))
    embedded_pg_port: int = Field(54329, ge=1, le=65535)
    embedded_redis_port: int = Field(63799, ge=1, le=65535)

    # Test hook for the "API died between commit and push" fault: the row is
    # committed and the doorbell is never rung. Never set it in production.
    fault_skip_push: bool = Field(False, validation_alias=_env("TASKLINE_FAULT_SKIP_PUSH"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_pooler", "claim_synchronous_commit", mode="before")
    @classmethod
    def _lower_choice(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_url(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        url = info.data.get("redis_url")
        if not url:
            raise ValueError("needs REDIS_URL: one node of the cluster (no embedded cluster)")
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError("needs a redis:// or rediss:// REDIS_URL (no unix socket)")
        if re.search(r"^[a-z]+://[^/]*/(0*[1-9][0-9]*)/?(\?|$)", url):
            raise ValueError("a cluster has database 0 only: drop the /N from REDIS_URL")
        if re.search(r"[{}]", str(info.data.get("redis_queue_name", ""))):
            raise ValueError("REDIS_QUEUE_NAME must not hold { or } (they set key hash tags)")
        return value

    @field_validator("taskline_handlers")
    @classmethod
    def _module_paths(cls, value: str) -> str:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"{name!r} is not a module path")
        return value

    @field_validator("receipt_handle_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("receipt_handle_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_form(cls, value: str) -> str:
        if value.strip():
            parse_rate_limit(value)
        return value

    @field_validator("worker_queues")
    @classmethod
    def _queue_names(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names or not all(re.fullmatch(QUEUE_PATTERN, name) for name in names):
            raise ValueError("must be queue names separated by commas (letters, digits, _ . -)")
        return value

    @field_validator("kind_concurrency")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, limit in value.items():
            if not 1 <= limit <= 100_000:
                raise ValueError(f"limit of {kind!r} must be 1..100000")
        return value

    @field_validator("kind_max_backlog")
    @classmethod
    def _backlog_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, limit in value.items():
            if not 0 <= limit <= 10_000_000:
                raise ValueError(f"backlog of {kind!r} must be 0..10000000")
        return value

    @field_validator("gateway_target_base_url")
    @classmethod
    def _target_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", value):
            raise ValueError("must be an http:// or https:// URL without query or user")
        return value.rstrip("/")

    @field_validator("gateway_paths", "gateway_path_prefixes", "gateway_pass_through")
    @classmethod
    def _path_list(cls, value: str) -> str:
        if not all(path.startswith("/") for path in split_list(value)):
            raise ValueError("must be paths starting with / separated by commas")
        return value

    @field_validator("gateway_retry_on")
    @classmethod
    def _retry_reasons(cls, value: str) -> str:
        if not set(split_list(value)) <= set(GATEWAY_RETRY_REASONS):
            raise ValueError(f"must name some of {', '.join(GATEWAY_RETRY_REASONS)}")
        return value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _host_list(cls, value: str) -> str:
        for entry in split_list(value):
            if not re.fullmatch(r"([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?", entry):
                raise ValueError(f"{entry!r} is not a host or host:port")
        return value

    @field_validator("fairness_levels")
    @classmethod
    def _level_thresholds(cls, value: str) -> str:
        parse_levels(value)
        return value

    @field_validator("fairness_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        for owner, weight in value.items():
            if not 0 < weight <= 1_000_000:
                raise ValueError(f"weight of {owner!r} must be above 0")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _lower_auth(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("auth_pepper", "metrics_token")
    @classmethod
    def _auth_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            value = None
        if value is None and info.field_name == "auth_pepper" and info.data.get("auth") == "keys":
            raise ValueError("required with AUTH=keys (make one: openssl rand -hex 32)")
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in split_list(value):
            if origin != "*" and not re.fullmatch(ORIGIN_PATTERN, origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @cached_property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(split_list(self.cors_origins)))

    def unauthenticated_exposure(self) -> str | None:
        """Why the API must not start: AUTH=none on an address beyond loopback
        without ALLOW_UNAUTHENTICATED. None when it may."""
        if self.auth != "none" or self.allow_unauthenticated or is_loopback(self.api_host):
            return None
        return (
            f"API_HOST={self.api_host} is not a loopback address and AUTH=none: set AUTH=keys,"
            " or ALLOW_UNAUTHENTICATED=true to serve without access control"
        )

    @cached_property
    def queues(self) -> tuple[str, ...]:
        """WORKER_QUEUES in the order a worker serves them."""
        names = (part.strip() for part in self.worker_queues.split(","))
        return tuple(dict.fromkeys(name for name in names if name))

    @cached_property
    def level_thresholds(self) -> tuple[int, ...]:
        return parse_levels(self.fairness_levels)

    @cached_property
    def rate_limit_per_s(self) -> tuple[float, float] | None:
        """(tokens per second, burst), or None when unlimited."""
        return parse_rate_limit(self.rate_limit) if self.rate_limit.strip() else None

    @cached_property
    def handler_modules(self) -> tuple[str, ...]:
        return tuple(filter(None, (part.strip() for part in self.taskline_handlers.split(","))))

    @property
    def db_url(self) -> str:
        return self.database_url or (
            f"postgresql+asyncpg://postgres@127.0.0.1:{self.embedded_pg_port}/taskline"
        )

    @property
    def cache_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"


def split_list(text: str) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]: a comma-separated setting's entries."""
    return [part.strip() for part in text.split(",") if part.strip()]


MIN_SECRET_CHARS = 32
ORIGIN_PATTERN = r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; anything else (0.0.0.0, a name) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def parse_levels(text: str) -> tuple[int, ...]:
    """`1,6,16,26,36`: the recent-task counts at which levels 1, 2, ... begin."""
    try:
        thresholds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError("must be increasing whole numbers separated by commas") from None
    if not thresholds or thresholds[0] < 1 or list(thresholds) != sorted(set(thresholds)):
        raise ValueError("must be increasing whole numbers separated by commas, from 1")
    if len(thresholds) > MAX_PRIORITY:
        raise ValueError(f"at most {MAX_PRIORITY} levels")
    return thresholds


_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate_limit(text: str) -> tuple[float, float]:
    """`100/s`, `6000/m burst 200`: tokens per second and bucket size."""
    parts = text.split()
    try:
        count, per = parts[0].split("/")
        rate_per_s = float(count) / _PER[per]
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "burst"):
            raise ValueError
        burst = float(parts[2]) if len(parts) == 3 else float(count)
        if rate_per_s <= 0 or burst < 1:
            raise ValueError
    except (ValueError, KeyError, IndexError):
        raise ValueError("must look like '100/s' or '100/s burst 200' (per s, m or h)") from None
    return rate_per_s, burst


_ENV_NAMES = {
    "worker_shutdown_timeout_s": "WORKER_SHUTDOWN_TIMEOUT",
    "worker_lease_s": "WORKER_LEASE_SECONDS",
    "reconcile_interval_s": "RECONCILE_INTERVAL_SECONDS",
    "reconcile_grace_s": "RECONCILE_GRACE_SECONDS",
    "data_dir": "TASKLINE_DATA_DIR",
    "default_max_attempts": "DEFAULT_MAX_ATTEMPTS",
    "default_timeout_s": "TASK_TIMEOUT_SECONDS",
    "retry_backoff_base_s": "RETRY_BACKOFF_BASE_SECONDS",
    "retry_backoff_cap_s": "RETRY_BACKOFF_CAP_SECONDS",
    "fault_skip_push": "TASKLINE_FAULT_SKIP_PUSH",
    "priority_aging_s": "PRIORITY_AGING_SECONDS",
    "fairness_window_s": "FAIRNESS_WINDOW_SECONDS",
    "schedule_interval_s": "SCHEDULE_INTERVAL_SECONDS",
    "schedule_misfire_grace_s": "SCHEDULE_MISFIRE_GRACE_SECONDS",
    "events_heartbeat_s": "EVENTS_HEARTBEAT_SECONDS",
    "gateway_wait_s": "GATEWAY_WAIT_SECONDS",
    "gateway_ttl_s": "GATEWAY_TTL_SECONDS",
    "gateway_connect_timeout_s": "GATEWAY_CONNECT_TIMEOUT_SECONDS",
    "gateway_read_timeout_s": "GATEWAY_READ_TIMEOUT_SECONDS",
}


def env_name(field: str) -> str:
    """The environment variable a settings field is read from."""
    return _ENV_NAMES.get(field, field).upper()


def describe_error(error: ValidationError) -> str:
    """The first problem as one line: `invalid setting NAME: reason`."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    return f"invalid setting {env_name(field)}: {first['msg']}"


def describe_unparsable(error: SettingsError) -> str:
    found = re.search(r'field "(\w+)"', str(error))
    field = found.group(1) if found else "?"
    return f"invalid setting {env_name(field)}: not valid JSON"


def load_settings(**overrides: object) -> Settings:
    """Read settings, or stop the program with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problem = describe_error(error)
    except SettingsError as error:  # a JSON-valued variable that is not JSON
        problem = describe_unparsable(error)
    print(f"taskline: {problem}", file=sys.stderr)
    raise SystemExit(2)
