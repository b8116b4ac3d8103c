"""Every metric /metrics exposes has its row in the README's metrics table."""

from __future__ import annotations

import re
from pathlib import Path

from metrics.collector import SnapshotCollector
from metrics.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]


def test_every_metric_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(taskline_[a-z_]+)` \|", section, re.MULTILINE))
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in SnapshotCollector(Snapshot()).collect()
    }
    assert exposed == documented, (exposed - documented, documented - exposed)
