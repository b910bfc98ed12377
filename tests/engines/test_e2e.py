"""Real LoRA training of the tiny random Llama with each engine, from its own venv; the adapter then
loads with PEFT in the wrapper's venv and generates. Slow: builds the venvs on first use."""

from __future__ import annotations

import json
import shutil

import pytest

from domainft.engines import ensure_engine, merge, train
from domainft.engines.runner import DONE

pytestmark = pytest.mark.e2e


def _load_and_generate(plan) -> str:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plan.model_path)
    base = AutoModelForCausalLM.from_pretrained(plan.model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(plan.train_dir))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "矿山安全法的立法目的是什么？"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
def test_lora_trains_resumes_and_loads_in_peft(engine, plan_for):
    ensure_engine(engine)
    plan = plan_for(engine)  # 4 steps, checkpoints every 2, demo coal QA (alpaca JSONL)
    out = train(plan)
    assert out == plan.train_dir
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    log = (plan.run_dir / "logs" / f"train-{engine}.log").read_text()
    assert "4/4 [" in log

    assert len(_load_and_generate(plan)) > 0

    # Merge for export: full HF weights in the folder asked for.
    merged = merge(plan, plan.run_dir / "merged")
    assert (merged / "config.json").exists() and (merged / "model.safetensors").exists()

    # Same rendered files, training finished: a rerun returns without launching (the log gains nothing).
    log_before = (plan.run_dir / "logs" / f"train-{engine}.log").read_bytes()
    assert train(plan) == out
    assert (plan.run_dir / "logs" / f"train-{engine}.log").read_bytes() == log_before
    # A crash after checkpoint-2: the engine resumes from it rather than starting over.
    (out / DONE).unlink()
    shutil.rmtree(out / "checkpoint-4")
    for path in {*out.glob("adapter_*"), *out.glob("*.json")}:
        path.unlink()
    train(plan)
    log = (plan.run_dir / "logs" / f"train-{engine}.log").read_text()
    second_launch = log.split("\n$ ")[-1].replace("\r", "\n").splitlines()
    assert any("resum" in ln.lower() and "checkpoint-2" in ln for ln in second_launch)
    assert (out / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
def test_validation_split_gives_eval_loss_and_a_loss_plot(engine, plan_for, tmp_path, alpaca_file):
    """datagen's val split is the engine's eval set: eval loss is logged during training, and the train stage
    draws train and eval loss against steps beside the adapter."""
    from domainft.engines.loss_plot import loss_history, trainer_state

    ensure_engine(engine)
    plan = plan_for(engine, extract={"inputs": [str(tmp_path)]}, datagen={"provider": "extractive"},
                    dataset={"files": []}, training={"eval_steps": 2})
    rows = alpaca_file.read_text(encoding="utf-8").splitlines(keepends=True)
    plan.datagen_dir.mkdir(parents=True)
    (plan.datagen_dir / "train.jsonl").write_text("".join(rows[:16]), encoding="utf-8")
    (plan.datagen_dir / "val.jsonl").write_text("".join(rows[16:]), encoding="utf-8")
    out = train(plan)
    train_points, eval_points = loss_history(trainer_state(out))
    assert train_points and {2, 4} <= {step for step, _ in eval_points}, eval_points  # Axolotl also evals at step 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
