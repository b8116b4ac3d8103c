"""Which path is passed through, and at which priority the others are queued."""

from __future__ import annotations

from app.config import Settings
from gateway.paths import PathRules


def rules(**values: object) -> PathRules:
    return PathRules.from_settings(Settings(_env_file=None, **values))  # type: ignore[call-arg]


def test_listed_paths_go_behind_the_others_by_default() -> None:
    found = rules(gateway_paths="/report, /export/all", gateway_path_prefixes="/batch/,/v1/bulk")
    assert found.priority("/report") == 9 and found.priority("/export/all") == 9
    assert found.priority("/batch/a/b") == 9 and found.priority("/v1/bulk-import") == 9
    assert found.priority("/orders") == 0 and found.priority("/report/x") == 0
    assert found.priority("/batchy") == 0


def test_swapping_the_priorities_gives_the_opposite_mode() -> None:
    found = rules(gateway_paths="/checkout", gateway_listed_priority=0, gateway_default_priority=9)
    assert (found.priority("/checkout"), found.priority("/anything")) == (0, 9)


def test_a_trailing_slash_is_ignored_unless_told_otherwise() -> None:
    found = rules(gateway_paths="/report/", gateway_path_prefixes="/batch/")
    assert found.priority("/report") == 9 and found.priority("/report/") == 9
    assert found.priority("/batch") == 9  # the prefix's own path
    exact = rules(gateway_paths="/report/", gateway_normalize_paths=False)
    assert exact.priority("/report/") == 9 and exact.priority("/report") == 0


def test_pass_through_paths_and_the_targets_docs_skip_the_queue() -> None:
    found = rules(gateway_pass_through="/health,/status/")
    for path in ("/health", "/health/", "/status", "/docs", "/redoc", "/openapi.json"):
        assert found.passes_through(path), path
    assert not found.passes_through("/healthz") and not found.passes_through("/orders")
    assert rules().passes_through("/health")  # the default
    assert not rules(gateway_pass_through="").passes_through("/health")
