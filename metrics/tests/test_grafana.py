"""deploy/grafana/taskline.json asks only for metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from metrics.collector import SnapshotCollector
from metrics.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exposed() -> set[str]:
    names = set()
    for family in SnapshotCollector(Snapshot()).collect():
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in SUFFIXES)
    return names


def test_every_panel_queries_metrics_that_exist() -> None:
    board = json.loads((ROOT / "deploy" / "grafana" / "taskline.json").read_text())
    expressions = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(expressions) >= 10
    used = {name for e in expressions for name in re.findall(r"\btaskline_[a-z_]+", e)}
    assert used and used <= exposed(), used - exposed()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
