"""The memory estimator's counts against the real model classes, and the 8 GiB recipe against the estimator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from domainft.models.memory import MODEL_CONFIGS, lora_params, param_counts

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _meta_model(name: str):
    with torch.device("meta"):
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**MODEL_CONFIGS[name], use_sliding_window=False))


@pytest.mark.parametrize("name,published", [("qwen2.5-7b", 7.61e9), ("r1-1.5b", 1.78e9)])
def test_parameter_counts_match_the_model_class(name, published):
    model = _meta_model(name)
    assert param_counts(MODEL_CONFIGS[name])["total"] == sum(p.numel() for p in model.parameters())
    assert abs(param_counts(MODEL_CONFIGS[name])["total"] - published) / published < 0.01


def test_lora_counts_match_peft():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(_meta_model("r1-1.5b"), peft.LoraConfig(r=16, target_modules="all-linear"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_params(MODEL_CONFIGS["r1-1.5b"], 16, "all") == trainable


def test_the_8gib_recipe_fits_by_the_estimate_and_would_not_without_liger():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory_estimate.py"),
                          str(REPO / "recipes" / "iso-r1-qwen7b-qlora-8gib.yaml")], capture_output=True, text=True,
                         check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("| iso-r1-qwen7b-qlora-8gib"))
    assert row.rstrip(" |").endswith("yes"), out
    without = subprocess.run([sys.executable, str(REPO / "benchmarks" / "memory_estimate.py"), "-s",
                              "training.liger_kernel=false", str(REPO / "recipes" / "iso-r1-qwen7b-qlora-8gib.yaml")],
                             capture_output=True, text=True, check=True).stdout
    assert next(line for line in without.splitlines() if line.startswith("| iso-")).rstrip(" |").endswith("no")


@pytest.mark.e2e
def test_throughput_benchmark_smoke_runs_the_rendered_folder(tmp_path):
    """The GPU benchmark's CPU smoke run trains from the rendered folder (engine files and data copied in): it must
    keep working on CPU, since a GPU session has minutes to spend and none to debug in. No speed is asserted."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--smoke", "--engines",
                           "llamafactory", "--switches", "baseline", "--fresh", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "| llamafactory | tiny-qwen2 | lora | baseline |" in done.stdout, done.stdout[-2000:]
