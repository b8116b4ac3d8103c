"""The README's handler example, saved where the README says, passes the
project's own ruff and mypy --strict and registers its kinds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def handler_example() -> tuple[str, str]:
    """(the path it names in its first line, the code) of the first Python
    block of README's "Adding a handler"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Adding a handler", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "no Python example in Adding a handler"
    code = found.group(1)
    first = code.splitlines()[0]
    assert first.startswith("# ") and first.endswith(".py"), first
    return first[2:], code


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example saved as the README says, in a copy of the layout beside the
    project's own packages."""
    path, code = handler_example()
    assert path.startswith("handlers/"), path
    base = tmp_path_factory.mktemp("readme")
    target = base / path
    target.parent.mkdir(parents=True)
    (target.parent / "__init__.py").write_text((ROOT / "handlers" / "__init__.py").read_text())
    target.write_text(code)
    return target


def run(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_the_handler_example_passes_ruff(saved: Path) -> None:
    config = str(ROOT / "pyproject.toml")
    for check in (["check"], ["format", "--check"]):
        done = run(str(BIN / "ruff"), *check, "--config", config, str(saved), cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_handler_example_passes_mypy_strict(saved: Path) -> None:
    done = run(
        str(BIN / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--strict",
        "--no-incremental", str(saved), cwd=saved.parents[1], MYPYPATH=str(ROOT),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_handler_example_registers_its_kinds(saved: Path) -> None:
    module = ".".join(saved.relative_to(saved.parents[1]).with_suffix("").parts)
    script = (
        "import importlib, sys\n"
        "from tasks.handlers import registry\n"
        f"importlib.import_module({module!r})\n"
        "print(' '.join(registry.kinds()))\n"
    )
    base = saved.parents[1]
    done = run(sys.executable, "-c", script, cwd=base, PYTHONPATH=str(base))
    assert done.returncode == 0, done.stderr
    assert {"resize", "crunch"} <= set(done.stdout.split()), done.stdout
