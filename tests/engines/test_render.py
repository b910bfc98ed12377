"""Rendering both engines: golden files, determinism, and every shipped recipe renders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from domainft import templating as R
from domainft.engines import NAMES as ENGINES
from domainft.engines import get_engine
from domainft.plan import make_plan
from domainft.recipe import load_recipe
from domainft.render import render
from domainft.render import render_checked as validate
from domainft.resources import home

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REPO = Path(__file__).resolve().parents[2]

# name -> recipe sections on top of the conftest defaults
VARIANTS = {
    "lora": {},
    "qlora_sharegpt_zero3": {
        "method": {"kind": "qlora", "target_modules": ["q_proj", "v_proj"], "rank": 16},
        "dataset": {"format": "sharegpt", "columns": {"messages": "conversations"},
                    "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}},
        "model": {"base": "embedded:tiny-random-llama", "system_prompt": "You answer coal-mine safety questions."},
        "training": {"epochs": 2.0, "learning_rate": 2.0e-5, "precision": "bf16", "packing": True, "val_size": 0.1,
                     "attention": "fa2", "liger_kernel": True},
        "distributed": {"deepspeed": 3, "nnodes": 2, "nproc_per_node": 4},
    },
    "full_overrides": {"method": {"kind": "full"}},
    # datagen's validation split becomes the engine's eval set; the source projects' weight decay
    "datagen_val": {"extract": {"inputs": ["docs"]}, "datagen": {"provider": "extractive"},
                    "training": {"weight_decay": 0.01, "eval_steps": 3}},
    # continued pre-training on the raw chunks, then SFT goes on from its adapter (full: from its weights)
    "datagen_pretrain": {"extract": {"inputs": ["docs"]}, "datagen": {"provider": "extractive"},
                         "method": {"pretrain": {"max_steps": 3, "learning_rate": 5.0e-4}}},
    "full_pretrain": {"extract": {"inputs": ["docs"]}, "datagen": {"provider": "extractive"},
                      "method": {"kind": "full", "pretrain": {"epochs": 2.0}}},
    # launch.sbatch and the folder README's sbatch step
    "slurm": {"distributed": {"launcher": "slurm", "nnodes": 4, "nproc_per_node": 8, "master_port": 29600,
                              "slurm": {"partition": "gpu", "account": "coal-lab", "time_limit": "12:00:00",
                                        "gpus_per_node": 8, "sbatch_lines": ["--exclusive", "--mem=0"]}}},
}
# Keys every engine on the HF Trainer spells the same: one replaces a rendered key, one adds a key.
OVERRIDES = {"seed": 7, "max_grad_norm": 0.5}


def _plan(plan_for, engine: str, variant: str, sharegpt_file: Path):
    sections = dict(VARIANTS[variant])
    if variant == "qlora_sharegpt_zero3":
        sections["dataset"] = {**sections["dataset"], "files": [str(sharegpt_file)]}
    if variant == "full_overrides":
        sections["engine_overrides"] = OVERRIDES
    return plan_for(engine, **sections)


def _portable(text: str, plan) -> str:
    """Machine paths -> placeholders, so golden files compare across checkouts."""
    for path, mark in ((plan.run_dir, "<RUN>"), (home(), "<HOME>"), (REPO, "<REPO>")):
        text = text.replace(str(path), mark)
    return re.sub(r"sha256 [0-9a-f]{16}", "sha256 <HASH>", text)  # the hash covers those paths too


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_golden(engine, variant, plan_for, sharegpt_file):
    plan = _plan(plan_for, engine, variant, sharegpt_file)
    files = validate(plan)
    for rel, text in sorted(files.items()):
        golden = GOLDEN / engine / variant / rel
        actual = _portable(text, plan)
        # the sharegpt fixture lives in tmp: only its name is stable
        actual = actual.replace(str(sharegpt_file.parent), "<DATA>")
        if os.environ.get("UPDATE_GOLDEN") == "1":
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(actual, encoding="utf-8")
        assert golden.exists(), f"no golden file {golden}; run with UPDATE_GOLDEN=1 and review the diff"
        assert actual == golden.read_text(encoding="utf-8"), f"{rel} differs from {golden}"
    listed = {p.relative_to(GOLDEN / engine / variant).as_posix() for p in (GOLDEN / engine / variant).rglob("*")
              if p.is_file()}
    assert listed == set(files)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_render_is_deterministic_and_writes_only_changes(engine, plan_for, sharegpt_file):
    plan = _plan(plan_for, engine, "qlora_sharegpt_zero3", sharegpt_file)
    first = render(plan)
    assert render(plan) == first
    assert len(R.write_tree(first, plan.render_dir)) == len(first)
    assert R.write_tree(render(plan), plan.render_dir) == []  # byte-identical rerun


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_rendered_values_parse_back_as_their_types(engine, plan_for):
    plan = plan_for(engine, training={"learning_rate": 1.0e-4, "max_steps": 3})
    cfg = get_engine(engine).config(render(plan))
    assert cfg["learning_rate"] == 1.0e-4 and isinstance(cfg["learning_rate"], float)  # not the string "1e-4"
    assert set(cfg) <= set(get_engine(engine).known()["config_keys"])


def test_overrides_replace_rendered_keys_once(plan_for):
    plan = plan_for("llamafactory", engine_overrides={"cutoff_len": 64, "lora_rank": 4})
    text = render(plan)["train.yaml"]
    assert text.count("cutoff_len:") == 1 and text.count("lora_rank:") == 1
    assert yaml.safe_load(text)["cutoff_len"] == 64


def test_template_syntax_in_recipe_values_stays_data(plan_for):
    plan = plan_for("llamafactory", model={"system_prompt": "{{ ''.__class__ }} {% raw %}"})
    cfg = get_engine("llamafactory").config(render(plan))
    assert cfg["default_system"] == "{{ ''.__class__ }} {% raw %}"


RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_shipped_recipe_renders(engine, path, tmp_path):
    recipe = load_recipe(path)
    plan = make_plan(recipe, engine=engine, run_dir=tmp_path)
    files = render(plan)
    for rel, text in files.items():
        assert R.parse_back(rel, text) is not None


@pytest.mark.parametrize("name", ["iso-r1-qwen7b", "iso-r1-qwen7b-axolotl", "coal-r1-qwen1.5b", "coal-r1-qwen1.5b-axolotl"])
def test_seed_recipes_render_the_source_projects_settings(name):
    """The ISO project's final settings (4-bit base, lr 1e-5, weight decay 0.01, eval loss on the held-out split
    every tenth of the steps) and CoalQA's (NF4 r64/alpha16/dropout 0.1, lr 2e-4, weight decay 0.01), in each engine's
    own spelling."""
    plan = make_plan(load_recipe(REPO / "recipes" / f"{name}.yaml"))
    engine = get_engine(plan.engine)
    config = engine.config(render(plan))
    lf = plan.engine == "llamafactory"
    four_bit = config["quantization_bit"] == 4 if lf else config["load_in_4bit"] is True
    assert four_bit and config["weight_decay"] == 0.01
    if name.startswith("iso"):
        assert config["learning_rate"] == 1.0e-5
        assert (config["lora_rank"], config["lora_alpha"]) == (16, 32) if lf else (config["lora_r"], config["lora_alpha"]) == (16, 32)
        assert config["eval_steps"] == 0.1  # a tenth of the steps, as a fraction
        if lf:
            assert config["eval_dataset"] and config["eval_strategy"] == "steps"
        else:
            assert config["test_datasets"][0]["path"] == "data/val.jsonl"
    else:
        assert config["learning_rate"] == 2.0e-4 and config["lora_dropout"] == 0.1
        assert (config["num_train_epochs"] if lf else config["num_epochs"]) == 6.0


@pytest.mark.parametrize("engine", ENGINES)
def test_system_prompt_in_the_user_turn_reaches_the_data_copies(engine, plan_for, sharegpt_file, tmp_path):
    """model.system_prompt_in user: each data copy in the folder opens its first user turn with the prompt (alpaca
    and sharegpt); the engine's system turn is the template's default; the source file is untouched; the training
    digest follows the prompt."""
    import json

    from domainft.engines.folder import write_folder
    from domainft.train import _training_digest

    model = {"system_prompt": "你是煤矿安全专家。", "system_prompt_in": "user"}
    plan = plan_for(engine, model=model)
    files = validate(plan)
    write_folder(plan, files, plan.render_dir)
    copy = next((plan.render_dir / "data").glob("*.jsonl"))
    first = json.loads(copy.read_text(encoding="utf-8").splitlines()[0])
    source = json.loads(plan.train_files[0].read_text(encoding="utf-8").splitlines()[0])
    assert first["instruction"] == "你是煤矿安全专家。\n\n" + source["instruction"] and first["output"] == source["output"]
    assert "its system prompt opening each first user turn" in files["README.md"]
    assert "你是煤矿安全专家" not in files[get_engine(engine).config_file]
    other = plan_for(engine, model={**model, "system_prompt": "另一个提示。"})
    assert _training_digest(other, files, plan.train_files) != _training_digest(plan, files, plan.train_files)  # same files, other data copies

    sharegpt = plan_for(engine, model=model, dataset={"files": [str(sharegpt_file)], "format": "sharegpt",
                                                      "columns": {"messages": "conversations"},
                                                      "tags": {"role_tag": "from", "content_tag": "value",
                                                               "user_tag": "human", "assistant_tag": "gpt"}})
    write_folder(sharegpt, validate(sharegpt), sharegpt.render_dir)
    chat = json.loads(next((sharegpt.render_dir / "data").glob("*.json")).read_text(encoding="utf-8"))[0]
    assert chat["conversations"][0]["value"] == "你是煤矿安全专家。\n\nQuestion 0?"


def test_ms_swift_opens_r1_answers_with_the_empty_think_block_out_of_the_loss(plan_for):
    """LLaMA-Factory and Axolotl put the empty think block after the assistant tag as context; ms-swift's deepseek_r1
    template writes nothing there, so its data copies open each answer with it and the loss skips it."""
    import json

    from domainft.chat_formats import EMPTY_THINK
    from domainft.engines.folder import data_bytes

    plan = plan_for("swift", model={"chat_template": "deepseekr1"})
    config = yaml.safe_load(render(plan)["sft.yaml"])
    assert config["loss_scale"] == "ignore_empty_think"
    first = json.loads(data_bytes(plan, plan.train_files[0]).decode().splitlines()[0])
    assert first["output"].startswith(EMPTY_THINK) and not first["output"][len(EMPTY_THINK):].startswith("<think>")
    thinking = plan_for("swift", model={"chat_template": "deepseekr1", "enable_thinking": True})
    assert data_bytes(thinking, thinking.train_files[0]) == thinking.train_files[0].read_bytes()
    assert "loss_scale" not in render(thinking)["sft.yaml"]
