"""The runner with real subprocesses: allowlisted env, full log, one-line failure with the engine's error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from domainft.engines import get_engine
from domainft.engines.progress import StepCounter
from domainft.train import run_launch
from domainft.engines.base import Launch, Progress
from domainft.engines.base import last_checkpoint
from domainft.errors import EngineError

WRAPPER_VENV = Path(sys.executable).parent.parent


def _python(code: str, cwd: Path, env: dict | None = None) -> Launch:
    return Launch([Path(sys.executable).name, "-c", code], env or {}, cwd)


def test_env_is_allowlisted_and_keys_never_reach_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-secret-zhipu")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-openai")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    log = tmp_path / "train.log"
    run_launch(_python(code, tmp_path, {"FORCE_TORCHRUN": "1"}), log, get_engine("llamafactory"), venv=WRAPPER_VENV)
    text = log.read_text()
    assert "sk-secret" not in text and "API_KEY" not in text
    for expected in ('"HF_HUB_OFFLINE": "1"', '"AXOLOTL_DO_NOT_TRACK": "1"', '"CUDA_VISIBLE_DEVICES": "0"',
                     '"FORCE_TORCHRUN": "1"', f'"PATH": "{WRAPPER_VENV}/bin:'):
        assert expected in text


def test_failure_raises_one_line_with_the_engines_error(tmp_path):
    code = "import sys\nprint('loading')\nraise ValueError('Cannot find valid samples, check `data/README.md`.')"
    log = tmp_path / "train.log"
    with pytest.raises(EngineError) as info:
        run_launch(_python(code, tmp_path), log, get_engine("axolotl"), venv=WRAPPER_VENV)
    line = info.value.one_line()
    assert "exit 1" in line and "ValueError: Cannot find valid samples" in line and "\n" not in line
    assert info.value.where == str(log) and "loading" in log.read_text()


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl", "swift"])
def test_parse_progress_reads_real_trainer_lines(engine):
    parse = get_engine(engine).parse_progress
    assert parse(" 67%|██████▋   | 4/6 [00:03<00:02,  1.05s/it]") == Progress(step=4, total=6)
    assert parse("100%|██████████| 6/6 [00:03<00:00,  1.95it/s]") == Progress(step=6, total=6)
    assert parse("{'loss': '10.81', 'grad_norm': '0.32', 'epoch': '0.25'}") == Progress(loss=10.81)
    assert parse("{'loss': 2.5e-01, 'epoch': 1.0}") == Progress(loss=0.25)
    assert parse("{'train_runtime': '3.817', 'train_loss': '10.81'}") is None
    assert parse("Generating train split: 24 examples [00:00, 1200 examples/s]") is None
    assert parse("Loading weights: 100%|██████████| 20/20 [00:00<00:00, 29852.70it/s]") is None
    assert parse("[INFO|trainer.py:1478] 2026-12-04 >>   Total optimization steps = 1,280") == Progress(total=1280)
    # ms-swift names its bars
    assert parse("Train:  40%|████      | 4/10 [00:04<00:06,  1.00s/it]") == Progress(step=4, total=10)
    assert parse("Val: 100%|██████████| 6/6 [00:01<00:00,  3.10it/s]") is None


def test_the_bar_counts_training_steps_not_the_evaluations():
    """80 steps with eval loss every 40 on a 6-batch validation set, then a final evaluation: the bar ends on
    80/80, not on the last evaluation's 6/6 (as it once did)."""
    parse, steps = get_engine("llamafactory").parse_progress, StepCounter()
    lines = ["Loading weights: 100%|██████████| 20/20 [00:00<00:00, 29852.70it/s]",
             "  Total optimization steps = 80", "  0%|          | 0/80 [00:00<?, ?it/s]",
             " 50%|█████     | 40/80 [00:40<00:40,  1.00s/it]", " 83%|████████▎ | 5/6 [00:01<00:00,  3.10it/s]",
             "100%|██████████| 80/80 [01:20<00:00,  1.00s/it]", "100%|██████████| 6/6 [00:01<00:00,  3.10it/s]"]
    shown = [s for line in lines if (p := parse(line)) is not None and (s := steps.feed(p)) is not None]
    assert shown == [(0, 80), (0, 80), (40, 80), (80, 80)]
    without_total = StepCounter()  # an engine that does not name the total: the first bar is training's
    assert [without_total.feed(Progress(step=s, total=t)) for s, t in [(1, 9), (3, 4), (2, 9)]] == [(1, 9), None, (2, 9)]


def test_last_checkpoint_orders_numerically(tmp_path):
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert last_checkpoint(tmp_path).name == "checkpoint-10"
    assert last_checkpoint(tmp_path / "absent") is None
