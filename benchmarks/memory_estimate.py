"""Peak GPU memory of a recipe's training step, estimated from the model's shape and the recipe's values.

Not a measurement: `train_throughput.py --fit-check` measures on a GPU. This script makes the arithmetic behind
"does 7B QLoRA fit in 8 GiB at cutoff 1024?" reproducible, per recipe, and grounds its one hardware-specific
constant: the bytes bitsandbytes really stores per NF4 weight are measured by quantizing one full-size 7B MLP
weight on the CPU, in the LLaMA-Factory venv (where bitsandbytes lives), when that venv is installed.

What is counted (bf16 training, SDPA, no sequence parallelism, one GPU):
  weights      quantized linear layers (QLoRA: NF4 + constants) or bf16; embeddings, lm_head, norms in bf16
  lora         trainable LoRA weights in fp32 plus their gradients and two Adam moments: 16 B per parameter
  activations  gradient checkpointing on: each layer's bf16 input, plus one layer recomputed in full during
               backward; off: every layer in full. LoRA dropout > 0 keeps a dropped copy of each adapter input.
  dequant      QLoRA: the largest linear weight dequantized to bf16 while it is used
  logits       batch x cutoff x vocab: bf16 logits, the fp32 copy the loss takes, and both gradients
               (12 B each); Liger's fused linear cross-entropy never builds them (a 1/16 chunk is left)
  runtime      CUDA context and allocator slack, as nvidia-smi counts them: 0.8 GiB (an assumption)

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

from train_throughput import MODEL_CONFIGS  # the published shapes, one place

from domainft.recipe import Recipe, load_recipe

GIB = 2**30
BF16 = 2
RUNTIME_GIB = 0.8
NF4_FORMULA = 0.5 + 1 / 64 + 4 / (64 * 256)  # packed 4-bit + uint8 absmax per 64 + fp32 second-level per 256 blocks
LIGER_CHUNK = 1 / 16  # fraction of the logits Liger's fused cross-entropy holds at once (upper bound)
# model.base -> shape, for the shipped recipes (the 7B R1 distill has the Qwen2.5-7B shape)
SHAPES = {"DeepSeek-R1-Distill-Qwen-7B": "qwen2.5-7b", "DeepSeek-R1-Distill-Qwen-1.5B": "r1-1.5b"}
SHIPPED = [
    ("iso-r1-qwen7b.yaml", []),
    ("iso-r1-qwen7b.yaml", ["method.kind=qlora", "training.cutoff_len=1024"]),
    ("iso-r1-qwen7b.yaml", ["method.kind=qlora", "training.cutoff_len=1024", "training.batch_size=1"]),
    ("iso-r1-qwen7b-qlora-8gib.yaml", []),
    ("iso-r1-qwen7b-qlora-8gib.yaml", ["training.liger_kernel=false"]),
    ("coal-r1-qwen1.5b.yaml", []),
]


def linear_shapes(c: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each projection in one decoder layer (Qwen2/Llama with grouped-query attention)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(c: dict) -> dict[str, int]:
    """Exact parameter counts of a Qwen2 model by kind (q/k/v carry biases in Qwen2)."""
    h, n, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    shapes = linear_shapes(c)
    linear = n * sum(a * b for a, b in shapes.values())
    bias = n * (shapes["q_proj"][1] + shapes["k_proj"][1] + shapes["v_proj"][1])
    norms = n * 2 * h + h
    embed = vocab * h
    head = 0 if c.get("tie_word_embeddings") else vocab * h
    return {"linear": linear, "other": bias + norms + embed + head, "embed_head": embed + head,
            "total": linear + bias + norms + embed + head}


def lora_params(c: dict, rank: int, targets: list[str] | str) -> int:
    names = list(linear_shapes(c)) if targets == "all" else list(targets)
    return c["num_hidden_layers"] * sum(rank * (a + b) for k, (a, b) in linear_shapes(c).items() if k in names)


def layer_activation_elems(c: dict, lora_dropout: float, targets: list[str] | str) -> int:
    """bf16 elements one decoder layer keeps for backward, per token (SDPA keeps no attention matrix)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = linear_shapes(c)["k_proj"][1]
    # norm in/out, q, k, v, rotated q and k, attention out, residual, norm2 in/out, gate, up, act(gate), product
    elems = 2 * h + h + 2 * kv + (h + kv) + h + h + 2 * h + 2 * i + i + i
    if lora_dropout > 0:  # each adapter keeps its own dropped input
        names = list(linear_shapes(c)) if targets == "all" else list(targets)
        elems += sum(linear_shapes(c)[k][0] for k in names)
    return elems


def estimate(recipe: Recipe, c: dict, nf4_bytes: float) -> dict[str, float]:
    """GiB per part of the peak, and the total."""
    m, t = recipe.method, recipe.training
    counts = param_counts(c)
    tokens = t.batch_size * t.cutoff_len
    qlora = m.kind == "qlora" and m.quant_bits == 4
    if m.kind == "full":
        weights = counts["total"] * (BF16 + 16)  # bf16 weights; fp32 master, grads and Adam: an upper bound
        trainable = 0
    else:
        weights = counts["linear"] * (nf4_bytes if qlora else BF16) + counts["other"] * BF16
        trainable = lora_params(c, m.rank, m.target_modules) * 16
    per_layer = layer_activation_elems(c, m.dropout if m.kind != "full" else 0.0, m.target_modules) * BF16 * tokens
    if t.gradient_checkpointing:
        activations = c["num_hidden_layers"] * tokens * c["hidden_size"] * BF16 + per_layer
    else:
        activations = c["num_hidden_layers"] * per_layer
    dequant = max(a * b for a, b in linear_shapes(c).values()) * BF16 if qlora else 0
    logits = tokens * c["vocab_size"] * 12 * (LIGER_CHUNK if t.liger_kernel else 1)
    parts = {"weights": weights, "lora+adam": trainable, "activations": activations, "dequant": dequant,
             "logits": logits}
    out = {k: v / GIB for k, v in parts.items()}
    out["runtime"] = RUNTIME_GIB
    out["total"] = sum(out.values())
    return out


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
    for key, shape in SHAPES.items():
        if key in recipe.model.base:
            return shape
    raise SystemExit(f"{recipe.name}: no known shape for model.base {recipe.model.base!r} (known: {', '.join(SHAPES)})")


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
