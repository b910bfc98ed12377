"""README's "Use the engines directly", run as a user types it: every bash block of the section in order, in one
shell, from a scratch copy of the checkout (its .venv linked in), the rendered folders moved out of it before
the engines train. If the README changes, this runs what it says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, bash_blocks

SECTION = "Use the engines directly"


def scratch_checkout(dest: Path) -> Path:
    """The checkout's tracked files (what a fresh clone has), with the installed .venv linked in, and ../shared (the
    corpora the seed recipes read) beside it, as beside every clone of this repository."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    (dest / ".venv").symlink_to(REPO / ".venv")
    shared = dest.parent / "shared"
    if (REPO.parent / "shared").is_dir() and not shared.exists():
        shared.symlink_to(REPO.parent / "shared")
    return dest


def run_blocks(blocks: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def readme_blocks() -> list[str]:
    return bash_blocks((REPO / "README.md").read_text(encoding="utf-8"), SECTION)


@pytest.mark.e2e
def test_readme_by_hand_commands_run_as_written(tmp_path):
    checkout = scratch_checkout(tmp_path / "checkout")
    blocks = readme_blocks()
    assert len(blocks) >= 4, "the section lost its command blocks"
    proc = run_blocks(blocks, checkout, timeout=2400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]

    for engine in ("lf", "ax"):  # trained by the engine's own CLI in the moved folder
        adapter = tmp_path / "by-hand" / engine / "output"
        assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA", engine
        assert (adapter / "adapter_model.safetensors").exists(), engine
    assert not (checkout / "runs" / "demo-coal-smollm2" / "train").exists(), "by hand, nothing trains in the run"
    by_hand = checkout / "runs" / "demo-coal-smollm2" / "eval" / "by_hand"
    for label in ("base", "tuned"):
        results = json.loads(next((by_hand / label).rglob("results_*.json")).read_text(encoding="utf-8"))
        assert "coal_safety_qa" in results["results"], label
    script = (checkout / "lm_eval.sh").read_text(encoding="utf-8")
    assert f"peft={tmp_path / 'by-hand' / 'lf' / 'output'}" in script
    assert "coal_safety" in proc.stdout  # the minimal call's results table


def test_a_broken_readme_command_fails_the_check(tmp_path):
    """The check is real: a README whose first command is mistyped fails it (fast: it stops there)."""
    checkout = scratch_checkout(tmp_path / "checkout")
    blocks = readme_blocks()
    broken = [blocks[0].replace("domainft render", "domainft rendr", 1), *blocks[1:]]
    proc = run_blocks(broken, checkout, timeout=300)
    assert proc.returncode != 0
    assert "rendr" in proc.stderr
    assert not (tmp_path / "by-hand").exists()


CLUSTER_SECTION = "On a Slurm cluster"


@pytest.mark.e2e
def test_readme_cluster_commands_run_as_written(tmp_path, slurm_cluster, monkeypatch):
    """README's "On a Slurm cluster" blocks, verbatim, against the one-node Slurm the fixture starts (its config
    is the one thing the shell is given beyond a user's)."""
    checkout = scratch_checkout(tmp_path / "checkout")
    blocks = bash_blocks((REPO / "README.md").read_text(encoding="utf-8"), CLUSTER_SECTION)
    assert len(blocks) == 2, "the section lost its command blocks"
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    proc = run_blocks(blocks, checkout, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "#SBATCH --ntasks-per-node=1" in proc.stdout  # the script, as `cat` showed it
    by_hand = tmp_path / "cluster" / "lf"
    assert (by_hand / "output" / "adapter_model.safetensors").exists()
    run = checkout / "runs" / "demo-coal-smollm2"
    assert (run / "train" / "llamafactory" / "adapter_model.safetensors").exists()
    for folder in (by_hand, run / "render" / "llamafactory"):  # one job each, trained on its one node
        (job,) = [p for p in (folder / "logs").iterdir() if p.is_dir()]
        assert (job / "node-0.exit").read_text().strip() == "0" and (job / "exit").read_text().strip() == "0"
    assert slurm_cluster.jobs() == []
