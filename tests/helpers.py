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
COAL_DOCS = DATA / "coal" / "docs"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800,
            max_file_bytes: int | None = None) -> CliResult:
    """Run `domainft ARGS` as a user would: a fresh process, real exit code, real output.

    `max_file_bytes` caps the size of any file the process writes (RLIMIT_FSIZE): writes past it fail
    with EFBIG, the way a full disk fails them with ENOSPC.
    """

    def limit_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    proc = subprocess.run(
        [sys.executable, "-m", "domainft.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        preexec_fn=limit_files if max_file_bytes else None,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """The contract for bad input: non-zero exit, no traceback, and the error as one line (the last on
    stderr, after any progress lines) naming the place."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def tiny_recipe_data(name: str, engine: str, files: list, *, max_steps: int, save_steps: int, **sections) -> dict:
    """A recipe dict on the tiny random Llama (seconds per step); `sections` merge into the top-level sections."""
    data = {
        "name": name,
        "engine": engine,
        "model": {"base": "embedded:tiny-random-llama", "chat_template": "smollm2"},
        "dataset": {"files": [str(f) for f in files]},
        "training": {"max_steps": max_steps, "precision": "fp32", "logging_steps": 1, "save_steps": save_steps},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return data


def bash_blocks(markdown: str, section: str | None = None) -> list[str]:
    """The ```bash blocks of a Markdown text, in order; only those under the `## section` heading when given."""
    import re

    if section is not None:
        head = f"\n## {section}\n"
        assert head in markdown, f"no section '## {section}'"
        markdown = markdown.split(head, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M)
