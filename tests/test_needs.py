"""What `validate` says a recipe needs of the machine (GPU, GPU memory, disk), from one arithmetic, fast and offline."""

from __future__ import annotations

import pytest
from helpers import RECIPES, run_cli

from domainft.hub import RemoteFile, select_files
from domainft.models.memory import MODEL_CONFIGS, estimate
from domainft.needs import cuda_gpus, disk_need
from domainft.plan import make_plan
from domainft.recipe import load_recipe

NO_GPU = pytest.mark.skipif(bool(cuda_gpus()), reason="says what a machine without a GPU is told")


@NO_GPU
def test_validate_says_in_one_line_that_the_7b_recipe_needs_a_gpu_and_how_much_disk(tmp_path):
    done = run_cli("validate", RECIPES / "iso-r1-qwen7b.yaml", cwd=tmp_path)
    assert done.code == 0, done.stderr
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("note: ")]
    gpu = [ln for ln in notes if "CUDA GPU" in ln]
    peak = estimate(load_recipe(RECIPES / "iso-r1-qwen7b.yaml"), MODEL_CONFIGS["qwen2.5-7b"])["total"]
    assert gpu == [f"note: this recipe needs a CUDA GPU (training.precision bf16, 4-bit QLoRA) and none was found "
                   f"here; estimated peak {peak:.1f} GiB of GPU memory per GPU"]
    [disk] = [ln for ln in notes if ln.startswith("note: disk:")]
    assert "the whole path needs about 54.8 GB" in disk and "estimated from 7.6B parameters" in disk


@NO_GPU
def test_the_cpu_demo_is_told_nothing_about_gpus(tmp_path):
    done = run_cli("validate", RECIPES / "demo-coal-smollm2.yaml", cwd=tmp_path)
    assert done.code == 0 and "GPU" not in done.stderr and "disk:" not in done.stderr, done.stderr


def test_disk_need_adds_base_merged_f16_and_each_quantization(tmp_path):
    plan = make_plan(load_recipe(RECIPES / "iso-r1-qwen7b.yaml"), run_dir=tmp_path / "run")
    need = disk_need(plan)
    names = [what for what, _ in need.parts]
    assert names == ["base weights", "merged copy", "f16 GGUF", "q4_k_m GGUF", "q4_0 GGUF"]
    base, merged, f16, q4km, q40 = (b for _, b in need.parts)
    assert base == merged == f16 and q40 < q4km < f16 / 3 and need.total == sum(b for _, b in need.parts)


def test_only_the_files_engines_read_are_pulled():
    repo = [RemoteFile(p, 1) for p in ("config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
                                       "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "README.md",
                                       "model.gguf", "onnx/model.safetensors", "modeling_x.py", "qwen.tiktoken")]
    picked = [f.path for f in select_files(repo)]
    assert picked == ["config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
                      "modeling_x.py", "qwen.tiktoken", "tokenizer.json", "tokenizer_config.json"]
    only_bin = [f for f in repo if "safetensors" not in f.path]
    assert "pytorch_model.bin" in [f.path for f in select_files(only_bin)]
