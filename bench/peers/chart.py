"""Draw the comparison's chart: one panel per column of the report, a bar per
system at its median, the whiskers its range over the rounds.

    bench/.peers-venv/bin/python bench/peers/chart.py peers-DATE.json peers-DATE.png

Run by report.py in the peers' virtualenv, whose matplotlib the project does not need.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TASKLINE, PEER = "#2a6f97", "#b0b7bf"
LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "lw": 0}  # over a whisker cut short


def label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def panel(axis: Any, table: dict, key: str, title: str, higher: bool) -> None:
    """One bar per system that has `key`: its median, whiskers to its range, the
    median written past the whisker; a log scale where values span a hundredfold.
    The axis ends past the largest median, not the largest round: one slow round
    (an httpx p99 of seconds) would leave every other bar a sliver. A whisker
    cut there says where it ends."""
    names = [name for name, row in table.items() if row.get(key)]
    if not names:  # a run with --systems or --workloads left this column empty
        axis.set_visible(False)
        return
    values = [table[name][key] for name in names]
    middles = [median(found) for found in values]
    errors = [[m - min(v) for m, v in zip(middles, values, strict=True)],
              [max(v) - m for m, v in zip(middles, values, strict=True)]]  # fmt: skip
    colors = [TASKLINE if name.startswith("Taskline") else PEER for name in names]
    axis.barh(names, middles, xerr=errors, color=colors, capsize=3)
    axis.invert_yaxis()
    axis.set_title(f"{title} ({'higher' if higher else 'lower'} is better)", fontsize=10)
    axis.tick_params(labelsize=8)
    log_scale = max(middles) > 100 * min(middles)  # else the smaller bars vanish
    if log_scale:
        axis.set_xscale("log")
    end = max(middles) * (10 if log_scale else 1.6)
    axis.set_xlim(right=end)
    for index, (middle, found) in enumerate(zip(middles, values, strict=True)):
        text, at = label(middle), max(found)
        if at > end:  # the whisker runs off the panel
            text, at = f"{text} (rounds up to {label(at)})", middle
        axis.annotate(text, (at, index), xytext=(5, -3), textcoords="offset points",
                      fontsize=8, bbox=LABEL_BOX)  # fmt: skip


def draw(summary: dict, out: Path) -> None:
    columns, table = summary["columns"], summary["table"]
    panels = [*columns, ["wrk", "req_per_s", "Taskline, wrk -c32: req/s", True]]
    rows = (len(panels) + 2) // 3
    figure, axes = plt.subplots(rows, 3, figsize=(15, 3.6 * rows))
    for axis, (workload, measure, title, higher) in zip(axes.flat, panels, strict=False):
        panel(axis, table, f"{workload}.{measure}", title, higher)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(summary["title"], fontsize=12)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    draw(data["summary"], Path(sys.argv[2]))
