"""Real training of the tiny random Llama with each engine, from its own venv (train, kill, resume, merge and
export are in test_conformance.py). Slow: builds the venvs on first use."""

from __future__ import annotations

import pytest

from domainft.engines import NAMES
from domainft.train import train
from domainft.engines.venv import ensure_engine

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("engine", NAMES)
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
