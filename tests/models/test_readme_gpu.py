"""README's "On a GPU machine", run as written from a scratch checkout, against a local hub that serves a tiny model
under the seed recipe's own hub id (the real weights are 3.6 GB): the pull and validate block verbatim, the `run`
block as a dry run (training needs a CUDA GPU and the seed's teacher a key), and the validate output the section
shows, line by line, on a machine without a GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from helpers import REPO, bash_blocks
from test_readme_by_hand import scratch_checkout

from domainft.chat_formats import chat_format
from domainft.engines import get_engine
from domainft.models.embedded import materialize
from domainft.needs import cuda_gpus

SECTION = "On a GPU machine"
SEED = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def _blocks() -> list[str]:
    return bash_blocks((REPO / "README.md").read_text(encoding="utf-8"), SECTION)


def _shell(block: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, **env}, timeout=600)


@pytest.fixture
def seed_repo(hub):
    """The tiny model under the seed's id, its tokenizer config carrying the DeepSeek-R1 turn markers the recipe's
    chat template writes (so validate's tokenizer check has something real to pass)."""
    if SEED not in hub.repos:
        tiny = materialize("embedded:tiny-random-llama")
        template = " ".join([*get_engine("llamafactory").chat_templates()["deepseekr1"],
                             *chat_format("deepseekr1").stop])
        config = json.loads((tiny / "tokenizer_config.json").read_text()) | {"chat_template": template}
        hub.add_repo(SEED, tiny, files={"tokenizer_config.json": json.dumps(config).encode()})
    return hub.repos[SEED]


def test_the_pull_and_validate_block_runs_as_written(seed_repo, hub_env, tmp_path):
    checkout = scratch_checkout(tmp_path / "checkout")
    pull_block, run_block = _blocks()
    done = _shell(pull_block, checkout, hub_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pinned to {seed_repo.sha}" in done.stdout and "valid for llamafactory" in done.stdout
    assert "not pulled" not in done.stderr and "from the model's files" in done.stderr
    dry = _shell(run_block.strip() + " --dry-run", checkout, hub_env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert re.search(r"model\s+│\s+skipped", dry.stdout), dry.stdout  # pinned and pulled: nothing to fetch


@pytest.mark.skipif(bool(cuda_gpus()), reason="the README shows validate's output on a machine without a GPU")
def test_the_validate_output_shown_is_what_validate_says(hub_env, tmp_path):
    text = (REPO / "README.md").read_text(encoding="utf-8").split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    shown = re.search(r"```\n\$ domainft (validate \S+)\n(.*?)```", text, re.S)
    checkout = scratch_checkout(tmp_path / "checkout")
    done = _shell(".venv/bin/domainft " + shown.group(1), checkout, hub_env)
    said = (done.stderr + done.stdout).strip().splitlines()
    free = re.compile(r"[\d.]+ GB free here(: NOT enough)?")  # the one value that is this machine's
    assert [free.sub("", ln) for ln in said] == [free.sub("", ln) for ln in shown.group(2).strip().splitlines()]
