"""Peak GPU memory of a recipe's training step, estimated from the model's shape and the recipe's values.

Not a measurement: `train_throughput.py --fit-check` measures on a GPU. This script makes the arithmetic behind
"does 7B QLoRA fit in 8 GiB at cutoff 1024?" reproducible, per recipe, and grounds its one hardware-specific
constant: the bytes bitsandbytes really stores per NF4 weight are measured by quantizing one full-size 7B MLP
weight on the CPU, in the LLaMA-Factory venv (where bitsandbytes lives), when that venv is installed.

What is counted: see src/domainft/models/memory.py (the arithmetic lives there; `domainft validate` uses it too).

Usage:
  python benchmarks/memory_estimate.py                        # the shipped 7B and 1.5B recipes, and variants
  python benchmarks/memory_estimate.py recipes/iso-r1-qwen7b-qlora-8gib.yaml --budget 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from domainft.models.memory import (  # the arithmetic and the published shapes, one place: domainft validate uses them
    MODEL_CONFIGS, NF4_FORMULA, RUNTIME_GIB, SHAPES, estimate,
)
from domainft.models.memory import shape_of as known_shape
from domainft.recipe import Recipe, load_recipe

SHIPPED = [
    ("iso-r1-qwen7b.yaml", []),
    ("iso-r1-qwen7b.yaml", ["method.kind=qlora", "training.cutoff_len=1024"]),
    ("iso-r1-qwen7b.yaml", ["method.kind=qlora", "training.cutoff_len=1024", "training.batch_size=1"]),
    ("iso-r1-qwen7b-qlora-8gib.yaml", []),
    ("iso-r1-qwen7b-qlora-8gib.yaml", ["training.liger_kernel=false"]),
    ("coal-r1-qwen1.5b.yaml", []),
]


def measured_nf4_bytes() -> tuple[float, str]:
    """Bytes per weight bitsandbytes stores for NF4 with double quantization, measured on one 18944 x 3584 weight
    in the LLaMA-Factory venv; the formula's value when that venv is not installed."""
    from domainft.engines.venv import is_ready, venv_bin

    if not is_ready("llamafactory"):
        return NF4_FORMULA, "formula (LLaMA-Factory venv not installed)"
    code = r"""
import json, torch, bitsandbytes.functional as F
w = torch.randn(18944, 3584, dtype=torch.bfloat16)
q, st = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True, blocksize=64)
size = lambda x: x.numel() * x.element_size()
total = size(q) + size(st.absmax) + size(st.state2.absmax) + size(st.offset) + size(st.state2.code) + size(st.code)
print(json.dumps({"bytes_per_weight": total / w.numel(), "bnb": __import__("bitsandbytes").__version__}))
"""
    done = subprocess.run([str(venv_bin("llamafactory", "python")), "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        return NF4_FORMULA, "formula (bitsandbytes failed: " + done.stderr.strip().splitlines()[-1][:80] + ")"
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["bytes_per_weight"], f"measured, bitsandbytes {got['bnb']} on the CPU"


def shape_of(recipe: Recipe) -> str:
    shape = known_shape(recipe.model.base)
    if shape is None:
        raise SystemExit(f"{recipe.name}: no known shape for model.base {recipe.model.base!r} (known: {', '.join(SHAPES)})")
    return shape


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="*", help="recipe files (default: the shipped 7B/1.5B recipes and variants)")
    p.add_argument("-s", "--set", action="append", default=[], help="override for every recipe, e.g. training.batch_size=1")
    p.add_argument("--budget", type=float, default=8.0, help="GiB to compare against (default 8)")
    args = p.parse_args(argv)
    runs = [(Path(r), args.set) for r in args.recipes] or [(REPO / "recipes" / r, s + args.set) for r, s in SHIPPED]
    nf4, how = measured_nf4_bytes()
    print(f"NF4 bytes per weight: {nf4:.4f} ({how}); runtime overhead {RUNTIME_GIB} GiB assumed\n")
    cols = ("weights", "lora+adam", "activations", "dequant", "logits", "runtime", "total")
    print("| recipe | changes | method | batch | cutoff | GC | Liger | " + " | ".join(cols) + f" | <= {args.budget:g} GiB |")
    print("|---" * (8 + len(cols)) + "|")
    for path, sets in runs:
        recipe = load_recipe(path, sets)
        t = recipe.training
        est = estimate(recipe, MODEL_CONFIGS[shape_of(recipe)], nf4)
        row = [recipe.name, " ".join(sets) or "as shipped", recipe.method.kind, t.batch_size, t.cutoff_len,
               "on" if t.gradient_checkpointing else "off", "on" if t.liger_kernel else "off",
               *(f"{est[c]:.2f}" for c in cols), "yes" if est["total"] <= args.budget else "no"]
        print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
    main()
