"""Several processes on CPU through LLaMA-Factory's torchrun path (gloo), the stand-in for several GPUs and
nodes, and DeepSpeed ZeRO on CPU. Each run goes through `domainft train` in a fresh process, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import DATA, run_cli

from domainft.engines.venv import ensure_engine

pytestmark = pytest.mark.e2e
STEPS = 3
DEMO_QA = DATA / "coal" / "demo_qa.jsonl"


@pytest.fixture
def write_recipe(tmp_path: Path, recipe_data, free_port):
    """write_recipe(**distributed): the tiny-model recipe with these distributed settings, as a YAML file."""

    def write(**distributed) -> Path:
        path = tmp_path / "recipe.yaml"
        data = recipe_data(distributed={"master_addr": "127.0.0.1", "master_port": free_port(), **distributed})
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def _train_log(run_dir: Path) -> str:
    return (run_dir / "logs" / "train-llamafactory.log").read_text(errors="replace")


def _ranks(log: str) -> set[tuple[int, int]]:
    """(rank, world size) of every process that LLaMA-Factory started."""
    return {(int(r), int(w)) for r, w in re.findall(r"Process rank: (\d+), world size: (\d+), device: cpu", log)}


def _assert_trained_adapter(train_dir: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(train_dir / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    # Non-empty shards (ZeRO-3 gathers them for saving) and trained: B starts at zero.
    assert lora_b and all(t.numel() > 0 for t in lora_b)
    assert sum(float(t.abs().sum()) for t in lora_b) > 0


def _epochs_done(train_dir: Path) -> float:
    return json.loads((train_dir / "trainer_state.json").read_text())["epoch"]


@pytest.fixture(scope="module", autouse=True)
def _engine():
    ensure_engine("llamafactory")


def test_two_processes_on_one_node(tmp_path, write_recipe):
    recipe = write_recipe(nproc_per_node=2)
    run_dir = tmp_path / "run"
    result = run_cli("train", recipe, "--run-dir", run_dir)
    assert result.code == 0, result.stderr[-2000:]
    log = _train_log(run_dir)
    assert "Initializing 2 distributed tasks at: 127.0.0.1:" in log
    assert _ranks(log) == {(0, 2), (1, 2)}
    train_dir = run_dir / "train" / "llamafactory"
    _assert_trained_adapter(train_dir)
    # Each step consumed one example per rank: 3 steps x 2 ranks of 24 pairs is a quarter epoch (one rank: an eighth).
    n_pairs = len(DEMO_QA.read_text().splitlines())
    assert _epochs_done(train_dir) == pytest.approx(STEPS * 2 / n_pairs)


def test_two_nodes_on_loopback_take_their_rank_from_node_rank(tmp_path, write_recipe):
    """Two `domainft train` commands, one per "node", NODE_RANK from the environment, as on a cluster."""
    recipe = write_recipe(nnodes=2, nproc_per_node=1)
    argv = [sys.executable, "-m", "domainft.cli", "train", str(recipe), "--run-dir"]
    procs = {
        rank: subprocess.Popen([*argv, str(tmp_path / f"node{rank}")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "NODE_RANK": str(rank)})
        for rank in (1, 0)  # the worker first: it waits for the master at the rendezvous
    }
    outputs = {rank: proc.communicate(timeout=600)[0] for rank, proc in procs.items()}
    assert procs[0].returncode == 0, outputs[0][-2000:]
    assert procs[1].returncode == 0 and "adapter is saved on node 0" in outputs[1], outputs[1][-2000:]
    for rank in (0, 1):
        log = _train_log(tmp_path / f"node{rank}")
        assert f"num nodes: 2, node rank: {rank}" in log
        assert _ranks(log) == {(rank, 2)}
        assert re.search(rf"rng_state_{rank}\.pth", "".join(
            str(p) for p in (tmp_path / f"node{rank}" / "train" / "llamafactory").rglob("rng_state_*")))
    # Only the master (global rank 0) writes the adapter.
    _assert_trained_adapter(tmp_path / "node0" / "train" / "llamafactory")
    assert not (tmp_path / "node1" / "train" / "llamafactory" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("stage,nproc", [(2, 1), (3, 2)])
def test_deepspeed_zero_on_cpu(tmp_path, write_recipe, stage, nproc):
    recipe = write_recipe(deepspeed=stage, nproc_per_node=nproc)
    run_dir = tmp_path / "run"
    result = run_cli("train", recipe, "--run-dir", run_dir)
    assert result.code == 0, result.stderr[-2000:]
    train_dir = run_dir / "train" / "llamafactory"
    _assert_trained_adapter(train_dir)
    # DeepSpeed's own checkpoint layout: one optimizer-state shard per rank.
    shards = sorted(p.name for p in (train_dir / f"checkpoint-{STEPS}" / f"global_step{STEPS}").iterdir())
    assert [s for s in shards if "optim_states" in s] == [
        f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(nproc)]
    assert _ranks(_train_log(run_dir)) == {(r, nproc) for r in range(nproc)}
