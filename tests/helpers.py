"""Helpers for tests: the repo's folders, a CLI runner, the one-line error contract. Import as `helpers`."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
DATA = REPO / "data"
SHARED_COAL = REPO.parent / "shared" / "corpora" / "coal"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> CliResult:
    """Run `domainft ARGS` as a user would: a fresh process, real exit code, real output."""
    proc = subprocess.run(
        [sys.executable, "-m", "domainft.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """The contract for bad input: non-zero exit, one line on stderr naming the place, no traceback."""
    assert result.code != 0, result
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
