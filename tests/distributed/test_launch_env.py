"""What the engines are launched with for several processes and nodes (no process is started)."""

from __future__ import annotations

import json

import pytest

from domainft.engines import get_engine
from domainft.errors import EngineError
from domainft.render import render

CLUSTER = {"nnodes": 2, "nproc_per_node": 4, "master_addr": "10.0.0.7", "master_port": 29555}


def test_single_process_launch_has_no_torchrun(plan_for):
    assert get_engine("llamafactory").train_launch(plan_for()).env == {}


def test_two_processes_on_one_node_force_torchrun(plan_for, monkeypatch):
    monkeypatch.delenv("NODE_RANK", raising=False)
    env = get_engine("llamafactory").train_launch(plan_for(distributed={"nproc_per_node": 2})).env
    assert env == {"FORCE_TORCHRUN": "1", "NNODES": "1", "NODE_RANK": "0", "NPROC_PER_NODE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_deepspeed_alone_forces_torchrun(plan_for):
    env = get_engine("llamafactory").train_launch(plan_for(distributed={"deepspeed": 2})).env
    assert env["FORCE_TORCHRUN"] == "1" and env["NPROC_PER_NODE"] == "1"


@pytest.mark.parametrize("rank", ["0", "1"])
def test_node_rank_comes_from_the_environment_at_launch(plan_for, monkeypatch, rank):
    plan = plan_for(distributed=CLUSTER)
    monkeypatch.setenv("NODE_RANK", rank)
    env = get_engine("llamafactory").train_launch(plan).env
    assert env == {"FORCE_TORCHRUN": "1", "NNODES": "2", "NODE_RANK": rank, "NPROC_PER_NODE": "4",
                   "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29555"}


def test_the_launch_env_wins_over_inherited_rendezvous_variables(plan_for, monkeypatch, tmp_path):
    # clean_env passes NNODES etc. through from the shell; the recipe's values must win.
    from domainft.process import clean_env

    monkeypatch.setenv("NNODES", "9")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    launch = get_engine("llamafactory").train_launch(plan_for(distributed=CLUSTER))
    env = {**clean_env(tmp_path), **launch.env}
    assert (env["NNODES"], env["MASTER_PORT"], env["NODE_RANK"]) == ("2", "29555", "1")


def test_several_nodes_without_node_rank_is_one_line_error(plan_for, monkeypatch):
    monkeypatch.delenv("NODE_RANK", raising=False)
    with pytest.raises(EngineError, match="NODE_RANK is not set") as err:
        get_engine("llamafactory").train_launch(plan_for(distributed=CLUSTER))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["2", "-1", "one"])
def test_node_rank_out_of_range_is_refused(plan_for, monkeypatch, bad):
    monkeypatch.setenv("NODE_RANK", bad)
    with pytest.raises(EngineError, match="not a node rank"):
        get_engine("llamafactory").train_launch(plan_for(distributed=CLUSTER))


def test_axolotl_several_nodes_use_torchrun_rendezvous(plan_for):
    argv = get_engine("axolotl").train_launch(plan_for("axolotl", distributed=CLUSTER)).argv
    assert argv[argv.index("--launcher") + 1] == "torchrun"
    assert {"--nnodes=2", "--nproc_per_node=4", "--rdzv_endpoint=10.0.0.7:29555", "--rdzv_backend=c10d"} <= set(argv)


# ---------------------------------------------------------------- ZeRO JSON (Axolotl's DeepSpeed needs a GPU)


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
@pytest.mark.parametrize("stage", [2, 3])
def test_rendered_zero_json_is_sane(plan_for, engine, stage):
    eng = get_engine(engine)
    plan = plan_for(engine, distributed={"deepspeed": stage})
    files = render(plan)
    ds = json.loads(files[f"ds_zero{stage}.json"])
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage
    # Values the HF Trainer integration fills from the training arguments, so they never disagree.
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert ds[key] == "auto", key
    assert ds["bf16"]["enabled"] == "auto" and ds["fp16"]["enabled"] == "auto"
    # No CPU/NVMe offload by default: it trades a lot of speed for memory and needs pinned host RAM.
    assert "offload_optimizer" not in zero and "offload_param" not in zero
    if stage == 3:
        # Without this the saved adapter/model would be empty shards under ZeRO-3.
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
        for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
            assert zero[key] == "auto", key
    else:
        assert zero["contiguous_gradients"] is True and zero["reduce_scatter"] is True
    # The engine config points at the rendered file, relative to the folder it is run from.
    config = eng.config(files)
    assert config["deepspeed"] == f"ds_zero{stage}.json"
