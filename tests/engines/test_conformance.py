"""Conformance: every engine in the registry (`domainft.engines.NAMES`) passes the same suite.

Nothing here names an engine: an engine joins by adding itself to the registry (and its golden files under
tests/golden/<engine>/). The rest of the suite, parametrized the same way: the golden render files
(test_render.py) and the commands a rendered folder's README prints, run by hand after moving it
(test_by_hand.py). Here: the same bad inputs refused by `domainft validate` in one line, the engine's own
validator (`--deep`) accepting what we render and refusing what we would, and a real CPU run on the tiny model:
train, kill -9 mid-run, resume from the last checkpoint, load the adapter in PEFT, merge, export to GGUF.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import DATA, assert_one_line_error, run_cli, tiny_recipe_data

from domainft.engines import NAMES, get_engine
from domainft.engines.checks import deep_check
from domainft.render import render_checked as validate
from domainft.errors import EngineError

QA = DATA / "coal" / "demo_qa.jsonl"
ENGINES = pytest.mark.parametrize("engine", NAMES)


def write_recipe(path: Path, engine: str, **sections) -> Path:
    data = tiny_recipe_data(f"conform-{engine}", engine, [QA], max_steps=6, save_steps=2, **sections)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def bad_inputs(engine: str) -> dict[str, tuple[dict, str]]:
    """The same mistakes for every engine: the recipe sections that make them, and what the error must name."""
    run_folder_key = get_engine(engine).run_folder_keys[0]
    return {
        "misspelt engine key": ({"engine_overrides": {"lerning_rate": 0.001}}, "engine_overrides.lerning_rate"),
        "engine key that moves the output": ({"engine_overrides": {run_folder_key: "/elsewhere"}},
                                             f"engine_overrides.{run_folder_key}"),
        "misspelt column": ({"dataset": {"columns": {"prompt": "questoin"}}}, "questoin"),
        "missing data file": ({"dataset": {"files": ["/no/such/qa.jsonl"]}}, "qa.jsonl"),
        "unknown LoRA target": ({"method": {"target_modules": ["q_prj"]}}, "method.target_modules"),
        "missing model folder": ({"model": {"base": "/no/such/model"}}, "model.base"),
        "chat template the tokenizer lacks": ({"model": {"chat_template": "gemma"}}, "model.chat_template"),
    }


CASES = [(engine, case) for engine in NAMES for case in bad_inputs(engine)]


@pytest.mark.parametrize("engine,case", CASES, ids=[f"{e}-{c}" for e, c in CASES])
def test_the_same_bad_input_is_refused_in_one_line(engine, case, tmp_path):
    sections, needle = bad_inputs(engine)[case]
    result = run_cli("validate", write_recipe(tmp_path / "r.yaml", engine, **sections), cwd=tmp_path)
    assert_one_line_error(result, needle)


@ENGINES
def test_a_good_recipe_is_valid(engine, tmp_path):
    result = run_cli("validate", write_recipe(tmp_path / "r.yaml", engine), cwd=tmp_path)
    assert result.code == 0 and f"valid for {engine}" in result.stdout, result.stderr


# ------------------------------------------------------------------ the engine's own validator (needs its venv)


@pytest.mark.e2e
@ENGINES
def test_the_engines_own_validator_accepts_what_we_render_and_refuses_a_stray_key(engine, tmp_path):
    from domainft.engines.venv import ensure_engine
    from domainft.plan import make_plan
    from domainft.recipe import load_recipe

    ensure_engine(engine)
    result = run_cli("validate", "--deep", write_recipe(tmp_path / "r.yaml", engine), cwd=tmp_path)
    assert result.code == 0 and "(deep)" in result.stdout, result.stderr
    # A key our static check would refuse, put straight into the rendered config: the engine refuses it too.
    plan = make_plan(load_recipe(tmp_path / "r.yaml"), run_dir=tmp_path / "run")
    eng = get_engine(engine)
    config = {**eng.config(validate(plan)), "lerning_rate": 0.001}
    with pytest.raises(EngineError) as info:
        deep_check(eng, config, eng.config_file)
    assert "lerning_rate" in info.value.one_line() and "\n" not in info.value.one_line()


# ------------------------------------------------------------------ a real run: train, kill -9, resume, merge, GGUF


def _complete_checkpoints(train_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in train_dir.glob("checkpoint-*")
                  if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists())


def _generate_with_adapter(model_dir: Path, adapter: Path) -> str:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                      str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "矿山安全法的立法目的是什么？"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1]:])


@pytest.mark.e2e
@ENGINES
def test_trains_survives_kill_9_resumes_merges_and_exports(engine, tmp_path, tiny_model):
    from domainft.engines.venv import ensure_engine

    ensure_engine(engine)
    recipe = write_recipe(tmp_path / "r.yaml", engine, export={"quantizations": ["q8_0"]})
    run = tmp_path / "run"
    out = run / "train" / engine
    log = run / "logs" / f"train-{engine}.log"

    # kill -9 to domainft's process group once the first checkpoint is complete
    proc = subprocess.Popen([sys.executable, "-m", "domainft.cli", "train", str(recipe), "--run-dir", str(run)],
                            cwd=tmp_path, stdout=open(tmp_path / "killed.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 600
    while not _complete_checkpoints(out):
        assert proc.poll() is None, (tmp_path / "killed.log").read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_model.safetensors").exists(), "the kill must land before training ends"
    resume_from = _complete_checkpoints(out)[-1]

    result = run_cli("train", recipe, "--run-dir", run, cwd=tmp_path, timeout=900)
    assert result.code == 0, result.stderr[-3000:]
    second_launch = log.read_text(errors="replace").split("\n$ ")[-1].replace("\r", "\n").splitlines()
    assert any("resum" in ln.lower() and f"checkpoint-{resume_from}" in ln for ln in second_launch), \
        f"the second launch does not say it resumes from checkpoint-{resume_from}"
    assert _complete_checkpoints(out)[-1] == 6
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    logged = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged == sorted(set(logged)) and logged[-1] == 6, "each step logged once"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    assert _generate_with_adapter(tiny_model, out)

    # Done means done: a rerun launches nothing.
    before = log.read_bytes()
    assert run_cli("train", recipe, "--run-dir", run, cwd=tmp_path).code == 0
    assert log.read_bytes() == before

    result = run_cli("export", recipe, "--run-dir", run, cwd=tmp_path, timeout=900)
    assert result.code == 0, result.stderr[-3000:]
    ggufs = sorted(p.name for p in (run / "export").glob("*.gguf"))
    assert any("q8_0" in name.lower() for name in ggufs), ggufs
    assert (run / "export" / "Modelfile").exists()
